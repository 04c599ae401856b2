"""In-browser speed: milliseconds per 256x256 tile in headless Chromium (onnxruntime-web's wasm
backend on one thread and on several, the page cross-origin isolated by the site's serve.py) next
to ONNX Runtime in Python on the same graph, on the same machine, in the same rounds.

    python -m msn_deploy.validate.benches.browser_bench --out reports/browser [--model best.pth] [--rounds 3]

Each round loads each variant afresh (the browser variants: the exported page, with the session
built before timing) and times `--runs` tiles after one untimed warm-up tile; variants take turns
round by round, so a slow spell of a shared machine falls on all of them. The browser's figure is
onnxruntime-web's own run (timed in the page around `session.run`); the page's whole time per
image (tiling, blending and conversion to pixels; not decoding or PNG encoding) is reported beside it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from msn_deploy import engines
from msn_deploy.engines.web import SiteOptions, WebSite, export_site, serving
from msn_deploy.msn import MissingFileError
from msn_deploy.msn.cli import positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS
from msn_deploy.msn.metrics import to_uint8
from msn_deploy.msn.sample_images import smooth_test_image
from msn_deploy.validate.core.chromium import chromium_missing, headless_chromium
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.browser_bench")

TILE = 256  # LR px: the page's tile size, so one image is one tile
PAGE_TIMEOUT_S = 600


def thread_counts() -> list[int]:
    """One thread, and as many as the page would use (it caps onnxruntime-web at 4)."""
    most = min(4, os.cpu_count() or 1)
    return [1] if most == 1 else [1, most]


def browser_run(driver, url: str, image: Path, threads: int) -> Callable[[], tuple[float, float]]:
    """Load the page for a variant; the function that runs one tile in it: (inference s, whole s)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def status(expected: tuple[str, ...]) -> str:
        return WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.05).until(
            lambda d: d.execute_script("return window.msn && window.msn.status") in expected
            and d.execute_script("return window.msn.status"))

    driver.get(f"{url}?backend=wasm&threads={threads}&tile={TILE}")
    if status(("ready", "error")) == "error":
        raise RuntimeError(f"the page failed to start: {driver.execute_script('return window.msn.error')}")
    used = driver.execute_script("return crossOriginIsolated")
    if threads > 1 and not used:
        raise RuntimeError("the page is not cross-origin isolated, so the wasm backend would run on one thread")

    def one_tile() -> tuple[float, float]:
        driver.find_element(By.ID, "file").send_keys(str(image))
        if status(("done", "error")) == "error":
            raise RuntimeError(f"the page failed: {driver.execute_script('return window.msn.error')}")
        result = driver.execute_script("const r = window.msn.result; return [r.runSeconds, r.seconds, r.tiles, "
                                       "r.threads]")
        assert result[2] == 1 and result[3] == threads, result
        return result[0], result[1]

    return one_tile


def python_run(graph: Path, lr: np.ndarray, threads: int) -> Callable[[], tuple[float, float]]:
    engine = engines.load(graph, backend="onnxruntime", threads=threads)
    batch = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255

    def one_tile() -> tuple[float, float]:
        started = time.perf_counter()
        engine(batch)
        seconds = time.perf_counter() - started
        return seconds, seconds

    return one_tile


def bench(model: str, precisions: list[str], rounds: int, runs: int, workdir: Path) -> dict:
    lr = to_uint8(smooth_test_image(1, TILE, TILE, seed=7)[0].numpy().transpose(1, 2, 0))
    image = workdir / "tile.png"
    Image.fromarray(lr).save(image)
    sites: dict[str, WebSite] = {p: export_site(workdir / f"site-{p}", model, SiteOptions(precision=p))
                                 for p in precisions}
    seconds: dict[str, list[tuple[float, float]]] = {}
    with headless_chromium() as driver:
        for round_ in range(rounds):
            for precision, site in sites.items():
                with serving(site) as url:
                    for threads in thread_counts():
                        for where in ("browser wasm", "python onnxruntime"):
                            name = f"{where} {precision}, {threads} thread(s)"
                            log.info("round %d/%d: %s", round_ + 1, rounds, name)
                            one_tile = browser_run(driver, url, image, threads) if where == "browser wasm" \
                                else python_run(site.graph, lr, threads)
                            one_tile()  # warm-up: first-run allocations and kernel choices
                            seconds.setdefault(name, []).extend(one_tile() for _ in range(runs))
    rows = []
    for name, results in seconds.items():
        ms = np.array([r for r, _ in results]) * 1e3
        whole = np.array([w for _, w in results]) * 1e3
        rows.append({"variant": name, "runs": len(ms), "median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
                     "max_ms": float(ms.max()), "whole_median_ms": float(np.median(whole))})
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        python = by_name[row["variant"].replace("browser wasm", "python onnxruntime")]
        row["vs_python"] = row["median_ms"] / python["median_ms"]
    return {"schema": "msn-browser-bench/1", "tile": TILE, "rounds": rounds, "runs_per_round": runs,
            "graph_bytes": {p: site.graph.stat().st_size for p, site in sites.items()},
            "machine": machine_info(), "rows": rows}


def markdown(report: dict) -> str:
    rows = [(r["variant"], r["runs"], f"{r['median_ms']:.0f}", f"{r['min_ms']:.0f}-{r['max_ms']:.0f}",
             f"{r['whole_median_ms']:.0f}", f"{r['vs_python']:.2f}x") for r in report["rows"]]
    lines = [f"# MSN in the browser: ms per {report['tile']}x{report['tile']} tile", "",
             f"Machine: {machine_line(report['machine'])}.", "",
             *markdown_table(["variant", "runs", "median ms", "range ms", "whole page ms (median)",
                              "vs Python ORT, same graph and threads"], rows)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m msn_deploy.validate.benches.browser_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="checkpoint or known name (default: official)")
    p.add_argument("--precision", nargs="+", choices=ARTIFACT_PRECISIONS, default=list(ARTIFACT_PRECISIONS))
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--runs", type=positive_int, default=5, help="timed tiles per variant and round (default 5)")
    p.add_argument("--out", type=Path, required=True, help="report path without suffix (.json and .md are written)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if len(set(args.precision)) != len(args.precision):
        p.error(f"--precision names one precision twice: {' '.join(args.precision)}")
    if args.out.is_dir():
        p.error(f"--out {args.out} is a folder; give a report path without suffix (e.g. {args.out}/browser): "
                ".json and .md are written there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        missing = chromium_missing()
        if missing:
            raise MissingFileError(missing)
        make_output_folder(args.out.parent)
        with tempfile.TemporaryDirectory(prefix="msn-browser-bench-") as folder:
            report = bench(args.model, args.precision, args.rounds, args.runs, Path(folder))
        page = markdown(report)
        write_report(args.out.parent, args.out.stem, report, page)
        print(page)

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
