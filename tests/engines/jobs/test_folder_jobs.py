"""Folder jobs on this machine: a nested tree mirrored, failures recorded, the manifest making a
rerun do only what is missing, and the refusals that come before any work."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from msn_deploy import engines
from msn_deploy.engines import upscale
from msn_deploy.engines.jobs.manifest import MANIFEST_NAME
from msn_deploy.msn import random_model
from tests.conftest import REPO
from tests.engines.jobs.trees import (
    BROKEN,
    done_count,
    image_tree,
    manifest_records,
    max_level_difference_from_engine,
    output_key,
)
from tests.ray_cluster import free_port
from tests.util import SUBPROCESS_TIMEOUT_S, exit_code, visible_names


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree") / "photos"
    return root, image_tree(root)


@pytest.fixture(scope="module")
def local_run(tree, random_ckpt, tmp_path_factory):
    """The tree upscaled once on this machine with two workers: (output folder, exit code)."""
    root, _ = tree
    out = tmp_path_factory.mktemp("local") / "out"
    code = upscale.main([str(root), "-o", str(out), "--recursive", "--workers", "2", "--model", str(random_ckpt)])
    return out, code


def outputs_under(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_a_nested_tree_is_mirrored_and_each_failure_is_recorded(tree, local_run, random_ckpt):
    root, names = tree
    out, code = local_run
    assert code == 1  # three files failed
    assert outputs_under(out) == {output_key(n) for n in names}
    engine = engines.load(random_ckpt)
    for rel in names[:: len(names) // 12]:  # every size, every depth
        assert max_level_difference_from_engine(engine, root / rel, out / output_key(rel)) <= 1
    records = manifest_records(out)
    failed = {r["input"]: r["error"] for r in records if r["status"] == "failed"}
    assert sorted(failed) == sorted(str(root / b) for b in BROKEN)
    assert "not a readable image" in failed[str(root / BROKEN[0])]
    assert "cannot be read" in failed[str(root / BROKEN[2])]
    done = [r for r in records if r["status"] == "done"]
    assert len(done) == len(names) and all(r["settings"] == done[0]["settings"] for r in done)


def test_one_worker_and_two_give_the_same_files(tree, local_run, random_ckpt, tmp_path):
    root, names = tree
    out, _ = local_run
    subset = tmp_path / "subset"
    subset.mkdir()
    for rel in names[:9]:  # three of each size
        (subset / rel.replace("/", "_")).write_bytes((root / rel).read_bytes())
    one = tmp_path / "one"
    assert upscale.main([str(subset), "-o", str(one), "--model", str(random_ckpt)]) == 0
    for rel in names[:9]:
        assert (one / output_key(rel.replace("/", "_"))).read_bytes() == (out / output_key(rel)).read_bytes()


def test_a_rerun_does_only_what_failed(tree, local_run, random_ckpt, caplog):
    root, names = tree
    out, _ = local_run
    before = len(manifest_records(out))
    caplog.set_level(logging.INFO)
    assert upscale.main([str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]) == 1
    new = manifest_records(out)[before:]
    assert sorted(r["input"] for r in new) == sorted(str(root / b) for b in BROKEN)
    assert all(r["status"] == "failed" for r in new)
    assert f"{len(names)} of {len(names) + 3} images are done already" in caplog.text


def test_outputs_of_other_settings_are_refused_before_work(tree, local_run, random_ckpt, tmp_path, caplog):
    root, names = tree
    out, _ = local_run
    first = out / output_key(names[0])
    stamp = first.stat().st_mtime_ns
    args = [str(root), "-o", str(out), "--recursive"]
    assert upscale.main([*args, "--model", str(random_ckpt), "--tile", "32", "--overlap", "8"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # Only what differs, field by field (hardening round 3, #4: the same text was printed twice).
    assert len(errors) == 1 and "made with other settings (tile none, now 32; overlap 32, now 8)" in errors[0]
    caplog.clear()
    other = tmp_path / "other.pth"
    torch.save(random_model(seed=1).state_dict(), other)
    assert upscale.main([*args, "--model", str(other)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "(model sha256 " in errors[0] and "tile" not in errors[0]
    assert first.stat().st_mtime_ns == stamp  # nothing was touched


def test_an_output_folder_with_images_but_no_manifest_inside_the_input_tree(tmp_path, random_ckpt, caplog):
    """Hardening round 3, H: the output folder is never an input because it is -o, not because it
    holds a manifest (this one holds images left by hand): its images are not upscaled, and one
    named like an output is kept, not replaced."""
    root = tmp_path / "photos"
    names = image_tree(root, count=3)
    out = root / "upscaled"
    out.mkdir()
    (out / "by_hand.png").write_bytes((root / names[1]).read_bytes())
    stale = out / output_key(names[0])
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older file the user keeps")
    caplog.set_level(logging.INFO)
    assert upscale.main([str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]) == 1
    assert "is this job's output folder; its files are not inputs" in caplog.text
    assert f"{stale} exists; skipping (use --overwrite)" in caplog.text
    assert stale.read_bytes() == b"an older file the user keeps"
    assert outputs_under(out) == {output_key(n) for n in names} | {"by_hand.png"}  # nothing of by_hand.png


def test_overwrite_replaces_outputs_made_otherwise(tmp_path, random_ckpt, caplog):
    root = tmp_path / "photos"
    names = image_tree(root, count=4)
    out = tmp_path / "out"
    base = [str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]
    assert upscale.main(base) == 1
    assert upscale.main([*base, "--tile", "32", "--overlap", "8"]) == 2
    assert upscale.main([*base, "--tile", "32", "--overlap", "8", "--overwrite"]) == 1
    latest = {}
    for record in manifest_records(out):
        latest[record["output"]] = record
    digests = {latest[output_key(n)]["settings"] for n in names}
    assert len(digests) == 1 and digests != {manifest_records(out)[0]["settings"]}


def test_a_torn_last_line_is_ignored(tmp_path, random_ckpt, caplog):
    names, out, args = finished_job(tmp_path, random_ckpt, 3)
    with open(out / MANIFEST_NAME, "a") as manifest:
        manifest.write('{"kind": "image", "output": "d0/img0')  # a crash in the middle of a write
    caplog.set_level(logging.INFO)
    assert upscale.main(args) == 1
    assert f"{len(names)} of {len(names) + 3} images are done already" in caplog.text
    assert "not a manifest record" not in caplog.text


def finished_job(tmp_path, model, count: int) -> tuple[list[str], Path, list[str]]:
    """A tree of `count` images (and the three broken files) upscaled once: (names, output, args)."""
    root = tmp_path / "photos"
    names = image_tree(root, count=count)
    out = tmp_path / "out"
    args = [str(root), "-o", str(out), "--recursive", "--model", str(model)]
    assert upscale.main(args) == 1
    return names, out, args


def done_since(out, before: int) -> list[str]:
    """The outputs recorded as done after the first `before` records."""
    return [r["output"] for r in manifest_records(out)[before:] if r["status"] == "done"]


def test_an_output_damaged_or_deleted_after_the_job_is_made_again(tmp_path, random_ckpt, caplog):
    """Hardening round 3, #1: the manifest's word was trusted ("4 of 4 done, 0 to do")."""
    names, out, args = finished_job(tmp_path, random_ckpt, 4)
    good = (out / output_key(names[0])).read_bytes()
    (out / output_key(names[0])).write_bytes(good[: len(good) // 2])  # damaged
    (out / output_key(names[1])).unlink()  # deleted
    before = len(manifest_records(out))
    caplog.set_level(logging.INFO)
    assert upscale.main(args) == 1
    assert sorted(done_since(out, before)) == sorted(output_key(n) for n in names[:2])
    assert (out / output_key(names[0])).read_bytes() == good


def test_overwrite_makes_every_output_again(tmp_path, random_ckpt):
    """Hardening round 3, #1: --overwrite only replaced outputs made otherwise."""
    names, out, args = finished_job(tmp_path, random_ckpt, 3)
    before = len(manifest_records(out))
    assert upscale.main([*args, "--overwrite"]) == 1
    assert sorted(done_since(out, before)) == sorted(output_key(n) for n in names)


def test_an_output_whose_record_a_crash_cut_off_is_made_again_and_recorded(tmp_path, random_ckpt, caplog):
    """Hardening round 3, #3: every later run said "exists; skipping" and never recorded it."""
    names, out, args = finished_job(tmp_path, random_ckpt, 3)
    lines = (out / MANIFEST_NAME).read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if f'"output": "{output_key(names[-1])}"' in line)
    cut = lines[last][: lines[last].index('"output": "') + len('"output": "') + 4]  # the output is on disk
    (out / MANIFEST_NAME).write_text("".join(lines[:last] + lines[last + 1 :]) + cut)
    before = len(manifest_records(out))
    caplog.set_level(logging.INFO)
    assert upscale.main(args) == 1
    assert "exists; skipping" not in caplog.text and "cut off before it recorded it" in caplog.text
    new = manifest_records(out)[before:]
    assert [r["output"] for r in new if r["status"] == "done"] == [output_key(names[-1])]
    assert len(new) == 1 + 3  # and the three broken files again: no record was glued to the torn line
    caplog.clear()
    assert upscale.main(args) == 1 and f"{len(names)} of {len(names) + 3} images are done already" in caplog.text
    assert "not a manifest record" not in caplog.text  # the torn line is gone


def test_more_workers_than_cores_are_capped_with_a_word(tmp_path, random_graph, caplog):
    """Hardening round 3, G: --workers 99 loaded 99 engines (1.86 GB) that could only take turns."""
    root = tmp_path / "photos"
    image_tree(root, count=2)
    cores = len(os.sched_getaffinity(0))
    assert upscale.main([str(root), "-o", str(tmp_path / "out"), "--recursive", "--model", str(random_graph),
                         "--workers", "99"]) == 1  # the tree's broken files
    assert f"--workers 99 is more than the {cores} CPU cores here; using {cores}" in caplog.text


def test_a_second_job_on_the_same_output_folder_is_refused_while_the_first_runs(tmp_path, random_graph, caplog):
    """Hardening round 3, #2: two jobs at once both exited 0, one's pixels under the other's records."""
    from msn_deploy.engines.jobs.manifest import Manifest

    root = tmp_path / "photos"
    names = image_tree(root, count=2)
    out = tmp_path / "out"
    out.mkdir()
    args = [str(root), "-o", str(out), "--recursive", "--model", str(random_graph)]
    running = Manifest(out / MANIFEST_NAME, claim=True)  # as a job in another process holds it
    try:
        assert upscale.main(args) == 2
        assert f"another job is writing into {out}" in caplog.text and not outputs_under(out)
    finally:
        running.close()
    assert upscale.main(args) == 1 and outputs_under(out) == {output_key(n) for n in names}


def test_a_rerun_sees_an_input_rewritten_at_the_same_size_and_a_new_target(tmp_path, random_graph, caplog):
    """Hardening round 3, H: no rerun covered an input changed in place (same size, new mtime) or
    another --target; every field of the job's digest and of the input's state is a reason to redo."""
    import cv2

    names, out, args = finished_job(tmp_path, random_graph, 3)
    changed = tmp_path / "photos" / names[0]
    pixels = cv2.imread(str(changed))
    before_size, before_mtime = changed.stat().st_size, changed.stat().st_mtime_ns
    cv2.imwrite(str(changed), 255 - pixels)  # PNG of the inverse: same dimensions; sizes may differ, so pad
    data = changed.read_bytes()
    changed.write_bytes(data[:before_size] if len(data) >= before_size else data + b"\0" * (before_size - len(data)))
    os.utime(changed, ns=(before_mtime + 10**9, before_mtime + 10**9))
    assert changed.stat().st_size == before_size
    records = len(manifest_records(out))
    upscale.main(args)
    redone = [r["output"] for r in manifest_records(out)[records:] if r["output"] == output_key(names[0])]
    assert redone, "an input rewritten at the same size was taken as done"
    caplog.clear()
    assert upscale.main([*args, "--target", "256x256"]) == 2
    assert "target none, now 256x256" in caplog.text


def job_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "msn_deploy.engines.upscale", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def interrupt_midway(job: subprocess.Popen, out, total: int, after: int = 20) -> int:
    """SIGINT the job once `after` images are recorded; it is first stopped (SIGSTOP), so the
    test knows that work was still left when the signal came. Returns the images done by then."""
    wait_for(lambda: done_count(out) >= after or job.poll() is not None, SUBPROCESS_TIMEOUT_S, f"{after} images")
    assert job.poll() is None, job.communicate()[0]
    job.send_signal(signal.SIGSTOP)
    assert done_count(out) < total, "the job finished before it could be interrupted"
    job.send_signal(signal.SIGINT)
    job.send_signal(signal.SIGCONT)
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 130, log
    assert "run the same command again to go on" in log
    return done_count(out)


@pytest.mark.slow
def test_ctrl_c_then_a_rerun_does_only_the_missing_images(tree, random_ckpt, tmp_path, caplog):
    root, names = tree
    out = tmp_path / "out"
    args = [str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]
    done = interrupt_midway(job_process(args), out, len(names))
    assert len(outputs_under(out)) == done  # every file on disk is recorded, and none is half-written
    assert not [p for p in out.rglob(".*.tmp")]
    before = len(manifest_records(out))
    assert upscale.main(args) == 1
    new = manifest_records(out)[before:]
    assert sum(r["status"] == "done" for r in new) == len(names) - done  # only the missing ones
    assert outputs_under(out) == {output_key(n) for n in names}


def test_ctrl_c_with_a_large_image_in_the_engine_exits_at_once(random_ckpt, tmp_path):
    """Hardening round 3, #27: Ctrl-C while a large image was inside the engine waited 30 s for it,
    then could abort in the engine's destructors ("terminate called", exit -6). The job now drops
    the image in flight (the log says so: the exit did not wait) and exits 130."""
    photos = tmp_path / "photos"
    photos.mkdir()
    smooth = cv2.resize(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8), (1024, 1024))
    cv2.imwrite(str(photos / "large.png"), smooth)  # seconds in the engine on any CPU
    job = job_process([str(photos), "-o", str(tmp_path / "out"), "--model", str(random_ckpt)])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(job.stdout), daemon=True)
    reader.start()
    wait_for(lambda: any("compiled for 1x3x1024x1024" in line for line in lines) or job.poll() is not None,
             SUBPROCESS_TIMEOUT_S, "the large image to reach the engine")
    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=SUBPROCESS_TIMEOUT_S) == 130, "".join(lines)
    reader.join(timeout=10)
    log = "".join(lines)
    assert "dropped 1 image(s) still in the engine" in log and "large.png" in log, log
    assert "terminate called" not in log and "Traceback" not in log
    assert visible_names(tmp_path / "out") == []


def test_an_output_folder_inside_the_input_tree_is_never_an_input(tmp_path, random_ckpt, caplog):
    root = tmp_path / "photos"
    names = image_tree(root, count=3)
    earlier = root / "d0" / "earlier_job"  # another job's outputs, found by its manifest
    assert upscale.main([str(root / names[0]), "-o", str(earlier) + "/", "--model", str(random_ckpt)]) == 0
    out = root / "upscaled"
    args = [str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]
    caplog.set_level(logging.INFO)
    for _ in range(2):
        assert upscale.main(args) == 1
    assert outputs_under(out) == {output_key(n) for n in names}  # no *_x4_x4, nothing of earlier_job
    assert "is this job's output folder" in caplog.text and "is another job's output folder" in caplog.text


def test_symlink_loops_and_special_files_are_walked_safely(tmp_path, random_ckpt, caplog):
    root = tmp_path / "photos"
    names = image_tree(root, count=3)
    (root / "d0" / "loop").symlink_to(root)  # a loop back to the top
    (root / "d1" / "twin").symlink_to(root / "d2")  # a second way into one folder
    os.mkfifo(root / "pipe.png")  # reading it would block forever
    out = tmp_path / "out"
    assert upscale.main([str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]) == 1
    assert outputs_under(out) == {output_key(n) for n in names}
    assert "loop links to" in caplog.text and "twin links to" in caplog.text
    failed = [r["input"] for r in manifest_records(out) if r["status"] == "failed"]
    assert sorted(failed) == sorted(str(root / b) for b in BROKEN)  # the FIFO is not an input


def test_without_recursive_only_the_top_folder_is_read(tmp_path, random_ckpt, caplog):
    root = tmp_path / "photos"
    image_tree(root, count=3)
    (root / BROKEN[2]).unlink()  # the one file at the top
    assert upscale.main([str(root), "-o", str(tmp_path / "out"), "--model", str(random_ckpt)]) == 2
    assert "add --recursive" in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["--workers", "0"], "--workers: expected 1 or more"),
    (["--workers", "two"], "--workers: expected a whole number"),
    (["--ray", "nohost"], "--ray: expected HOST:PORT"),
    (["--ray", "host:99999"], "--ray: expected HOST:PORT"),
    (["--segment-seconds", "10"], "--segment-seconds is for videos"),
    (["--reuse-repeats"], "--reuse-repeats is for videos"),
])
def test_bad_job_options_are_usage_errors(tmp_path, photo, extra, message, capsys, caplog):
    args = [str(photo), "-o", str(tmp_path / "out") + "/", "--model", "nothing.pth", *extra]
    assert exit_code(upscale.main, args) == 2
    assert message in capsys.readouterr().err + caplog.text


def test_an_unreachable_ray_address_fails_at_once_in_one_line(tmp_path, photo, random_ckpt):
    port = free_port()  # nothing listens there
    job = job_process([str(photo), "-o", str(tmp_path / "out") + "/", "--model", str(random_ckpt),
                       "--ray", f"127.0.0.1:{port}"])
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 2, log
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in errors[0]
    assert "Traceback" not in log and not visible_names(tmp_path / "out")


def test_the_library_refuses_what_the_command_refuses(tmp_path, photo):
    from msn_deploy.engines.jobs import FolderJob, run_folder_job
    from msn_deploy.msn import UsageError

    with pytest.raises(UsageError, match="workers must be 1 or more"):
        run_folder_job(FolderJob(inputs=[photo], output=tmp_path / "out", workers=0))


def test_hidden_folders_are_skipped_like_hidden_files(tmp_path):
    """Hardening round 3, G: hidden folders (.thumbnails, .git) were walked while hidden files were not."""
    import cv2
    import numpy as np

    from msn_deploy.engines.jobs.tree import walk_images

    root = tmp_path / ".photos"  # the root itself is walked whatever its name
    for rel in ("a.png", ".hidden.png", ".thumbnails/b.png", "sub/c.png", "sub/.cache/d.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.zeros((32, 32, 3), np.uint8))
    assert [p.as_posix() for p in walk_images(root, None)] == ["a.png", "sub/c.png"]
