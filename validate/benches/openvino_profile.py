"""OpenVINO's own per-layer profile of one photo-sized run, FP32 and BF16 side by side: where the
CPU plugin spends the time, by layer type (after its fusions) and by the kernels it picked.

    python -m msn_deploy.validate.benches.openvino_profile --model best.pth --out reports/ov-profile

The graph is the one the engines run (a checkpoint's cached FP32 graph), compiled for one static
shape as the OpenVINO engine compiles it, with PERF_COUNT on; each precision is warmed up, then
`--runs` runs are timed, round-robin, and each layer's median is kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from msn_deploy.engines.runtime.graph_cache import cached_graph
from msn_deploy.msn.cli import hw_size, positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.kinds import GRAPH, artifact_kind
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.openvino_profile")

HINTS = {"fp32": "f32", "bf16": "bf16"}
WARMUP_RUNS = 2


def profile(graph: Path, size: tuple[int, int], runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per precision: per executed layer, its type, kernel and median milliseconds."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(graph))
    model.reshape({model.input(0).get_any_name(): [1, 3, *size]})
    requests = {p: core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERF_COUNT": True,
                                                     "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
                for p, hint in HINTS.items()}
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    times: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in HINTS}
    kinds: dict[str, dict[str, tuple[str, str]]] = {p: {} for p in HINTS}
    for run in range(WARMUP_RUNS + runs):
        for precision, request in requests.items():
            request.infer({0: x})
            if run < WARMUP_RUNS:
                continue
            for layer in request.profiling_info:
                if layer.status == ov.ProfilingInfo.Status.EXECUTED:
                    times[precision][layer.node_name].append(layer.real_time.total_seconds() * 1e3)
                    kinds[precision][layer.node_name] = (layer.node_type, layer.exec_type)
        log.info("run %d of %d", run + 1, WARMUP_RUNS + runs)
    return {p: {name: {"type": kinds[p][name][0], "kernel": kinds[p][name][1], "ms": float(np.median(ms))}
                for name, ms in times[p].items()} for p in HINTS}


def by_type(layers: dict[str, dict[str, float]]) -> dict[str, tuple[int, float]]:
    totals: dict[str, list[float]] = defaultdict(list)
    for layer in layers.values():
        totals[layer["type"]].append(layer["ms"])
    return {t: (len(ms), sum(ms)) for t, ms in sorted(totals.items(), key=lambda kv: -sum(kv[1]))}


def by_kernel(layers: dict[str, dict[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for layer in layers.values():
        totals[f"{layer['type']} / {layer['kernel']}"] += layer["ms"]
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def markdown(data: dict) -> str:
    fp32, bf16 = (by_type(data["layers"][p]) for p in HINTS)
    total = {p: sum(layer["ms"] for layer in data["layers"][p].values()) for p in HINTS}
    rows = [[t, n, f"{ms:.1f}", f"{100 * ms / total['fp32']:.0f}%", f"{bf16.get(t, (0, 0.0))[1]:.1f}",
             f"{ms / bf16[t][1]:.2f}x" if bf16.get(t, (0, 0.0))[1] else "-"] for t, (n, ms) in fp32.items()]
    rows += [[t, n, "-", "-", f"{ms:.1f}", "-"] for t, (n, ms) in bf16.items() if t not in fp32]
    rows.append(["**all layers**", "", f"{total['fp32']:.1f}", "100%", f"{total['bf16']:.1f}",
                 f"{total['fp32'] / total['bf16']:.2f}x"])
    kernels = [[p, k, f"{ms:.1f}"] for p in HINTS for k, ms in list(by_kernel(data["layers"][p]).items())[:6]]
    return "\n".join([
        f"# OpenVINO per-layer profile: {data['model']}, 1x3x{data['size']}, median of {data['runs']} runs", "",
        machine_line(data["machine"]), "",
        *markdown_table(["layer type (after fusion)", "layers", "FP32 ms", "FP32 share", "BF16 ms", "BF16 speed-up"],
                        rows), "",
        "Kernels that take the most time:", "",
        *markdown_table(["precision", "layer type / kernel", "ms"], kernels), ""])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m msn_deploy.validate.benches.openvino_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="checkpoint, known name or FP32 .onnx graph")
    p.add_argument("--size", type=hw_size, metavar="HxW", default=(360, 640), help="LR size (default 360x640)")
    p.add_argument("--runs", type=positive_int, default=10, help="timed runs per precision (default 10)")
    p.add_argument("--out", type=Path, required=True, help="report folder (openvino_profile.json and .md)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        make_output_folder(args.out)
        graph = Path(args.model) if artifact_kind(args.model) is GRAPH else cached_graph(args.model)
        data = {"model": str(args.model), "size": f"{args.size[0]}x{args.size[1]}", "runs": args.runs,
                "machine": machine_info(), "layers": profile(graph, args.size, args.runs)}
        write_report(args.out, "openvino_profile", data, markdown(data))
        print(markdown(data))

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
