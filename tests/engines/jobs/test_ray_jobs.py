"""Folder jobs on a real two-node Ray cluster (two raylets on this machine, one CPU each): the
same outputs as on this machine, both nodes at work, a killed worker's images redone, and a
driver interrupted then rerun doing only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ray.data", reason="the jobs extra (ray[data]) is not installed")

from msn_deploy.engines import upscale
from tests.conftest import REPO
from tests.engines.jobs.test_folder_jobs import interrupt_midway, job_process, outputs_under, wait_for
from tests.engines.jobs.trees import BROKEN, done_count, image_tree, manifest_records, output_key
from tests.ray_cluster import processes_with_env, two_node_cluster
from tests.util import SUBPROCESS_TIMEOUT_S

pytestmark = [pytest.mark.slow, pytest.mark.service]


@pytest.fixture(scope="module")
def cluster():
    with two_node_cluster() as nodes:
        yield nodes


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree") / "photos"
    return root, image_tree(root)


@pytest.fixture(scope="module")
def local_outputs(tree, random_ckpt, tmp_path_factory) -> Path:
    root, _ = tree
    out = tmp_path_factory.mktemp("local") / "out"
    assert upscale.main([str(root), "-o", str(out), "--recursive", "--model", str(random_ckpt)]) == 1
    return out


def ray_job(tree_root: Path, out: Path, ckpt: Path, cluster) -> tuple[list[str], dict[str, str]]:
    address, tmpdir, auth = cluster
    return ([str(tree_root), "-o", str(out), "--recursive", "--model", str(ckpt), "--ray", address],
            {**auth, "RAY_TMPDIR": tmpdir})


def within_a_level(a: Path, b: Path, keys: set[str]) -> bool:
    """Same pixels to 1 level: an actor has one CPU, so torch sums in another order than here."""
    for key in keys:
        x, y = (cv2.imread(str(folder / key), cv2.IMREAD_UNCHANGED).astype(int) for folder in (a, b))
        if x.shape != y.shape or np.abs(x - y).max() > 1:
            return False
    return True


def actor_pids(tmpdir: str) -> list[int]:
    """The Ray Data actors running the engine (their process title names the batch function)."""
    pids = []
    for pid in processes_with_env("RAY_TMPDIR", tmpdir):
        try:
            if b"ImageUpscaler" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_the_tree_on_two_nodes_gives_the_local_outputs(cluster, tree, local_outputs, random_ckpt, tmp_path):
    root, names = tree
    out = tmp_path / "out"
    args, env = ray_job(root, out, random_ckpt, cluster)
    job = job_process(args, env)
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 1, log  # the three broken files
    keys = {output_key(n) for n in names}
    assert outputs_under(out) == keys
    assert within_a_level(out, local_outputs, keys)
    records = manifest_records(out)
    assert sorted(r["input"] for r in records if r["status"] == "failed") == sorted(str(root / b) for b in BROKEN)
    assert len({r["node"] for r in records if r["status"] == "done"}) == 2  # both nodes took images


def test_a_killed_worker_loses_no_image(cluster, tree, local_outputs, random_ckpt, tmp_path):
    root, names = tree
    out = tmp_path / "out"
    args, env = ray_job(root, out, random_ckpt, cluster)
    job = job_process(args, env)
    wait_for(lambda: done_count(out) >= 20 or job.poll() is not None, SUBPROCESS_TIMEOUT_S, "20 images")
    assert job.poll() is None, job.communicate()[0]
    victims = actor_pids(cluster[1])
    assert len(victims) == 2, victims
    # Stopped first, so that it holds the rows it was given while the other actor goes on; killed
    # once the job has moved past them, its rows can only come back through Ray's retry.
    os.kill(victims[0], signal.SIGSTOP)
    held_at = done_count(out)
    wait_for(lambda: done_count(out) >= held_at + 10 or job.poll() is not None, SUBPROCESS_TIMEOUT_S,
             "the other worker to go on")
    assert done_count(out) < len(names), "the job finished before the worker was killed"
    os.kill(victims[0], signal.SIGKILL)
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 1, log
    keys = {output_key(n) for n in names}
    assert outputs_under(out) == keys and within_a_level(out, local_outputs, keys)
    assert len([r for r in manifest_records(out) if r["status"] == "done"]) == len(names)  # each image once


def test_ctrl_c_on_the_driver_then_a_rerun_does_only_the_missing(cluster, tree, random_ckpt, tmp_path):
    root, names = tree
    out = tmp_path / "out"
    args, env = ray_job(root, out, random_ckpt, cluster)
    done = interrupt_midway(job_process(args, env), out, len(names))
    assert len(outputs_under(out)) == done
    before = len(manifest_records(out))
    job = job_process(args, env)
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 1, log
    new = manifest_records(out)[before:]
    assert sum(r["status"] == "done" for r in new) == len(names) - done
    assert outputs_under(out) == {output_key(n) for n in names}


# msn-upscale with a Ctrl-C raised in the driver's own code, as the Nth image is recorded.
INTERRUPTED_IN_FINISH = """
import sys
from msn_deploy.engines import upscale
from msn_deploy.engines.jobs import on_ray

real, after = on_ray.run_on_ray, int(sys.argv.pop(1))

def run_on_ray(todo, model, backend, job, finish):
    recorded = []

    def finish_then_ctrl_c(*args):
        finish(*args)
        recorded.append(args)
        if len(recorded) == after:
            raise KeyboardInterrupt

    real(todo, model, backend, job, finish_then_ctrl_c)

on_ray.run_on_ray = run_on_ray
sys.exit(upscale.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("attempt", [1, 2])
def test_ctrl_c_while_the_driver_records_an_image_exits_130(tree, random_ckpt, tmp_path, attempt):
    """Ray Data's fetching threads must be stopped before ray.shutdown(): one left in ray.get made
    Ray end the process with exit 1, a race that this interruption point lost in 3 of 4 runs
    before the fix (and once in a busy CI run); two attempts."""
    root, _ = tree
    args = [str(root), "-o", str(tmp_path / "out"), "--recursive", "--model", str(random_ckpt), "--ray"]
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_IN_FINISH, "3", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 130, done.stderr[-3000:]
    assert "run the same command again to go on" in done.stderr


def test_video_segments_on_two_nodes_join_into_the_one_process_output(cluster, tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed")
    import torch

    from msn_deploy.msn import random_model
    from tests.engines.jobs.test_video_segments import FFV1, audio_packets, decoded, vfr_pts
    from tests.engines.media.test_video import frames_rgb, make_clip

    ckpt = tmp_path / "tiny.pth"
    torch.save(random_model(seed=0, num_feat=8, num_block=1).state_dict(), ckpt)
    clip = make_clip(tmp_path / "vfr.mkv", frames_rgb(48), pts=vfr_pts(48), audio=True)
    one = tmp_path / "one.mkv"
    assert upscale.main([str(clip), "-o", str(one), "--model", str(ckpt), *FFV1]) == 0
    out = tmp_path / "seg.mkv"
    address, tmpdir, auth = cluster
    job = job_process([str(clip), "-o", str(out), "--model", str(ckpt), *FFV1, "--segment-seconds", "0.4",
                       "--ray", address], {**auth, "RAY_TMPDIR": tmpdir})
    log, _ = job.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert job.returncode == 0, log
    assert "48 frames in 4 segments" in log
    (pts, frames), (want_pts, want_frames) = decoded(out), decoded(one)
    assert pts == want_pts and len(frames) == 48
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(frames, want_frames)) <= 1
    assert audio_packets(out) == audio_packets(clip)


def test_a_row_whose_result_never_comes_back_fails_by_name(tmp_path):
    """Hardening round 4, Q: no test made a row's result go missing for good, so dropping the loop
    that fails such rows ("never a silent loss") passed."""
    from msn_deploy.engines.jobs.on_ray import fail_the_missing
    from msn_deploy.engines.jobs.tree import Task

    todo = [Task(tmp_path / f"{i}.png", tmp_path / "out" / f"{i}_x4.png", f"{i}_x4.png") for i in range(4)]
    finished = []
    fail_the_missing(todo, {0, 2}, lambda task, output, error, seconds, node: finished.append((task.key, output, error)))
    assert [(key, output) for key, output, _ in finished] == [("1_x4.png", None), ("3_x4.png", None)]
    assert all(error.startswith(f"{tmp_path}/") and "no result came back from the Ray workers" in error
               for _, _, error in finished)
