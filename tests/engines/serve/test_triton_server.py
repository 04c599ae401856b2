"""A real tritonserver (from the nvidia-pytriton wheel, installed by .ci/setup.sh into .triton/)
serving a generated Python-backend repository over HTTP on 127.0.0.1, answers checked against
the Python runtime."""

from __future__ import annotations

import os
import socket
import subprocess
import sysconfig
import time

import numpy as np
import pytest

from msn_deploy import engines
from msn_deploy.export import triton_repo
from msn_deploy.msn.sample_images import smooth_test_image
from tests.conftest import REPO

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install -e '.[triton]')")
TRITON = REPO / ".triton" / "pytriton" / "tritonserver"
# On SIGTERM tritonserver waits this long for its models to unload; its default of 30 s was all
# spent waiting on the Python backend's stub at every run.
EXIT_TIMEOUT_S = 5
SERVER = TRITON / "bin" / "tritonserver"

pytestmark = pytest.mark.service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, random_ckpt):
    if not SERVER.is_file():
        pytest.skip(f"no tritonserver at {SERVER} (run .ci/setup.sh)")
    repo = tmp_path_factory.mktemp("triton") / "models"
    site = sysconfig.get_paths()["purelib"]
    assert triton_repo.main(["--model", str(random_ckpt), "--python", "-o", str(repo), "--max-batch", "4",
                             "--python-path", site]) == 0
    http_port, grpc_port = free_port(), free_port()
    env = dict(os.environ)
    # The stub links libpython dynamically: this interpreter's, not an older system one; and it finds
    # its bundled CUDA runtime in nvidia_pytriton.libs.
    libs = [sysconfig.get_config_var("LIBDIR"), str(REPO / ".triton" / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = ":".join(libs + [env.get("LD_LIBRARY_PATH", "")])
    log = (repo.parent / "server.log").open("w")
    proc = subprocess.Popen([str(SERVER), "--model-repository", str(repo), "--backend-directory",
                             str(TRITON / "backends"), "--http-address", "127.0.0.1", "--http-port", str(http_port),
                             "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc_port),
                             "--allow-metrics", "false", "--exit-timeout-secs", str(EXIT_TIMEOUT_S)], env=env, stdout=log, stderr=subprocess.STDOUT)
    client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.is_model_ready("msn"):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        if not client.is_model_ready("msn"):
            pytest.fail("tritonserver did not load the model:\n" + (repo.parent / "server.log").read_text()[-3000:])
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def infer(client, x: np.ndarray) -> np.ndarray:
    tensor = http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("msn", [tensor]).as_numpy("output")


def test_served_output_equals_the_python_runtime(server, random_ckpt):
    x = smooth_test_image(2, 32, 40).numpy()
    expected = engines.load(random_ckpt)(x)
    out = infer(server, x)
    assert out.shape == (2, 3, 128, 160)
    assert np.abs(out - expected).max() < 1e-5


def test_bad_input_is_an_error_response_and_the_server_stays_up(server, random_ckpt):
    with pytest.raises(Exception, match="at least 29x29"):
        infer(server, np.full((1, 3, 10, 10), 0.5, np.float32))
    x = smooth_test_image(1, 30, 30).numpy()
    assert np.abs(infer(server, x) - engines.load(random_ckpt)(x)).max() < 1e-5
