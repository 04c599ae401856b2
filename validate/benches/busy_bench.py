"""The default command on an idle and on a busy machine: `msn-upscale photo.png` with a checkpoint,
run as a user types it (start-up, model load and compile included), round-robin, `--repeats`
times; median and range, and the busy/idle ratio of each variant from one run.

    python -m msn_deploy.validate.benches.busy_bench --model ../shared/checkpoints/team28_MSN.pth --out reports/busy

Variants: eager PyTorch with OpenMP's default spinning (`GOMP_SPINCOUNT=300000`: how torch ran
before msn.threads made it wait passively), eager PyTorch as it runs now (`--backend torch`),
and the default (`--backend auto`: the checkpoint's graph from the cache on OpenVINO; the cache is
filled before the rounds, so these are second runs). "Busy" is another process spinning on one
core for the whole round. The first-run cost of the default (export into an empty cache) is
timed on its own, idle. The same three as a Serve replica (`python -m msn_deploy.engines.serve`, one replica
of 2 CPUs) under the load generator (validate.loadtest, 4 clients), idle and busy.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import requests

from msn_deploy.msn.checkpoint import CACHE_ENV, resolve_checkpoint
from msn_deploy.msn.cli import display_size, non_negative_int, positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.benches.jobs_bench import round_robin, summarise, table, timed, upscale_command
from msn_deploy.validate.benches.loadtest import load_test
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.busy_bench")

SIZES = ((128, 128), (360, 640))  # LR height, width
SPINNING = {"GOMP_SPINCOUNT": "300000"}  # libgomp's default spin count, which passive waiting sets to 0
VARIANTS = {  # name: (extra arguments, extra environment)
    "torch, spinning (before)": (["--backend", "torch"], SPINNING),
    "torch, passive": (["--backend", "torch"], {}),
    "default (auto: OpenVINO graph)": ([], {}),
}
SERVE_CLIENTS = 4
SERVE_START_TIMEOUT_S = 300


@contextlib.contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """Another process keeping one core busy for the block (or nothing, for the idle runs)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def write_photo(path: Path, height: int, width: int) -> Path:
    rgb = smooth_test_image(1, height, width)[0].numpy().transpose(1, 2, 0)
    cv2.imwrite(str(path), np.round(rgb[..., ::-1] * 255).astype(np.uint8))
    return path


def variants(model: str, photo: Path, work: Path, env: dict[str, str], busy: bool) -> dict:
    def command(index: int, extra: list[str], extra_env: dict[str, str]):
        def run() -> tuple[float, None]:
            with busy_core(busy):
                seconds, _ = timed(upscale_command(str(photo), "-o", str(work / f"{index}.png"), "--overwrite",
                                                   "--model", model, *extra), env | extra_env)
            return seconds, None
        return run

    return {name: command(i, *VARIANTS[name]) for i, name in enumerate(VARIANTS)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def service(model: str, extra: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`python -m msn_deploy.engines.serve` with one 2-CPU replica on a free local port, until it is healthy."""
    port = free_port()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "msn_deploy.engines.serve", model, "--port", str(port),
                                 "--replicas", "1", "--cpus-per-replica", "2", *extra], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become healthy; see {log_path}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/v1/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def serve_rows(model: str, photo: Path, work: Path, env: dict[str, str], count: int) -> list[dict]:
    """Requests/s of one replica per variant, idle and with one core busy (the same service)."""
    body = photo.read_bytes()
    rows = []
    for i, (name, (extra, extra_env)) in enumerate(VARIANTS.items()):
        row: dict[str, object] = {"variant": name}
        with service(model, extra, env | extra_env, work / f"serve{i}.log") as url:
            for busy in (False, True):
                with busy_core(busy):
                    level = load_test(url, [body], [photo.name], [SERVE_CLIENTS], count)["levels"][0]
                if level["ok"] != level["requests"]:
                    raise RuntimeError(f"{name}: {level['requests'] - level['ok']} requests failed: {level}")
                row["busy_rps" if busy else "idle_rps"] = level["throughput_rps"]
        row["busy_over_idle"] = row["idle_rps"] / row["busy_rps"]
        rows.append(row)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-busy-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a checkpoint (.pth, .safetensors or known name)")
    p.add_argument("--size", type=display_size, action="append", metavar="WIDTHxHEIGHT",
                   help="LR photo size, repeatable (default 128x128 and 640x360)")
    p.add_argument("--repeats", type=positive_int, default=3, help="rounds of every variant (default 3)")
    p.add_argument("--requests", type=non_negative_int, default=24,
                   help="requests to the service per variant and machine state (default 24; 0 skips the service)")
    p.add_argument("--out", type=Path, default=Path("reports/busy"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def run_bench(args: argparse.Namespace) -> None:
    model = str(resolve_checkpoint(args.model).resolve())
    sizes = [(h, w) for w, h in args.size] if args.size else list(SIZES)
    make_output_folder(args.out)
    result: dict[str, object] = {"machine": machine_info(), "model": args.model, "sizes": {}}
    sections = [f"Machine: {machine_line(result['machine'])}"]
    with tempfile.TemporaryDirectory(prefix="msn-busy-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, CACHE_ENV: str(work / "cache")}
        first = timed(upscale_command(str(write_photo(work / "first.png", 64, 64)), "-o", str(work / "first_x4.png"),
                                      "--model", model), env)[0]
        result["first_run_s"] = first
        sections.append(f"First run of the default command (64x64; exports the graph into an empty cache, "
                        f"verifies it, then upscales): {first:.1f} s")
        for h, w in sizes:
            photo = write_photo(work / f"photo_{w}x{h}.png", h, w)
            rows = {}
            for busy in (False, True):
                state = "busy" if busy else "idle"
                log.info("%dx%d, %s machine", w, h, state)
                rows[state] = summarise(round_robin(variants(model, photo, work, env, busy), args.repeats), 1,
                                        "images", "torch, spinning (before)")
            for idle, busy in zip(rows["idle"], rows["busy"]):
                idle["busy_over_idle"] = busy["busy_over_idle"] = busy["median_s"] / idle["median_s"]
            result["sizes"][f"{w}x{h}"] = rows
            sections.append(f"{w}x{h} photo, idle machine:\n\n" + table(rows["idle"], "images", "spinning torch")
                            + f"\n\n{w}x{h} photo, one core kept busy by another process:\n\n"
                            + table(rows["busy"], "images", "spinning torch") + "\n\nBusy / idle: " + "; ".join(
                                f"{r['variant']} {r['busy_over_idle']:.2f}x" for r in rows["busy"]))
        if args.requests:
            photo = write_photo(work / "serve.png", *sizes[0])
            rows = serve_rows(model, photo, work, env, args.requests)
            result["serve"] = rows
            serve_table = markdown_table(["variant", "idle req/s", "busy req/s", "busy / idle"], [
                (r["variant"], f"{r['idle_rps']:.2f}", f"{r['busy_rps']:.2f}", f"{r['busy_over_idle']:.2f}x")
                for r in rows])
            sections.append(f"One Serve replica (2 CPUs), {SERVE_CLIENTS} clients, {args.requests} uploads of a "
                            f"{sizes[0][1]}x{sizes[0][0]} photo:\n\n" + "\n".join(serve_table))
    report = "\n\n".join(sections) + "\n"
    write_report(args.out, "busy_bench", result, report)
    print(report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run_bench(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
