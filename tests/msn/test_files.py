"""Atomic outputs and output folders (msn.files), which every command writes through."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from msn_deploy.msn import MissingFileError, PathError
from msn_deploy.msn.files import (
    atomic_output,
    atomic_write_bytes,
    check_writable,
    give_usual_permissions,
    make_output_folder,
)


def test_a_name_near_the_255_byte_limit_is_written(tmp_path):
    """Hardening round 3, #19: the temporary name added to a legal 240-byte name was too long."""
    target = tmp_path / ("x" * 236 + ".png")
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_output_folder_is_made_with_its_parents_and_a_file_in_the_way_is_named(tmp_path):
    assert make_output_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "taken").write_text("")
    with pytest.raises(PathError, match="taken is a file; give a folder"):
        make_output_folder(tmp_path / "taken")
    with pytest.raises(PathError, match="cannot be made: .*taken is a file"):
        make_output_folder(tmp_path / "taken" / "sub")


def test_an_output_file_under_a_file_names_the_file_not_a_missing_folder(tmp_path):
    """Hardening round 4, L: `-o FILE/x.param` said "output folder FILE does not exist"."""
    (tmp_path / "taken").write_text("")
    for output in (tmp_path / "taken" / "x.param", tmp_path / "taken" / "sub" / "x.param"):
        with pytest.raises(PathError, match="taken is a file, not a folder"):
            check_writable(output)
    with pytest.raises(MissingFileError, match="output folder .*missing does not exist"):
        check_writable(tmp_path / "missing" / "x.param")


def test_outputs_get_the_permissions_of_the_umask_not_tempfiles_private_ones(tmp_path):
    previous = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "out.png") as tmp:
            tmp.write_bytes(b"x")
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        give_usual_permissions(folder)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
