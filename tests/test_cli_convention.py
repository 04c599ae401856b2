"""One exit-code convention for every command: 0 success, 1 the work failed, 2 bad usage or
input found before work, 130 interrupted. Success and most failures are tested beside each
command; here every command meets a bad argument, a missing file and Ctrl-C, and the failures
that no other test covers."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from msn_deploy.engines import upscale
from msn_deploy.engines.serve import __main__ as serve_cli
from msn_deploy.engines.web import __main__ as web_cli
from msn_deploy.export import build_trt, to_ncnn, to_onnx, triton_repo
from msn_deploy.msn.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, positive_int
from msn_deploy.validate.benches import (
    busy_bench,
    command_bench,
    jobs_bench,
    loadtest,
    memory_bench,
    seams,
    video_bench,
)
from msn_deploy.validate.validator import command, layerwise
from tests.conftest import REPO
from tests.util import SUBPROCESS_TIMEOUT_S, exit_code

COMMANDS = {
    "msn-export": to_onnx.main,
    "msn-export-ncnn": to_ncnn.main,
    "msn-build-trt": build_trt.main,
    "msn-triton": triton_repo.main,
    "msn-upscale": upscale.main,
    "msn-serve": serve_cli.main,
    "msn-validate": command.main,
    "msn-loadtest": loadtest.main,
    "msn-video-bench": video_bench.main,
    "msn-jobs-bench": jobs_bench.main,
    "msn-busy-bench": busy_bench.main,
    "msn-seams": seams.main,
    "msn-layerwise": layerwise.main,
    "msn-memory-bench": memory_bench.main,
    "msn-command-bench": command_bench.main,
}


def needs_tensorrt(command: str) -> None:
    if command == "msn-build-trt":
        pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_ARGUMENTS = {
    "msn-export": ["--static", "10x10"],
    "msn-export-ncnn": ["--fp16=yes"],
    "msn-build-trt": ["--max", "1x128"],
    "msn-triton": ["--onnx", "g.onnx", "-o", "repo", "--instances", "0"],
    "msn-upscale": ["in.png", "-o", "out", "--tile", "-1"],
    "msn-serve": ["m.onnx", "--port", "0"],
    "msn-validate": ["--atol", "-1"],
    "msn-loadtest": ["--url", "ftp://127.0.0.1", "--images", "."],
    "msn-video-bench": ["--size", "10x10"],
    "msn-jobs-bench": ["--model", "m.onnx", "--images", "0"],
    "msn-busy-bench": ["--model", "m.pth", "--size", "64"],
    "msn-seams": ["--image", "in.png", "--tiles", "64"],
    "msn-layerwise": ["--reference", "a.onnx", "--candidate", "b.onnx", "--min-psnr", "-1"],
    "msn-memory-bench": ["--sizes", "800x600", "400x400", "--out", "m"],
    "msn-command-bench": ["--image", "p.png", "--out", "c", "--runs", "0"],
}


# The commands that name a precision, each with the arguments it needs besides it: one spelling,
# `--precision NAME`, and the export commands' `--fp16` as its short form.
PRECISION_PARSERS = {
    "msn-export": (to_onnx.parse_args, []),
    "msn-export-ncnn": (to_ncnn.parse_args, []),
    "msn-build-trt": (build_trt.parse_args, []),
    "msn-upscale": (upscale.parse_args, ["in.png", "-o", "out"]),
    "msn-serve": (serve_cli.parse_args, ["m.onnx"]),
    "python -m msn_deploy.engines.web": (web_cli.parse_args, ["export", "site"]),
}


@pytest.mark.parametrize("command", PRECISION_PARSERS)
def test_every_command_names_a_precision_one_way(command, capsys):
    parse, needed = PRECISION_PARSERS[command]
    assert parse([*needed, "--precision", "fp16"]).precision == parse([*needed, "--fp16"]).precision == "fp16"
    assert parse([*needed, "--precision", "fp32"]).precision == "fp32"
    for bad in (["--precision", "fp8"], ["--precision", "FP16"], ["--fp16", "--precision", "fp32"]):
        with pytest.raises(SystemExit) as exited:
            parse([*needed, *bad])
        assert exited.value.code == EXIT_USAGE
        assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_argument_is_a_usage_error(command, capsys):
    assert exit_code(COMMANDS[command], BAD_ARGUMENTS[command]) == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def missing_file_arguments(command: str, tmp_path, random_graph) -> list[str]:
    missing = str(tmp_path / "missing")
    return {
        "msn-export": ["--ckpt", missing + ".pth", "-o", str(tmp_path / "x.onnx")],
        "msn-export-ncnn": ["--ckpt", missing + ".pth", "-o", str(tmp_path / "x.param")],
        "msn-build-trt": ["--onnx", missing + ".onnx", "-o", str(tmp_path / "e.plan")],
        "msn-triton": ["--onnx", missing + ".onnx", "-o", str(tmp_path / "repo")],
        "msn-upscale": [missing + ".png", "-o", str(tmp_path / "out")],
        "msn-serve": [missing + ".onnx", "--port", str(free_port())],
        "msn-validate": ["--onnx", missing + ".onnx", "--out", str(tmp_path / "r")],
        "msn-loadtest": ["--url", "http://127.0.0.1:9", "--images", missing, "--out", str(tmp_path / "l")],
        "msn-video-bench": ["--model", str(random_graph), "--input", missing + ".mp4", "--out", str(tmp_path / "v")],
        "msn-jobs-bench": ["--model", missing + ".onnx", "--out", str(tmp_path / "j")],
        "msn-busy-bench": ["--model", missing + ".pth", "--out", str(tmp_path / "b")],
        "msn-seams": ["--model", str(random_graph), "--image", missing + ".png"],
        "msn-layerwise": ["--reference", str(random_graph), "--candidate", missing + ".onnx", "--out",
                          str(tmp_path / "lw")],
        "msn-memory-bench": ["--model", missing + ".onnx", "--out", str(tmp_path / "m")],
        "msn-command-bench": ["--model", str(random_graph), "--image", missing + ".png", "--out", str(tmp_path / "c")],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_file_is_a_usage_error_named_in_one_line(command, tmp_path, random_graph, caplog):
    needs_tensorrt(command)
    assert COMMANDS[command](missing_file_arguments(command, tmp_path, random_graph)) == EXIT_USAGE
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(tmp_path / "missing") in errors[0].getMessage(), errors


def output_folder_arguments(command: str, folder: str, random_ckpt, random_graph) -> list[str]:
    return {
        "msn-triton": ["--onnx", str(random_graph), "-o", folder],
        "msn-validate": ["--ckpt", str(random_ckpt), "--onnx", str(random_graph), "--out", folder],
        "msn-video-bench": ["--model", str(random_graph), "--out", folder],
        "msn-jobs-bench": ["--model", str(random_graph), "--out", folder],
        "msn-busy-bench": ["--model", str(random_ckpt), "--out", folder],
        "msn-layerwise": ["--reference", str(random_graph), "--candidate", str(random_graph), "--out", folder],
        "msn-memory-bench": ["--model", str(random_graph), "--out", folder],
        "msn-command-bench": ["--model", str(random_graph), "--image", str(random_graph), "--out", folder],
    }[command]


@pytest.mark.parametrize("command", ["msn-triton", "msn-validate", "msn-video-bench", "msn-jobs-bench",
                                     "msn-busy-bench", "msn-layerwise", "msn-memory-bench", "msn-command-bench"])
@pytest.mark.parametrize("where", ["is", "inside"])
def test_a_file_where_the_output_folder_goes_is_a_usage_error(command, where, tmp_path, random_ckpt, random_graph,
                                                              caplog):
    """Hardening round 3, #18: "[Errno 17] File exists", exit 1, after the work."""
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    folder = blocker if where == "is" else blocker / "sub"
    assert COMMANDS[command](output_folder_arguments(command, str(folder), random_ckpt, random_graph)) == EXIT_USAGE
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"{blocker} is a file" in errors[0], errors


def test_the_layerwise_search_on_an_image_below_29x29_says_so(tmp_path, random_graph, caplog):
    """Hardening round 3, #29: an ONNX Runtime traceback."""
    import cv2

    image = tmp_path / "tiny.png"
    cv2.imwrite(str(image), np.zeros((10, 10, 3), np.uint8))
    args = ["--reference", str(random_graph), "--candidate", str(random_graph), "--image", str(image), "--out",
            str(tmp_path / "lw")]
    assert COMMANDS["msn-layerwise"](args) == EXIT_USAGE and "at least 29x29" in caplog.text


# Where each command's work starts: Ctrl-C arriving there must give 130 and a one-line message.
# (msn-serve treats Ctrl-C as "stop serving": exit 0, tested with real signals in tests/engines/serve.)
WORK = {
    "msn-export": ("msn_deploy.export.export_onnx", lambda p: ["--ckpt", str(p["ckpt"]), "-o", str(p["tmp"] / "x.onnx")]),
    "msn-export-ncnn": ("msn_deploy.export.export_ncnn", lambda p: ["--ckpt", str(p["ckpt"]), "-o",
                                                                  str(p["tmp"] / "x.param")]),
    "msn-build-trt": ("msn_deploy.export.build_engine", lambda p: ["--onnx", str(p["graph"]), "-o", str(p["tmp"] / "e.plan")]),
    "msn-triton": ("msn_deploy.export.triton_repo.write_triton_repository", lambda p: ["--onnx", str(p["graph"]), "-o", str(p["tmp"])]),
    "msn-upscale": ("msn_deploy.engines.upscale.run_folder_job", lambda p: [str(p["photo"]), "-o", str(p["tmp"] / "o.png"),
                                                                 "--model", str(p["ckpt"])]),
    "msn-validate": ("msn_deploy.validate.validator.runner.run", lambda p: ["--ckpt", str(p["ckpt"]), "--out", str(p["tmp"])]),
    "msn-loadtest": ("msn_deploy.validate.benches.loadtest.load_test", lambda p: ["--url", "http://127.0.0.1:9", "--images",
                                                               str(p["photo"].parent), "--out", str(p["tmp"] / "l")]),
    "msn-video-bench": ("msn_deploy.validate.benches.video_bench.bench_video", lambda p: ["--model", str(p["graph"]), "--input",
                                                                       str(p["photo"]), "--out", str(p["tmp"])]),
    "msn-jobs-bench": ("msn_deploy.validate.benches.jobs_bench.round_robin", lambda p: ["--model", str(p["graph"]), "--only", "video",
                                                                      "--out", str(p["tmp"] / "j")]),
    "msn-busy-bench": ("msn_deploy.validate.benches.busy_bench.timed", lambda p: ["--model", str(p["ckpt"]), "--out", str(p["tmp"])]),
    "msn-seams": ("msn_deploy.validate.benches.seams.seam_error", lambda p: ["--model", str(p["graph"]), "--image", str(p["photo"])]),
    "msn-layerwise": ("msn_deploy.validate.validator.layerwise.compare_layers", lambda p: ["--reference", str(p["graph"]), "--candidate",
                                                                      str(p["graph"]), "--out", str(p["tmp"])]),
    "msn-memory-bench": ("msn_deploy.validate.benches.memory_bench.measure",
                         lambda p: ["--model", str(p["graph"]), "--out", str(p["tmp"])]),
    "msn-command-bench": ("msn_deploy.validate.benches.command_bench.measure",
                          lambda p: ["--model", str(p["graph"]), "--image", str(p["photo"]), "--out", str(p["tmp"])]),
}


def interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command", WORK)
def test_ctrl_c_during_the_work_exits_130(command, monkeypatch, tmp_path, random_ckpt, random_graph, photo, caplog):
    needs_tensorrt(command)
    target, arguments = WORK[command]
    monkeypatch.setattr(target, interrupt)
    paths = {"ckpt": random_ckpt, "graph": random_graph, "photo": photo, "tmp": tmp_path}
    assert COMMANDS[command](arguments(paths)) == EXIT_INTERRUPTED
    assert "interrupted" in caplog.text and "Traceback" not in caplog.text


def test_ctrl_c_in_a_real_folder_run_says_how_far_it_got(tmp_path, random_ckpt):
    """A real SIGINT in the middle of a folder job: exit 130, no traceback, the count so far."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    import cv2

    for i in range(40):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    proc = subprocess.Popen([sys.executable, "-m", "msn_deploy.engines.upscale", str(folder), "-o", str(tmp_path / "out"),
                             "--model", str(random_ckpt)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while time.monotonic() < deadline and not any((tmp_path / "out").glob("*_x4.png")):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "interrupted after" in err and "of 40 images" in err


def test_an_unreachable_service_is_exit_1(tmp_path, photo, caplog):
    args = ["--url", f"http://127.0.0.1:{free_port()}", "--images", str(photo.parent), "--out", str(tmp_path / "l"),
            "--timeout", "5"]
    assert loadtest.main(args) == EXIT_FAILED
    assert "no MSN service answers" in caplog.text


def test_every_command_has_a_console_script():
    """Each installed script's entry point loads from the command's module (msn-upscale's is the
    `cli` wrapper around `main`); one script is started (each start imports torch: seconds, so
    not all of them)."""
    from importlib.metadata import entry_points

    installed = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("msn-")}
    scripts = {line.split("=")[0].strip() for line in (REPO / "pyproject.toml").read_text().splitlines()
               if line.startswith("msn-")}
    assert scripts == set(COMMANDS)
    if set(installed) != scripts:
        pytest.skip(f"this checkout's scripts are not installed next to {sys.executable} (pip install -e .)")
    assert {name: installed[name].load().__module__ for name in COMMANDS} == \
           {name: main.__module__ for name, main in COMMANDS.items()}
    path = os.path.join(os.path.dirname(sys.executable), "msn-upscale")
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: msn-upscale" in result.stdout, result.stderr


def test_the_busy_bench_takes_zero_requests_to_skip_the_service_but_not_fewer(capsys):
    assert busy_bench.parse_args(["--model", "m.pth", "--requests", "0"]).requests == 0
    assert exit_code(busy_bench.main, ["--model", "m.pth", "--requests", "-1"]) == EXIT_USAGE
    assert "--requests" in capsys.readouterr().err


@pytest.mark.slow
def test_the_busy_bench_measures_every_variant_idle_and_busy(tmp_path, random_ckpt, capsys):
    out = tmp_path / "busy"
    assert busy_bench.main(["--model", str(random_ckpt), "--size", "32x32", "--repeats", "1", "--requests", "0",
                            "--out", str(out)]) == 0
    report = json.loads((out / "busy_bench.json").read_text())
    rows = report["sizes"]["32x32"]
    assert [r["variant"] for r in rows["busy"]] == list(busy_bench.VARIANTS) and report["first_run_s"] > 0
    assert all(r["busy_over_idle"] > 0 for r in rows["busy"]) and "Busy / idle" in capsys.readouterr().out


def test_the_benchmark_commands_succeed(tmp_path, random_graph, photo, capsys):
    """msn-seams and msn-video-bench end to end on small inputs (exit 0 and their tables)."""
    assert seams.main(["--model", str(random_graph), "--image", str(photo), "--tiles", "32/8"]) == 0
    assert "| 32 | 8 |" in capsys.readouterr().out
    pytest.importorskip("av", reason="PyAV is not installed")
    out = tmp_path / "video"
    assert video_bench.main(["--model", str(random_graph), "--size", "32x40", "--frames", "4", "--out", str(out),
                             "--codec", "ffv1", "--pix-fmt", "bgr0"]) == 0
    assert (out / "video_bench.json").is_file() and "pipeline / inference" in (out / "video_bench.md").read_text()


@pytest.mark.parametrize(("text", "value"), [("1e9", 10**9), ("2.5e6", 2_500_000), ("64", 64)])
def test_whole_numbers_may_be_written_in_scientific_notation(text, value):
    """Hardening round 3, #21: --max-pixels 1e9 was refused."""
    assert positive_int(text) == value


@pytest.mark.parametrize("text", ["1.5", "nan", "1e400", "0", "-1e3", "ten"])
def test_what_is_not_a_positive_whole_number_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)


def test_ctrl_c_inside_a_deferred_step_arrives_when_the_step_ends():
    """An output and its record are one step: Ctrl-C between the two would leave one without the other.
    In a process of its own, as a command runs (the suite's process holds other libraries' threads)."""
    script = """
import os, signal, time
from msn_deploy.msn.cli import interrupts_deferred
finished = False
try:
    with interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # a signal let through would raise here
        finished = True
except KeyboardInterrupt:
    print("interrupted after the step" if finished else "interrupted inside the step")
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=SUBPROCESS_TIMEOUT_S)
    assert run.stdout.strip() == "interrupted after the step", run.stdout + run.stderr
