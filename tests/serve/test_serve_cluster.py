"""Scale-out and fault tolerance on a real two-node Ray cluster (two raylets on this machine, one
CPU each, so two one-CPU replicas must land on different nodes)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")

import requests

import engines
from tests.serve.helpers import (
    ServeProcess,
    decoded,
    expected_png_pixels,
    free_port,
    max_level_difference,
    png_bytes,
    processes_with_env,
    ray_processes_left,
    ray_tmpdir,
    replica_pids,
)
from validate.loadtest import Client, run_level, warm_up_count

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)
LOAD_CONCURRENCY = 8


def stop_processes(tmpdir: str) -> None:
    """Stop this cluster's processes only (`ray stop` would stop every Ray cluster of the machine)."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        for pid in processes_with_env("RAY_TMPDIR", tmpdir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while processes_with_env("RAY_TMPDIR", tmpdir) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def two_nodes():
    tmpdir, port = ray_tmpdir(), free_port()
    # Every process of the cluster, and the deploying one, shares one Ray auth token.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env = {**os.environ, "RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run(["ray", "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{port}", *common,
                        "--resources", json.dumps({"second_node": 1})],
                       env=env, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", tmpdir, auth
    finally:
        stop_processes(tmpdir)
        assert ray_processes_left(tmpdir) == [], "Ray processes left behind"


def nodes_serving(url: str, body: bytes, count: int) -> set[str]:
    replies = [requests.post(url + "/v1/upscale", data=body, timeout=120) for _ in range(count)]
    assert all(r.status_code == 200 for r in replies)
    return {r.headers["X-MSN-Node"] for r in replies}


def wait_for_replicas(url: str, count: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/v1/info", timeout=10).json()["replicas"] == count:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    raise TimeoutError(f"Serve did not get back to {count} running replicas in {timeout_s} s")


def test_two_replicas_on_two_nodes_survive_a_killed_replica(two_nodes, random_graph):
    address, tmpdir, auth = two_nodes
    runtime = engines.load(random_graph, backend="openvino")
    rng = np.random.default_rng(3)
    bodies = [png_bytes((rng.random((40 + 8 * i, 48, 3)) * 255).astype(np.uint8)) for i in range(3)]
    # A long batch wait keeps requests queued inside each replica, so the kill usually catches some.
    service = ServeProcess([str(random_graph), "--address", address, "--replicas", "2", "--max-batch", "8",
                            "--batch-wait-ms", "200"],
                           tmpdir=tmpdir, extra_env=auth)
    try:
        service.wait_healthy()
        wait_for_replicas(service.url, 2)
        # Serve's router spreads requests over replicas; both nodes must answer some.
        assert len(nodes_serving(service.url, bodies[0], 16)) == 2

        before = replica_pids(tmpdir)
        assert len(before) == 2
        client = Client(service.url, token=None, timeout_s=120, retries=20)
        load: dict[str, object] = {}
        loader = threading.Thread(target=lambda: load.update(
            result=run_level(client, bodies, concurrency=LOAD_CONCURRENCY, count=64, keep_bodies=True)))
        loader.start()
        while client.answered < warm_up_count(LOAD_CONCURRENCY, len(bodies)) + 8 and loader.is_alive():  # past the warm-up
            time.sleep(0.05)
        os.kill(before[0], signal.SIGKILL)
        loader.join(600)
        outcomes, seconds = load["result"]

        failed_attempts = [status for o in outcomes for status in o.failed_attempts]
        log.info("kill test: %d requests, %d answered 200, failed attempts retried: %s, %.1f s",
                 len(outcomes), sum(o.status == 200 for o in outcomes), failed_attempts, seconds)
        assert [o.status for o in outcomes] == [200] * len(outcomes)
        for o in outcomes:
            want = expected_png_pixels(runtime, bodies[o.index % len(bodies)])
            assert max_level_difference(decoded(o.body), want) <= 1, f"request {o.index} is wrong"
        assert failed_attempts, "the kill did not hit the load: nothing needed a retry"

        wait_for_replicas(service.url, 2)
        after = replica_pids(tmpdir)
        assert len(after) == 2 and before[0] not in after
        assert len(nodes_serving(service.url, bodies[1], 16)) == 2
    finally:
        code = service.stop()
    assert code == 0, service.output()[-3000:]
    # Joined, not started here: the cluster stays up, the application's replicas are gone.
    assert replica_pids(tmpdir) == []
