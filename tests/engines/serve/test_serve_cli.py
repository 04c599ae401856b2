"""What the serving tools refuse before any Ray process starts, the upload checks on their own, the
batch grouping, the load generator's arguments, and the Serve config file run by `serve run`."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")

import requests
import yaml

from msn_deploy import engines
from msn_deploy.engines.serve import __main__ as serve_cli
from msn_deploy.engines.serve import cluster
from msn_deploy.engines.serve.app import group_by_size, replica_resources
from msn_deploy.engines.serve.payload import RequestError, check_header, read_body
from msn_deploy.engines.serve.settings import ModelFiles, ServeSettings, hash_token
from msn_deploy.validate.benches import loadtest
from tests.engines.serve.helpers import REPO, decoded, expected_png_pixels, max_level_difference, png_bytes
from tests.ray_cluster import free_port, ray_processes_left, ray_tmpdir


def serve_exit(argv: list[str], capsys, caplog) -> tuple[int, str]:
    """Exit status and everything said (argparse's stderr and the log)."""
    caplog.clear()
    try:
        code = serve_cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err + caplog.text


@pytest.mark.parametrize("flags, words", [
    (["--port", "0"], "from 1 to 65535"),
    (["--port", "70000"], "from 1 to 65535"),
    (["--port", "http"], "whole number"),
    (["--replicas", "0"], "1 or more"),
    (["--max-batch", "-2"], "1 or more"),
    (["--batch-wait-ms", "nan"], "finite number"),
    (["--batch-wait-ms", "-1"], "finite number"),
    (["--gpus-per-replica", "-1"], "finite number"),
    (["--cpus-per-replica", "0"], "> 0"),
    (["--max-pixels", "1x1"], "whole number"),
    (["--backend", "tensorflow"], "invalid choice"),
    (["--tile", "28"], "below MSN's minimum"),
    (["--tile", "64", "--overlap", "40"], "less than half"),
    (["--precision", "int8"], "invalid choice"),
])
def test_bad_flags_are_usage_errors(random_graph, capsys, caplog, flags, words):
    code, err = serve_exit([str(random_graph), *flags], capsys, caplog)
    assert code == 2 and words in err


def test_problems_found_before_ray_starts(random_graph, tmp_path, capsys, caplog, monkeypatch):
    def ray_reached(*_args: object) -> int:
        raise AssertionError("Ray was started for a request that should have been refused")

    monkeypatch.setattr(cluster, "run_until_stopped", ray_reached)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a graph" * 100)
    cases = [
        ([str(tmp_path / "missing.onnx")], "does not exist"),
        (["no-such-checkpoint"], "neither a file nor a known name"),
        ([str(empty)], "is empty"),
        ([str(corrupt)], "corrupt.onnx"),
        ([str(random_graph), "--replicas", "64"], "this machine has"),
        ([str(random_graph), "--device", "tpu"], "unknown device 'tpu'; the backends run on cpu, cuda, gpu, npu, tensorrt, vulkan"),
        ([str(random_graph), "--host", "no.such.host.invalid"], "choose another --port or --host"),
        ([str(random_graph), "--max-pixels", "100"], "max_pixels"),
        ([str(random_graph), "--precision", "fp16"], "is an FP32 artifact, not FP16"),
    ]
    for argv, words in cases:
        code, err = serve_exit(argv, capsys, caplog)
        assert code == 2 and words in err, (argv, err)
        assert "Traceback" not in err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        code, err = serve_exit([str(random_graph), "--port", str(taken.getsockname()[1])], capsys, caplog)
    assert code == 2 and "choose another --port" in err


def run(coroutine):
    return asyncio.run(coroutine)


async def chunks_of(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_read_body_limits():
    assert run(read_body("5", chunks_of(b"hello", 2), limit=5)) == b"hello"
    for declared, data, status in [("6", b"", 413), ("abc", b"x", 400), (None, b"", 400), (None, b"x" * 6, 413)]:
        with pytest.raises(RequestError) as caught:
            run(read_body(declared, chunks_of(data, 2), limit=5))
        assert caught.value.status == status


def test_header_check_reads_sizes_without_decoding():
    image = png_bytes(np.zeros((40, 30, 3), np.uint8))
    header = check_header(image, max_pixels=1200)
    assert (header.width, header.height) == (30, 40)
    for body, limit, status in [(image, 1199, 413), (png_bytes(np.zeros((28, 64), np.uint8)), 10**6, 400),
                                (b"GIF89a" + b"\0" * 40, 10**6, 400), (image[:20], 10**6, 400)]:
        with pytest.raises(RequestError) as caught:
            check_header(body, max_pixels=limit)
        assert caught.value.status == status


def test_request_errors_survive_pickling_between_replicas():
    error = pickle.loads(pickle.dumps(RequestError(413, "too big")))
    assert (error.status, error.message) == (413, "too big")


def test_batches_never_mix_sizes_and_use_power_of_two_calls():
    a, b = np.zeros((3, 40, 48)), np.zeros((3, 32, 56))
    images = [a, b, a, a, b, a, a, a, a]  # seven of a, two of b
    calls = group_by_size(images)
    for call in calls:
        assert len({images[i].shape for i in call}) == 1
    assert sorted(len(call) for call in calls) == [1, 2, 2, 4]
    assert sorted(i for call in calls for i in call) == list(range(len(images)))


def test_gpus_per_replica_become_ray_gpu_resources_and_a_cuda_engine(random_graph, caplog, capsys, monkeypatch):
    settings = ServeSettings(model=str(random_graph), gpus_per_replica=0.5, cpus_per_replica=2)
    assert replica_resources(settings) == {"num_cpus": 2, "num_gpus": 0.5}
    assert settings.engine_device == "cuda" and ServeSettings(model="m.onnx").engine_device == "cpu"
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)  # as on CI; a GPU machine would deploy
    code, err = serve_exit([str(random_graph), "--gpus-per-replica", "1"], capsys, caplog)
    assert code == 2 and "this machine has 0" in err and "--address" in err


def test_an_address_where_no_ray_cluster_answers_is_a_usage_error(random_graph, capsys, caplog):
    """The same bounded check as the jobs' --ray HOST:PORT (engines.jobs.ray_cluster), before Ray retries."""
    code, err = serve_exit([str(random_graph), "--address", f"127.0.0.1:{free_port()}"], capsys, caplog)
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:" in err


def test_settings_keep_only_a_hash_of_the_token(random_graph):
    settings = ServeSettings(model=str(random_graph), token_sha256=hash_token("s3cret"))
    assert "s3cret" not in settings.model_dump_json()
    assert settings.token_matches("s3cret") and not settings.token_matches("s3cre") and not settings.token_matches("")
    with pytest.raises(ValueError, match="extra"):
        ServeSettings(model="x.onnx", replica=2)  # a typo in a config file's args is an error


def test_model_files_carry_a_plan_sidecar(tmp_path):
    plan = tmp_path / "msn.plan"
    plan.write_bytes(b"engine")
    (tmp_path / "msn.plan.json").write_text("{}")
    files = ModelFiles.read(str(plan))
    replica = tmp_path / "replica"
    replica.mkdir()
    copy = files.write_to(replica)
    assert copy.read_bytes() == b"engine" and (copy.parent / "msn.plan.json").read_text() == "{}"


@pytest.mark.parametrize("argv, words", [
    (["--url", "localhost:8000"], "expected a URL"),
    (["--url", "http://127.0.0.1:1", "--concurrency", "1,0"], "1 or more"),
    (["--url", "http://127.0.0.1:1", "--concurrency", "four"], "whole number"),
    (["--url", "http://127.0.0.1:1", "--concurrency", ","], "at least one level"),
    (["--url", "http://127.0.0.1:1", "--requests", "0"], "1 or more"),
])
def test_loadtest_bad_arguments(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as caught:
        loadtest.main([*argv, "--images", str(tmp_path), "--out", str(tmp_path / "lt")])
    assert caught.value.code == 2 and words in capsys.readouterr().err


def test_loadtest_without_images_or_server(tmp_path, caplog):
    out = str(tmp_path / "lt")
    assert loadtest.main(["--url", "http://127.0.0.1:1", "--images", str(tmp_path / "none"), "--out", out]) == 2
    assert "is not a folder" in caplog.text
    (tmp_path / "a.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    assert loadtest.main(["--url", f"http://127.0.0.1:{free_port()}", "--images", str(tmp_path), "--out", out]) == 1
    assert "no MSN service answers" in caplog.text
    assert not (tmp_path / "lt.json").exists()


@pytest.mark.slow
@pytest.mark.service
def test_the_shipped_serve_config_runs_with_serve_run(random_graph, tmp_path):
    config = yaml.safe_load((REPO / "engines/serve/serve_config.yaml").read_text())
    port = free_port()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    config["applications"][0]["args"].update(model=str(random_graph), replicas=1)
    config["applications"][0]["name"] = "sr"  # whatever users call it
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    tmpdir = ray_tmpdir()
    env = {**os.environ, "RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0"}
    log_path = tmp_path / "serve_run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ray.serve.scripts", "run", str(path)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        body = png_bytes((np.random.default_rng(5).random((36, 40, 3)) * 255).astype(np.uint8))
        deadline = time.monotonic() + 240
        while True:  # the proxy answers 404 until the application is deployed; a busy machine answers late
            try:
                if requests.get(url + "/v1/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # refused while starting, or a read that timed out
                pass
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no healthy service in 240 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.5)
        reply = requests.post(url + "/v1/upscale", data=body, timeout=60)
        assert reply.status_code == 200, reply.text
        want = expected_png_pixels(engines.load(random_graph, backend="openvino"), body)
        assert max_level_difference(decoded(reply.content), want) <= 1
        assert requests.get(url + "/v1/info", timeout=30).json()["replicas"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
    leftover = ray_processes_left(tmpdir)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == []
