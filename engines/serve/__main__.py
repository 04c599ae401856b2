"""Serve MSN over HTTP on Ray Serve, on this machine or on a Ray cluster.

    python -m msn_deploy.engines.serve msn_x4_fp32.onnx                          # local Ray, 127.0.0.1:8000
    python -m msn_deploy.engines.serve official --replicas 2 --max-batch 8 --port 9000
    python -m msn_deploy.engines.serve msn_x4_fp16.plan --address ray://head:10001 --gpus-per-replica 1

Blocks until Ctrl-C or SIGTERM; then in-flight requests finish, the application is deleted and a
Ray cluster started here is stopped. Set the bearer token with $MSN_SERVE_TOKEN (or --token).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from pydantic import ValidationError

from msn_deploy.engines import runtime
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP
from msn_deploy.engines.serve.settings import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    MAX_BATCH,
    TOKEN_ENV,
    ModelFiles,
    ServeSettings,
    hash_token,
    token_from,
)
from msn_deploy.msn import PathError, UsageError
from msn_deploy.msn.cli import (
    add_precision_option,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
    run_cli,
)

log = logging.getLogger("msn.serve")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="checkpoint or known name (official), .onnx or .plan")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--replicas", type=positive_int, default=1)
    p.add_argument("--max-batch", type=positive_int, default=MAX_BATCH,
                   help=f"requests of one size per engine call (default {MAX_BATCH})")
    p.add_argument("--batch-wait-ms", type=non_negative_float, default=10.0,
                   help="how long a batch waits to fill (default 10 ms)")
    p.add_argument("--cpus-per-replica", type=positive_float, default=1.0)
    p.add_argument("--gpus-per-replica", type=non_negative_float, default=0.0,
                   help="Ray GPU resources per replica; > 0 runs the engine on cuda")
    p.add_argument("--address", help="join this Ray cluster (e.g. 10.0.0.5:6379 or ray://head:10001) "
                                     "instead of starting one here")
    p.add_argument("--proxy-location", choices=["HeadOnly", "EveryNode"], default="HeadOnly",
                   help="HTTP proxies on the head node only, or on every node behind your load balancer")
    p.add_argument("--backend", default=runtime.AUTO, choices=runtime.BACKEND_CHOICES)
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when --gpus-per-replica > 0)")
    add_precision_option(p, "a checkpoint's precision (default fp32; fp16 is the fast path on a GPU; bf16 on the "
                            "CPU's BF16 units with OpenVINO)")
    p.add_argument("--max-queued", type=positive_int, default=16, help="requests per replica before 503")
    p.add_argument("--max-upload-mb", type=positive_float, default=DEFAULT_MAX_UPLOAD_MB)
    p.add_argument("--body-timeout-s", type=positive_float, default=DEFAULT_BODY_TIMEOUT_S,
                   help=f"seconds a client has to send its whole upload (default {DEFAULT_BODY_TIMEOUT_S:g}; then 408)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest input width x height (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--tile", type=non_negative_int, default=0, help="tile size in LR px (default 0: whole image)")
    p.add_argument("--overlap", type=non_negative_int, default=TILE_OVERLAP,
                   help=f"tile overlap in LR px (default {TILE_OVERLAP})")
    p.add_argument("--token", help=f"bearer token clients must send (prefer ${TOKEN_ENV}: it stays out of `ps`)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    token = token_from(args.token)
    return ServeSettings(
        model=args.model, backend=args.backend, device=args.device, precision=args.precision,
        replicas=args.replicas,
        cpus_per_replica=args.cpus_per_replica, gpus_per_replica=args.gpus_per_replica, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, max_queued=args.max_queued, max_upload_mb=args.max_upload_mb,
        body_timeout_s=args.body_timeout_s,
        max_pixels=args.max_pixels, tile=args.tile, overlap=args.overlap,
        token_sha256=hash_token(token) if token else None,
    )


def check_port_free(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise PathError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None


def check_local_resources(settings: ServeSettings) -> None:
    """A local cluster has this machine's CPUs and GPUs; replicas that do not fit would wait forever."""
    cpus = os.cpu_count() or 1
    needed = settings.replicas * settings.cpus_per_replica
    if needed > cpus:
        raise UsageError(f"{settings.replicas} replicas x {settings.cpus_per_replica:g} CPUs need {needed:g} CPUs; "
                         f"this machine has {cpus}: lower --replicas or --cpus-per-replica (e.g. 0.5)")
    gpus_needed = settings.replicas * settings.gpus_per_replica
    if gpus_needed > 0:
        import torch  # only where GPUs are asked for: torch takes a second to load

        gpus = torch.cuda.device_count()
        if gpus_needed > gpus:
            raise UsageError(f"{settings.replicas} replicas x {settings.gpus_per_replica:g} GPUs need {gpus_needed:g} "
                             f"GPUs; this machine has {gpus}: lower --gpus-per-replica (e.g. 0.5 shares a GPU), "
                             "or join a GPU cluster with --address")


def check_model_loads(settings: ServeSettings, model: ModelFiles) -> None:
    """Load the model here once, so that a bad file is one error now rather than failing replicas."""
    target = settings.target.resolve(model.name)
    if target.device != "cpu":
        return  # a GPU artifact is checked by the replicas that have the GPU
    engine = runtime.load(model.source, target=target)
    log.info("model checked: %s", engine)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        try:
            settings = settings_from(args)
        except ValidationError as exc:
            raise UsageError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        if args.address is None:
            check_port_free(args.host, args.port)
            check_local_resources(settings)
        model = ModelFiles.read(settings.model)
        check_model_loads(settings, model)
        if settings.token_sha256 is None and args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("listening on %s without a token: anyone who can reach this port can use it "
                        "(set $%s)", args.host, TOKEN_ENV)
        from msn_deploy.engines.serve.cluster import run_until_stopped  # imports Ray: after the cheap checks

        return run_until_stopped(settings, model, args.host, args.port, args.address, args.proxy_location)

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
