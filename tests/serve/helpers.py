"""Real services for the serving tests: `python -m engines.serve` and `ray start` as subprocesses,
each Ray cluster in its own RAY_TMPDIR so that its processes can be found (and must be gone) after."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import requests

import engines
from engines.images import decode_image, encode_image, upscale_alpha
from tests.conftest import REPO

# Ray start, deploy and engine load; minutes only on a machine busy with something else, but bounded.
STARTUP_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_tmpdir() -> str:
    # Short: Ray's unix socket paths must stay under 108 bytes.
    return tempfile.mkdtemp(prefix="msnray", dir="/tmp")


def processes_with_env(key: str, value: str) -> list[int]:
    """PIDs of processes whose environment has key=value (Ray's processes inherit RAY_TMPDIR)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def ray_processes_left(tmpdir: str, grace_s: float = 60) -> list[int]:
    """The cluster's processes still alive after `grace_s` (Ray's agents take a moment to exit)."""
    deadline = time.monotonic() + grace_s
    while (left := processes_with_env("RAY_TMPDIR", tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def replica_pids(tmpdir: str) -> list[int]:
    """PIDs of the model replicas (the ingress is not one of them)."""
    pids = []
    for pid in processes_with_env("RAY_TMPDIR", tmpdir):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ServeReplica:msn:MSNModel"):
                pids.append(pid)
        except OSError:
            continue
    return pids


class ServeProcess:
    """`python -m engines.serve ...` with its own Ray temp dir; stopped with SIGTERM."""

    def __init__(self, args: list[str], token: str | None = None, tmpdir: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = tmpdir or ray_tmpdir()
        env = {**os.environ, "RAY_TMPDIR": self.tmpdir, "RAY_USAGE_STATS_ENABLED": "0", **(extra_env or {})}
        env.pop("MSN_SERVE_TOKEN", None)
        if token:
            env["MSN_SERVE_TOKEN"] = token
        self.log_path = Path(self.tmpdir) / "serve.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "engines.serve", *args, "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engines.serve exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if requests.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"no healthy service after {timeout_s} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def png_bytes(pixels: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(suffix, pixels)
    assert ok
    return buffer.tobytes()


def expected_png_pixels(engine: engines.Engine, body: bytes) -> np.ndarray:
    """What the Python runtime makes of an upload: the image CLI's decode, upscale and encode."""
    image = decode_image(body)
    sr = engine(image.rgb.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    alpha = upscale_alpha(image.alpha, engine.scale) if image.alpha is not None else None
    encoded = encode_image(".png", sr, alpha, image.grayscale, image.max_value)
    return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)


def decoded(body: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)


def max_level_difference(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def stop_cluster_processes(tmpdir: str) -> None:
    """Stop one cluster's processes only (`ray stop` would stop every Ray cluster of the machine)."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        for pid in processes_with_env("RAY_TMPDIR", tmpdir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while processes_with_env("RAY_TMPDIR", tmpdir) and time.monotonic() < deadline:
            time.sleep(0.2)


@contextlib.contextmanager
def two_node_cluster(extra_env: dict[str, str] | None = None):
    """A real two-node Ray cluster on this machine: `ray start --head` and `ray start --address`,
    one CPU each (the second node has a `second_node` resource). Yields (address, RAY_TMPDIR, the
    auth environment a driver needs); every process of the cluster is gone afterwards."""
    from engines.serve.cluster import PROXY_READY_TIMEOUT_S

    tmpdir, port = ray_tmpdir(), free_port()
    # Every process of the cluster, and each driver, shares one Ray auth token.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # The proxy readiness allowance a cluster started by engines.serve gets (engines/serve/cluster.py).
    env = {**os.environ, "RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0", **auth,
           "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": PROXY_READY_TIMEOUT_S, **(extra_env or {})}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run(["ray", "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{port}", *common,
                        "--resources", json.dumps({"second_node": 1})],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", tmpdir, auth
    finally:
        stop_cluster_processes(tmpdir)
        assert ray_processes_left(tmpdir) == [], "Ray processes left behind"
