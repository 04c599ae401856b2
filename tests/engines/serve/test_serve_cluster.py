"""Scale-out and fault tolerance on a real two-node Ray cluster (two raylets on this machine, one
CPU each, so two one-CPU replicas must land on different nodes)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")

import requests

from msn_deploy import engines
from msn_deploy.validate.benches.loadtest import Client, Outcome, warm_up_count
from tests.engines.serve.helpers import (
    ServeProcess,
    decoded,
    expected_png_pixels,
    max_level_difference,
    png_bytes,
    replica_pids,
)
from tests.ray_cluster import two_node_cluster

pytestmark = [pytest.mark.slow, pytest.mark.service]
log = logging.getLogger(__name__)
LOAD_CONCURRENCY = 8


@pytest.fixture(scope="module")
def two_nodes():
    with two_node_cluster() as cluster:
        yield cluster


def nodes_serving(url: str, body: bytes, nodes: int, limit: int = 64) -> set[str]:
    """The nodes that answered requests sent one after another, until `nodes` of them have (or
    `limit` requests): Serve's router picks by the replicas' queue lengths as it probes them, and a
    run of one replica's answers is not a failure to spread (16 went to one node once, run S3)."""
    seen = set()
    for _ in range(limit):
        reply = requests.post(url + "/v1/upscale", data=body, timeout=120)
        assert reply.status_code == 200, reply.text
        seen.add(reply.headers["X-MSN-Node"])
        if len(seen) >= nodes:
            break
    return seen


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


class HeldLoad:
    """Uploads from `concurrency` threads until stopped, knowing which are still unanswered.

    Requests are numbered as they start. One that is still unanswered while `2 x concurrency`
    requests started after it have been answered is not in any FIFO queue of the ingress, the
    router or a running replica: it is held by the replica the test has stopped (SIGSTOP).
    """

    def __init__(self, client: Client, bodies: list[bytes], concurrency: int) -> None:
        self.client, self.bodies, self.concurrency = client, bodies, concurrency
        self.lock = threading.Lock()
        self.started = 0
        self.pending: set[int] = set()
        self.answered: list[int] = []
        self.outcomes: list[Outcome] = []
        self.enough = threading.Event()
        self.threads = [threading.Thread(target=self._send_until_enough) for _ in range(concurrency)]

    def _send_until_enough(self) -> None:
        while not self.enough.is_set():
            with self.lock:
                serial = self.started
                self.started += 1
                self.pending.add(serial)
            outcome = self.client.send(serial, self.bodies[serial % len(self.bodies)], keep_body=True)
            with self.lock:
                self.pending.discard(serial)
                self.answered.append(serial)
                self.outcomes.append(outcome)

    def held_since(self, before: int) -> list[int]:
        """Requests started before serial `before` that a stopped replica holds (none: empty)."""
        with self.lock:
            waiting = sorted(serial for serial in self.pending if serial < before)
            if waiting and sum(serial > waiting[0] for serial in self.answered) >= 2 * self.concurrency:
                return waiting
            return []

    def wait(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False


def kill_while_holding_requests(pid: int, load: HeldLoad, attempts: int = 5) -> list[int]:
    """SIGKILL the replica `pid` only once it is certain to hold requests: stopped first (so it can
    neither answer nor take more), killed while requests sent before the stop are still held.
    Returns their serials.

    Each stop is shorter than Serve's health-check timeout (30 s), so the controller does not
    replace the stopped replica itself."""
    for _ in range(attempts):
        stopped_at = load.started
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            held = load.held_since(stopped_at)
            if held:
                os.kill(pid, signal.SIGKILL)
                return held
            time.sleep(0.05)
        os.kill(pid, signal.SIGCONT)  # it held nothing: let it run and take requests again
        load.wait(lambda before=stopped_at: len(load.answered) >= before + 4 * load.concurrency, timeout_s=60)
    raise AssertionError(f"the replica held no request in {attempts} stops; the kill would test nothing")


def test_two_replicas_on_two_nodes_survive_a_killed_replica(two_nodes, random_graph):
    address, tmpdir, auth = two_nodes
    runtime = engines.load(random_graph, backend="openvino")
    rng = np.random.default_rng(3)
    bodies = [png_bytes((rng.random((40 + 8 * i, 48, 3)) * 255).astype(np.uint8)) for i in range(3)]
    service = ServeProcess([str(random_graph), "--address", address, "--replicas", "2", "--max-batch", "8",
                            "--batch-wait-ms", "200"],
                           tmpdir=tmpdir, extra_env=auth)
    try:
        service.wait_healthy()
        wait_for_replicas(service.url, 2)
        # Serve's router spreads requests over replicas; both nodes must answer some.
        assert len(nodes_serving(service.url, bodies[0], 2)) == 2

        before = replica_pids(tmpdir)
        assert len(before) == 2
        load = HeldLoad(Client(service.url, token=None, timeout_s=300, retries=20), bodies, LOAD_CONCURRENCY)
        for thread in load.threads:
            thread.start()
        try:
            # Past the warm-up: both replicas have compiled the shapes and batch sizes of this load.
            assert load.wait(lambda: len(load.answered) >= warm_up_count(LOAD_CONCURRENCY, len(bodies)), 300)
            held = kill_while_holding_requests(before[0], load)
            killed_at = load.started
            # Every request held by the killed replica, and some more, has been answered.
            assert load.wait(lambda: not any(s < killed_at for s in load.pending)
                             and len(load.answered) >= killed_at + 2 * LOAD_CONCURRENCY, 600)
        finally:
            load.enough.set()
            for thread in load.threads:
                thread.join(600)
        outcomes = load.outcomes

        # A request the replica had accepted fails over as a 503 the client retries; one it had only
        # been offered is sent elsewhere by Serve's router. Either way each must end in a right 200.
        failed_attempts = [status for o in outcomes for status in o.failed_attempts]
        log.info("kill test: %d requests, %d answered 200, %d held by the killed replica, failed attempts "
                 "retried by the client: %s", len(outcomes), sum(o.status == 200 for o in outcomes), len(held),
                 failed_attempts)
        assert held and {o.index for o in outcomes} >= set(held)
        assert [o.status for o in outcomes] == [200] * len(outcomes)
        for o in outcomes:
            want = expected_png_pixels(runtime, bodies[o.index % len(bodies)])
            assert max_level_difference(decoded(o.body), want) <= 1, f"request {o.index} is wrong"

        # Replaced: right after the kill Serve may still count the dead replica as running (its
        # health check has not yet failed), so wait for the processes themselves, bounded.
        replaced = lambda: len(pids := replica_pids(tmpdir)) == 2 and before[0] not in pids  # noqa: E731
        deadline = time.monotonic() + 300
        while not replaced() and time.monotonic() < deadline:
            time.sleep(1)
        assert replaced(), f"the killed replica was not replaced in 300 s: replicas {replica_pids(tmpdir)}"
        wait_for_replicas(service.url, 2)
        assert len(nodes_serving(service.url, bodies[1], 2)) == 2
    finally:
        code = service.stop()
    assert code == 0, service.output()[-3000:]
    # Joined, not started here: the cluster stays up, the application's replicas are gone.
    assert replica_pids(tmpdir) == []
