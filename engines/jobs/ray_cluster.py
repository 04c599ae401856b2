"""Starting or joining Ray, one way for every part that runs on it (folder jobs, video segments,
the HTTP service): a cluster of this machine alone on loopback, or a bounded check before joining one."""

from __future__ import annotations

import logging
import socket

from msn_deploy.msn import UsageError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 2.0
LOCAL = "local"  # no address: a Ray instance of this machine, for this run only


class RayAddressError(UsageError):
    """No Ray cluster answers at the address given."""


def check_reachable(address: str) -> None:
    """A bounded check that something listens at HOST:PORT, before Ray tries (and retries) for long."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S) as probe:
            reply = _reply_to_http(probe)
    except (OSError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else getattr(exc, "strerror", None) or exc
        raise RayAddressError(f"no Ray cluster answers at {address} ({reason}); start one with `ray start --head` "
                              "there, or leave out the address to run one on this machine") from None
    if reply.startswith(b"HTTP/"):  # Ray's GCS speaks gRPC (HTTP/2 only); Ray would retry for minutes
        raise RayAddressError(f"{address} is a web server, not a Ray cluster; give the Ray head's GCS port (6379 "
                              "unless `ray start --head --port` said otherwise)")


def _reply_to_http(connection: socket.socket) -> bytes:
    """The first bytes a server sends back to an HTTP/1.0 request (empty when it sends none)."""
    connection.settimeout(PROBE_TIMEOUT_S)
    try:
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return connection.recv(5)
    except OSError:  # closed or silent: not a web server, at least
        return b""


def connect(address: str, *, worker_logs: bool = False) -> None:
    """Start Ray on this machine (`address` LOCAL: loopback only, no dashboard) or join the cluster
    at HOST:PORT, and log which and its CPUs and GPUs. `worker_logs`: echo the workers' logs here."""
    import ray

    if address == LOCAL:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING,
                 log_to_driver=worker_logs)
    else:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=worker_logs)
        except (RuntimeError, ConnectionError, ValueError) as exc:  # e.g. not a Ray port, or refused auth
            raise RayAddressError(f"could not join the Ray cluster at {address}: {exc}") from None
    log.info("Ray %s: %s", "started here" if address == LOCAL else f"joined at {address}",
             {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")})
