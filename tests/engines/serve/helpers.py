"""Real services for the serving tests: `python -m msn_deploy.engines.serve` as a subprocess (the Ray clusters
themselves: tests/ray_cluster.py), and the pixels a request must give back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import requests

from msn_deploy import engines
from msn_deploy.engines.media.images import decode_image, encode_image, upscale_alpha
from tests.conftest import REPO
from tests.ray_cluster import free_port, processes_with_env, ray_tmpdir

# Ray start, deploy and engine load; minutes only on a machine busy with something else, but bounded.
STARTUP_TIMEOUT_S = 300


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
    """`python -m msn_deploy.engines.serve ...` with its own Ray temp dir; stopped with SIGTERM."""

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
        self.proc = subprocess.Popen([sys.executable, "-m", "msn_deploy.engines.serve", *args, "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"msn_deploy.engines.serve exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
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




