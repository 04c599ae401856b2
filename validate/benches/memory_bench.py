"""Peak memory of a whole-image run per backend, per LR megapixel: the figures behind the engines'
memory budget (engines.runtime.memory) and each engine's `peak_bytes_per_pixel`.

Each backend runs in a process of its own: the engine is loaded and warmed on a small image, then
one image of each size runs whole (tiling off); the growth of the process's peak resident memory
over the warmed engine's is the run's cost. Two sizes give the slope per pixel, without the
fixed part (input and output buffers scale with the image too, and are counted).

    msn-memory-bench --model best.pth --sizes 400x400 800x600 --out bench/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from msn_deploy.engines.runtime.memory import BUDGET_ENV, CPU_PEAK_BYTES_PER_PIXEL
from msn_deploy.msn.cli import hw_size, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.validate.core.fresh_process import json_from_fresh_process
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.memory_bench")

BACKENDS = tuple(CPU_PEAK_BYTES_PER_PIXEL)  # the figures this bench measures

_ONE_RUN = """
import json, resource, sys
import numpy as np
from msn_deploy import engines
artifact, backend, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
engine = engines.load(artifact, backend)
engine(np.full((1, 3, 32, 32), 0.5, np.float32))
warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
engine(np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"warm_mb": warm / 1024, "peak_mb": peak / 1024}))
"""


def peak_of_one_run(model: str, backend: str, h: int, w: int) -> dict[str, float]:
    """A fresh process's peak resident memory (MB) once warmed, and after one whole h x w run."""
    return json_from_fresh_process(_ONE_RUN, model, backend, str(h), str(w),
                                   env={BUDGET_ENV: "1e12"})  # whole images, whatever their size


def measure(artifacts: dict[str, str], sizes: list[tuple[int, int]]) -> list[dict]:
    """One row per backend (mapped to the artifact it runs) and size, and the per-pixel slope
    between the smallest and largest size."""
    rows = []
    for backend, artifact in artifacts.items():
        runs = []
        for h, w in sizes:
            run = peak_of_one_run(artifact, backend, h, w)
            log.info("%s %dx%d: warm %.0f MB, peak %.0f MB", backend, h, w, run["warm_mb"], run["peak_mb"])
            runs.append({"backend": backend, "lr": f"{h}x{w}", "megapixels": h * w / 1e6, **run,
                         "run_mb": run["peak_mb"] - run["warm_mb"]})
        first, last = runs[0], runs[-1]
        slope = (last["run_mb"] - first["run_mb"]) * 2**20 / ((last["megapixels"] - first["megapixels"]) * 1e6)
        rows += [r | {"bytes_per_lr_pixel": round(slope)} for r in runs]
    return rows


def markdown(rows: list[dict], model: str) -> str:
    columns = ["backend", "LR size", "warm MB", "peak MB", "run MB", "run MB per LR MP", "bytes per LR px (slope)"]
    cells = [[r["backend"], r["lr"], f"{r['warm_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['run_mb']:.0f}",
              f"{r['run_mb'] / r['megapixels']:.0f}", str(r["bytes_per_lr_pixel"])] for r in rows]
    return "\n".join([f"# Peak memory of a whole-image run ({model})", "", *markdown_table(columns, cells), ""])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-memory-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="checkpoint or known name (runs as its graph on the "
                                                       "graph runtimes)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=[b for b in BACKENDS if b != "ncnn"],
                   help="default: all but ncnn, which needs --ncnn")
    p.add_argument("--ncnn", metavar="PARAM", help="the ncnn graph that --backends ncnn runs (msn-export-ncnn)")
    p.add_argument("--sizes", nargs=2, type=hw_size, metavar="HxW", default=[(400, 400), (800, 600)],
                   help="two LR sizes, smaller first (default 400x400 800x600)")
    p.add_argument("--out", type=Path, required=True, help="report folder (memory.json, memory.md)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.sizes[0][0] * args.sizes[0][1] >= args.sizes[1][0] * args.sizes[1][1]:
        p.error("--sizes: give the smaller size first")
    if ("ncnn" in args.backends) != bool(args.ncnn):
        p.error("--backends ncnn and --ncnn PARAM go together (ncnn runs only its own graphs)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        make_output_folder(args.out)
        for artifact in {args.model, args.ncnn} - {None}:
            read_artifact_header(artifact)  # a missing or foreign model fails here, not in every process
        artifacts = {b: args.ncnn if b == "ncnn" else args.model for b in args.backends}
        rows = measure(artifacts, args.sizes)
        json_path, _ = write_report(args.out, "memory", {"model": args.model, "rows": rows},
                                    markdown(rows, args.model))
        print(markdown(rows, args.model))
        log.info("report in %s", json_path.parent)

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
