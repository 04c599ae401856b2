"""Start or join Ray, deploy the application, and take it all down again on Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import time

import ray
from ray import serve
from ray.exceptions import RayActorError, RayError
from ray.serve.exceptions import RayServeException

from msn_deploy.engines.jobs.ray_cluster import LOCAL, connect
from msn_deploy.engines.serve.app import APP_NAME, build_app
from msn_deploy.engines.serve.settings import ModelFiles, ServeSettings
from msn_deploy.msn.cli import exit_on_sigterm

log = logging.getLogger("msn.serve")

# Serve's controller replaces an HTTP proxy that misses three readiness checks of 5 s each; on a
# busy machine a proxy can take longer than that to start (seen with both cores loaded). A cluster
# started here gives it 30 s (read by the controller, which inherits this environment), and a
# deployment that loses its proxy that way is retried.
PROXY_READY_TIMEOUT_S = "30"
DEPLOY_ATTEMPTS = 3


def start_ray(address: str | None) -> None:
    if address is None:
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", PROXY_READY_TIMEOUT_S)
    connect(address or LOCAL, worker_logs=True)  # the replicas' logs are the service's logs
    # Ray's core worker installs a crash handler for SIGTERM that prints stack dumps; a SIGTERM
    # here is a request to stop, so take it back. SIGINT too: a shell may start us with it ignored.
    exit_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)


def deploy(settings: ServeSettings, model: ModelFiles, host: str, port: int, proxy_location: str) -> None:
    app = build_app(settings, model)
    for attempt in range(1, DEPLOY_ATTEMPTS + 1):
        try:
            serve.start(http_options={"host": host, "port": port}, proxy_location=proxy_location)
            serve.run(app, name=APP_NAME, route_prefix="/")
            return
        except RayActorError as exc:
            if "ProxyActor" not in str(exc) or attempt == DEPLOY_ATTEMPTS:
                raise
            log.warning("Serve replaced its HTTP proxy during start-up (attempt %d of %d); deploying again",
                        attempt, DEPLOY_ATTEMPTS)


def stop(started_here: bool) -> None:
    """Delete the application (replicas finish what they hold first); stop Ray if it is ours."""

    def _already_stopping(_signum: int, _frame: object) -> None:
        log.warning("already stopping; waiting for requests in flight")

    previous = {signum: signal.signal(signum, _already_stopping) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not ray.is_initialized():
            return
        try:
            serve.delete(APP_NAME)
            if started_here:
                serve.shutdown()
        except RayServeException as exc:  # stopped before Serve itself was up
            log.debug("nothing to delete: %s", exc)
        finally:
            ray.shutdown()
    finally:  # the caller's handlers again: a program that goes on after serving keeps its Ctrl-C
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def run_until_stopped(settings: ServeSettings, model: ModelFiles, host: str, port: int, address: str | None,
                      proxy_location: str) -> int:
    """Deploy, then serve until SIGINT/SIGTERM (exit 0, also when it comes during start-up); 1 when
    the deployment fails. Either way the application is deleted and a Ray started here stopped."""
    started_here = address is None
    code = 0
    try:
        start_ray(address)
        deploy(settings, model, host, port, proxy_location)
        log.info("serving %s with %d replica(s) on http://%s:%d/v1/upscale; Ctrl-C to stop",
                 model.name, settings.replicas, host, port)
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        log.info("stopping: requests in flight finish first")
    except (RuntimeError, ConnectionError, ValueError, RayError, RayServeException) as exc:
        log.error("could not deploy: %s", exc)
        code = 1
    finally:
        stop(started_here)
    log.info("stopped")
    return code
