"""Whole-command throughput of long jobs: a folder of mixed-size photos and a 360p clip, each
variant run as the command a user types (start-up, model load and per-shape compiles included),
round-robin, `--repeats` times; median and range of images/s (frames/s), ratios from one run.

    python -m msn_deploy.validate.benches.jobs_bench --model msn_x4_fp32.onnx --out reports/jobs
    python -m msn_deploy.validate.benches.jobs_bench --model msn_x4_fp32.onnx --only video --repeats 3

Folder variants: sequential (the loop before pipelining: read, infer, write in turn, in name
order), pipelined (--workers 1), --workers 2, and Ray with one node vs two (one CPU each, `ray
start` on this machine). Video: one process vs --segment-seconds with 2 workers, and a clip on
twos with and without --reuse-repeats. The photos are crops of the reference images.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from msn_deploy import engines
from msn_deploy.engines.jobs.manifest import MANIFEST_NAME, Manifest
from msn_deploy.engines.jobs.tree import output_name
from msn_deploy.engines.media.images import read_image, write_image
from msn_deploy.msn import MissingFileError
from msn_deploy.msn.cli import positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.validate.benches.video_bench import synthetic_clip
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.jobs_bench")

# LR (height, width) of the crops: landscape, portrait and square at two sizes, as from a few cameras.
PHOTO_SHAPES = ((64, 96), (96, 64), (80, 80), (72, 128), (128, 72), (96, 96))
CLIP_SIZE = (360, 640)
CLIP_FRAMES = 48
CLIP_RATE = 24
KEYFRAME_EVERY = 12
RAY_START_TIMEOUT_S = 120
TIMES_NAME = ".finished.json"


def make_photos(folder: Path, count: int, reference_dir: Path) -> None:
    """`count` crops of mixed sizes from the reference photos (real content, not noise)."""
    sources = [cv2.imread(str(p)) for p in sorted(reference_dir.glob("*_hr.png"))]
    if not sources:
        raise MissingFileError(f"no *_hr.png reference photos in {reference_dir}")
    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = PHOTO_SHAPES[int(rng.integers(len(PHOTO_SHAPES)))]
        image = sources[i % len(sources)]
        if image.shape[0] < h or image.shape[1] < w:  # a small reference photo: enlarged to crop from
            image = cv2.resize(image, (max(w, image.shape[1]) * 2, max(h, image.shape[0]) * 2),
                               interpolation=cv2.INTER_CUBIC)
        y, x = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
        sub = folder / f"set{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"photo{i:04d}.png"), image[y : y + h, x : x + w])


def sequential_job(model: str, inputs: Path, output: Path) -> None:
    """The folder loop before pipelining (read, infer, write in turn, in name order), kept here as
    the baseline it was measured against; each image's finishing time goes to TIMES_NAME."""
    engine = engines.load(model)
    finished = []
    for src in sorted(inputs.rglob("*.png")):
        image = read_image(src)
        sr = engine(image.rgb.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
        dst = output / src.relative_to(inputs).parent / output_name(src, None, engine.scale)
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(dst, sr, None, image.grayscale, image.max_value, image.icc_profile)
        finished.append(time.time())
    (output / TIMES_NAME).write_text(json.dumps(finished))


def steady_rate(output: Path) -> float | None:
    """Images/s from the first finished image to the last: the job's pace once start-up (Ray,
    engine loads) is behind it. From the manifest's times, or the baseline's own record."""
    times_file, manifest = output / TIMES_NAME, output / MANIFEST_NAME
    if times_file.exists():
        times = json.loads(times_file.read_text())
    elif manifest.exists():
        times = Manifest(manifest).finished_times()
    else:
        return None
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def make_clip(path: Path, on_twos: bool) -> Path:
    """CLIP_FRAMES frames of smooth moving colour (a keyframe every KEYFRAME_EVERY frames); on
    twos: each picture held for two frames."""
    return synthetic_clip(path, CLIP_FRAMES, *CLIP_SIZE, rate=CLIP_RATE, hold=2 if on_twos else 1,
                          keyframe_every=KEYFRAME_EVERY)


class RayNodes:
    """`ray start --block` nodes of one CPU each on this machine, each in its own session so that
    stopping them stops exactly their processes."""

    def __init__(self, count: int) -> None:
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": tempfile.mkdtemp(prefix="msnbench", dir="/tmp")}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        self.nodes = [subprocess.Popen(["ray", "start", "--head", "--port", str(port), "--include-dashboard",
                                        "false", *common], env=self.env, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self._wait_for(1)
        for _ in range(count - 1):
            self.nodes.append(subprocess.Popen(["ray", "start", "--address", self.address, *common], env=self.env,
                                               start_new_session=True, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        self._wait_for(count)

    def _wait_for(self, count: int) -> None:
        probe = ("import ray, sys, time; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "deadline = time.time() + 60\n"
                 "while sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]) and time.time() < deadline: "
                 "time.sleep(0.5)\n"
                 "sys.exit(sum(n['Alive'] for n in ray.nodes()) < int(sys.argv[2]))")
        deadline = time.monotonic() + RAY_START_TIMEOUT_S
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-c", probe, self.address, str(count)], env=self.env,
                                  capture_output=True, timeout=RAY_START_TIMEOUT_S)
            if done.returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"Ray did not start {count} nodes at {self.address}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        shutil.rmtree(self.env["RAY_TMPDIR"], ignore_errors=True)


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, the command's log) of one run; a failed run stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return seconds, done.stdout + done.stderr


def upscale_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "msn_deploy.engines.upscale", *args]


# A variant: run the command once; (wall seconds, steady images/s or None).
Run = Callable[[], tuple[float, float | None]]


def folder_variants(model: str, photos: Path, work: Path) -> dict[str, Run]:
    out = work / "out"

    def job(*extra: str) -> Run:
        def run() -> tuple[float, float | None]:
            shutil.rmtree(out, ignore_errors=True)
            seconds, _ = timed(upscale_command(str(photos), "-o", str(out), "--recursive", "--model", model, *extra))
            return seconds, steady_rate(out)
        return run

    def sequential() -> tuple[float, float | None]:
        shutil.rmtree(out, ignore_errors=True)
        seconds, _ = timed([sys.executable, "-c", "import sys; from pathlib import Path; from validate.jobs_bench "
                         "import sequential_job; sequential_job(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))",
                         model, str(photos), str(out)])
        return seconds, steady_rate(out)

    return {"sequential (before)": sequential, "pipelined, --workers 1": job(), "--workers 2": job("--workers", "2")}


def ray_variants(model: str, photos: Path, work: Path) -> dict[str, list[tuple[float, float | None]]]:
    """Each Ray variant once per cluster start (starting the cluster is not part of the job's time)."""
    results = {}
    out = work / "out"
    for nodes in (1, 2):
        cluster = RayNodes(nodes)
        try:
            shutil.rmtree(out, ignore_errors=True)
            seconds, _ = timed(upscale_command(str(photos), "-o", str(out), "--recursive", "--model", model, "--ray",
                                               cluster.address), cluster.env)
            results[f"Ray, {nodes} node{'s' if nodes > 1 else ''} x 1 CPU"] = [(seconds, steady_rate(out))]
        finally:
            cluster.stop()
    return results


def video_variants(model: str, clip: Path, twos: Path, work: Path, reused: dict[str, int]) -> dict[str, Run]:
    """The clip variants; `reused` gets the frames each --reuse-repeats run reused (from its log)."""
    def job(src: Path, *extra: str) -> Run:
        def run() -> tuple[float, float | None]:
            out = work / "clip_x4.mp4"
            out.unlink(missing_ok=True)
            seconds, output = timed(upscale_command(str(src), "-o", str(out), "--model", model, *extra))
            found = re.search(r"(\d+) repeated frames reused", output)
            if found:
                reused[" ".join(extra)] = int(found[1])
            return seconds, None
        return run

    return {
        "clip: one process": job(clip),
        "clip: --segment-seconds 0.5 --workers 2": job(clip, "--segment-seconds", "0.5", "--workers", "2"),
        "clip on twos: one process": job(twos),
        "clip on twos: --reuse-repeats (identical only)": job(twos, "--reuse-repeats"),
        "clip on twos: --reuse-repeats 5": job(twos, "--reuse-repeats", "5"),
    }


def round_robin(variants: dict[str, Run], repeats: int) -> dict[str, list[tuple[float, float | None]]]:
    runs: dict[str, list[tuple[float, float | None]]] = {name: [] for name in variants}
    for round_ in range(repeats):
        for name, run in variants.items():
            log.info("round %d/%d: %s", round_ + 1, repeats, name)
            runs[name].append(run())
    return runs


def summarise(runs: dict[str, list[tuple[float, float | None]]], units: int, unit: str, baseline: str) -> list[dict]:
    def median_s(name: str) -> float:
        return float(np.median([s for s, _ in runs[name]]))

    rows = []
    for name, results in runs.items():
        seconds = [s for s, _ in results]
        steady = [r for _, r in results if r is not None]
        rows.append({"variant": name, "runs": len(results), "median_s": median_s(name), "min_s": min(seconds),
                     "max_s": max(seconds), f"{unit}_per_s": units / median_s(name),
                     "steady_per_s": float(np.median(steady)) if steady else None,
                     "vs_baseline": median_s(baseline) / median_s(name)})
    return rows


def table(rows: list[dict], unit: str, baseline: str) -> str:
    steady = any(r["steady_per_s"] is not None for r in rows)
    base = next(r for r in rows if r["vs_baseline"] == 1.0)
    columns = ["variant", "runs", "whole command: median s (range)", f"{unit}/s", f"vs {baseline}"]
    columns += [f"steady {unit}/s", f"steady vs {baseline}"] if steady else []
    cells = []
    for r in rows:
        row = [r["variant"], r["runs"], f"{r['median_s']:.1f} ({r['min_s']:.1f}-{r['max_s']:.1f})",
               f"{r[f'{unit}_per_s']:.2f}", f"{r['vs_baseline']:.2f}x"]
        if steady:
            ratio = r["steady_per_s"] / base["steady_per_s"] if r["steady_per_s"] and base["steady_per_s"] else None
            row += [f"{r['steady_per_s']:.2f}" if r["steady_per_s"] else "-", f"{ratio:.2f}x" if ratio else "-"]
        cells.append(row)
    return "\n".join(markdown_table(columns, cells))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-jobs-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint, .onnx or .plan for every variant")
    p.add_argument("--images", type=positive_int, default=200, help="photos in the folder (default 200)")
    p.add_argument("--repeats", type=positive_int, default=1, help="rounds of every variant (default 1)")
    p.add_argument("--only", choices=["folder", "ray", "video"], action="append",
                   help="run only these groups (repeatable; default all)")
    p.add_argument("--reference-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "reference",
                   help="where the *_hr.png photos to crop are (default ../shared/reference)")
    p.add_argument("--out", type=Path, default=Path("reports/jobs"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def run_bench(args: argparse.Namespace) -> None:
    groups = args.only or ["folder", "ray", "video"]
    read_artifact_header(args.model)  # a missing or foreign model fails here, not in every variant
    if ("folder" in groups or "ray" in groups) and not sorted(args.reference_dir.glob("*_hr.png")):
        raise MissingFileError(f"no *_hr.png reference photos in {args.reference_dir}; pass --reference-dir")
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    make_output_folder(args.out)
    result: dict[str, object] = {"machine": machine_info(), "images": args.images, "model": args.model}
    sections = [f"Machine: {machine_line(result['machine'])}"]
    with tempfile.TemporaryDirectory(prefix="msn-jobs-bench-") as tmp:
        work = Path(tmp)
        photos = work / "photos"
        if "folder" in groups or "ray" in groups:
            make_photos(photos, args.images, args.reference_dir)
        if "folder" in groups:
            rows = summarise(round_robin(folder_variants(model, photos, work), args.repeats), args.images,
                             "images", "sequential (before)")
            result["folder"] = rows
            sections.append(f"Folder of {args.images} photos ({len(PHOTO_SHAPES)} sizes, in 5 subfolders):\n\n"
                            + table(rows, "images", "sequential"))
        if "ray" in groups:
            rows = summarise(ray_variants(model, photos, work), args.images, "images", "Ray, 1 node x 1 CPU")
            result["ray"] = rows
            sections.append(f"Ray, the same {args.images} photos:\n\n" + table(rows, "images", "1 node"))
        if "video" in groups:
            clip, twos = make_clip(work / "clip.mp4", False), make_clip(work / "twos.mp4", True)
            reused: dict[str, int] = {}
            rows = summarise(round_robin(video_variants(model, clip, twos, work, reused), args.repeats), CLIP_FRAMES,
                             "frames", "clip: one process")
            result["video"], result["reused_frames"] = rows, reused
            counts = "; ".join(f"`{flags}`: {count} of {CLIP_FRAMES} frames reused" for flags, count in reused.items())
            sections.append(f"{CLIP_FRAMES} frames of {CLIP_SIZE[0]}x{CLIP_SIZE[1]} x264 (a keyframe every "
                            f"{KEYFRAME_EVERY}; the clip on twos holds each picture for two frames):\n\n"
                            + table(rows, "frames", "one process") + f"\n\n{counts}.")
    report = "\n\n".join(sections) + "\n"
    write_report(args.out, "jobs_bench", result, report)
    print(report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run_bench(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
