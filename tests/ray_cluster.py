"""Real Ray clusters for the tests of everything that runs on Ray (folder jobs, video segments, the
service): `ray start` as subprocesses, each cluster in its own RAY_TMPDIR so that its processes
can be found (and must be gone) afterwards."""

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

# The `ray` beside this interpreter: a suite run as `.venv/bin/python -m pytest` has no venv on PATH.
RAY = str(Path(sys.executable).with_name("ray"))


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
    from msn_deploy.engines.serve.cluster import PROXY_READY_TIMEOUT_S

    tmpdir, port = ray_tmpdir(), free_port()
    # Every process of the cluster, and each driver, shares one Ray auth token.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # The proxy readiness allowance a cluster started by engines.serve gets (engines/serve/cluster.py).
    env = {**os.environ, "RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0", **auth,
           "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": PROXY_READY_TIMEOUT_S, **(extra_env or {})}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common,
                        "--resources", json.dumps({"second_node": 1})],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", tmpdir, auth
    finally:
        stop_cluster_processes(tmpdir)
        assert ray_processes_left(tmpdir) == [], "Ray processes left behind"
