"""`export_ncnn`: a checkpoint in, a verified ncnn graph out (`NAME.param` + `NAME.bin`) that chaiNNer
and upscayl-ncnn's current build load (export.ncnn_apps says which apps do), with a model card.

pnnx converts the traced inference form; it is traced at two input sizes so that no size is baked
into the graph (ESA's resize back to the input's size stays tied to the input). The converted
graph is then fitted to the apps' convention (input blob `data`, output blob `output`, RGB in
[0, 1] in and out) and rewritten, exactly, with the layers older ncnn builds know
(export.ncnn_portable). The files are run on ncnn's CPU path, as this project's runtime loads them,
against the PyTorch training form and renamed into place only when they pass; the model card
(export.model_card) is written beside them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from msn_deploy.export.model_card import model_card_path, write_model_card
from msn_deploy.export.ncnn_portable import PortableGraph
from msn_deploy.export.onnx_graph import ExportError
from msn_deploy.export.parity import ParityResult, Tolerance
from msn_deploy.export.verify import VerificationError
from msn_deploy.msn import MIN_INPUT_SIZE, MSN, UsageError, build_model, read_checkpoint, to_inference_form
from msn_deploy.msn.files import atomic_output, check_writable, refuse_overwriting_inputs
from msn_deploy.msn.formats.ncnn_net import NcnnNet, weights_path
from msn_deploy.msn.formats.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParam
from msn_deploy.msn.formats.ncnn_weights import read_weights
from msn_deploy.msn.sample_images import smooth_test_image

log = logging.getLogger(__name__)

# Two trace sizes tell pnnx which sizes are dynamic; the checks run at a size of neither, and at
# the smallest odd one, where a size baked in or a wrong rounding would show.
TRACE_HW = ((64, 64), (37, 53))
VERIFY_HW = ((96, 120), (MIN_INPUT_SIZE, MIN_INPUT_SIZE + 2))
PNNX_TIMEOUT_S = 600


@dataclass(frozen=True)
class NcnnExportOptions:
    fp16: bool = False  # half-precision weights in the .bin (half the size; ncnn computes in its own precision)
    verify: bool = True
    ema: bool = True  # BasicSR checkpoints: params_ema rather than params


@dataclass(frozen=True)
class NcnnExportResult:
    param: Path
    weights: Path
    card: Path  # the OpenModelDB-style model card (export.model_card)
    size_bytes: int  # both files
    layers: int
    options: NcnnExportOptions
    verification: list[tuple[tuple[int, int], ParityResult]]
    seconds: float

    def summary(self) -> str:
        weights = "FP16" if self.options.fp16 else "FP32"
        return (f"Wrote {self.param} and {self.weights} ({self.size_bytes / 1024:.0f} KiB, {weights} weights): "
                f"{self.layers} layers, input blob '{INPUT_BLOB}', output blob '{OUTPUT_BLOB}', RGB in [0, 1]; "
                f"its model card {self.card.name}. Verification on ncnn's CPU path vs PyTorch: "
                f"{_checks(self.verification)}. Took {self.seconds:.1f} s.")


def default_ncnn_name(scale: int) -> Path:
    return Path(f"msn_x{scale}.param")


def export_ncnn(checkpoint: str | os.PathLike, path: str | os.PathLike | None = None,
                options: NcnnExportOptions | None = None) -> NcnnExportResult:
    """Export MSN's inference form to ncnn at `path` (a `.param`; the `.bin` goes beside it;
    default msn_x{scale}.param here). Raises UsageError subclasses for bad paths and checkpoints
    (before any work), ExportError when pnnx fails, VerificationError when the files do not
    compute what the PyTorch model computes (nothing is written then)."""
    options = options or NcnnExportOptions()
    if path is not None:
        _check_outputs(Path(path), [checkpoint])
    started = time.perf_counter()
    log.info("[1/4] reading checkpoint %s", checkpoint)
    ckpt = read_checkpoint(checkpoint, ema=options.ema)
    eager = build_model(ckpt).float().eval()
    param_path = Path(path) if path is not None else default_ncnn_name(ckpt.config.upscale)
    _check_outputs(param_path, [ckpt.path])
    with tempfile.TemporaryDirectory(prefix="msn-ncnn-") as tmp:
        log.info("[2/4] converting the inference form with pnnx (%s weights)", "FP16" if options.fp16 else "FP32")
        param = _convert(to_inference_form(eager), Path(tmp), options.fp16)
        param.rename_blob(param.inputs()[0], INPUT_BLOB)
        param.rename_blob(param.outputs()[0], OUTPUT_BLOB)
        param.mark_upsampler()
        portable = PortableGraph(param, read_weights(param, Path(tmp) / "msn.ncnn.bin"))
        portable.make_portable()
        staged = Path(tmp) / "msn.param"
        staged.write_text(param.text())
        weights_path(staged).write_bytes(portable.weights_bytes())
        verification = []
        if options.verify:
            log.info("[3/4] verifying on ncnn's CPU path")
            verification = verify_ncnn(staged, eager, options.fp16)
            failed = [f"{h}x{w}: {result}" for (h, w), result in verification if not result.passed]
            if failed:
                raise VerificationError(f"{param_path} was not written: ncnn output {'; '.join(failed)}")
        log.info("[4/4] writing %s and %s", param_path, weights_path(param_path))
        # The weights first: a .param is what apps list, so it appears only beside its .bin.
        with atomic_output(weights_path(param_path)) as tmp_bin:
            shutil.copyfile(weights_path(staged), tmp_bin)
        with atomic_output(param_path) as tmp_param:
            shutil.copyfile(staged, tmp_param)
    card = write_model_card(param_path, weights_path(param_path), param, ckpt, _checks(verification))
    size = param_path.stat().st_size + weights_path(param_path).stat().st_size
    return NcnnExportResult(param_path, weights_path(param_path), card, size, len(param.layers), options,
                            verification, time.perf_counter() - started)


def _checks(verification: list[tuple[tuple[int, int], ParityResult]]) -> str:
    return "; ".join(f"{h}x{w}: {result}" for (h, w), result in verification) or "skipped"


def _check_outputs(param: Path, inputs: list) -> None:
    if param.suffix != ".param":
        raise UsageError(f"an ncnn graph is written as NAME.param (with NAME.bin beside it), not {param.name}")
    for output in (param, weights_path(param), model_card_path(param)):
        check_writable(output)
        refuse_overwriting_inputs([output], inputs)


def _convert(model: torch.nn.Module, folder: Path, fp16: bool) -> NcnnParam:
    """pnnx on the model traced at TRACE_HW; the ncnn param it wrote (msn.ncnn.bin beside it)."""
    import pnnx

    traced_path = folder / "msn.pt"
    examples = [smooth_test_image(1, h, w) for h, w in TRACE_HW]
    with torch.no_grad():
        torch.jit.trace(model, examples[0], check_trace=False).save(str(traced_path))
    shapes = [f"[1,3,{h},{w}]f32" for h, w in TRACE_HW]
    command = [pnnx.EXEC_PATH, str(traced_path), f"inputshape={shapes[0]}", f"inputshape2={shapes[1]}",
               "device=cpu", f"fp16={int(fp16)}",
               *(f"{key}={folder / name}" for key, name in (
                   ("pnnxparam", "msn.pnnx.param"), ("pnnxbin", "msn.pnnx.bin"), ("pnnxpy", "msn_pnnx.py"),
                   ("pnnxonnx", "msn.pnnx.onnx"), ("ncnnparam", "msn.ncnn.param"), ("ncnnbin", "msn.ncnn.bin"),
                   ("ncnnpy", "msn_ncnn.py")))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"pnnx did not run: {exc}") from None
    log.debug("pnnx said:\n%s", done.stdout[-4000:] + done.stderr[-4000:])
    written = folder / "msn.ncnn.param"
    if done.returncode != 0 or not written.is_file() or not (folder / "msn.ncnn.bin").is_file():
        raise ExportError(f"pnnx failed (exit {done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    param = NcnnParam.read(written)
    unconverted = sorted({layer.type for layer in param.layers if "." in layer.type})  # e.g. Tensor.expand_as
    if unconverted:
        raise ExportError(f"pnnx left operators ncnn has no layer for: {', '.join(unconverted)}")
    return param


def verify_ncnn(param: Path, model: MSN, fp16: bool) -> list[tuple[tuple[int, int], ParityResult]]:
    """The graph on ncnn's CPU path (FP32 arithmetic) against the float32 training form, at
    VERIFY_HW; an output that is not exactly 4H x 4W fails."""
    net = NcnnNet(param)
    results = []
    for h, w in VERIFY_HW:
        x = smooth_test_image(1, h, w)
        with torch.no_grad():
            expected = model(x)[0].numpy()
        out = net.run(x[0].numpy())
        if out.shape != expected.shape:
            result = ParityResult(float("inf"), float("-inf"), False, f"output {out.shape}, not {expected.shape}")
        else:
            result = Tolerance().judge(out, expected, "fp16" if fp16 else "fp32")
        log.info("verification on %dx%d: %s", h, w, result)
        results.append(((h, w), result))
    return results

