"""Atomic outputs and output folders (msn.files), which every command writes through."""

from __future__ import annotations

import pytest

from msn import PathError
from msn.files import atomic_write_bytes, make_output_folder


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
