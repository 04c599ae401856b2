"""The Ray Serve application: a light HTTP ingress in front of model replicas that hold the engine.

    POST /v1/upscale   encoded image in, PNG out (bit depth and channels kept, like the image CLI)
    GET  /v1/health    200 once a model replica has loaded its engine and answers (HEAD too)
    GET  /v1/info      model, backend, precision, scale, profile, replicas
    GET  /v1/model.onnx  the ONNX graph of the served model, for the page's "on this device" mode
    GET  /             a small self-contained web page (page.html): the photo is upscaled on the
                       server (POST /v1/upscale) or, if the user chooses, in the browser with
                       onnxruntime-web on the same graph (files under /web/, see engines.web.device)

The ingress (`MSNIngress`) checks the token, the upload's size and its image header, then hands the
bytes to a model replica (`MSNModel`) through a DeploymentHandle; the replica decodes, batches,
upscales and encodes. Keeping HTTP apart from the engine lets the ingress turn a model replica that
died mid-request into a 503 a client can retry (Serve's proxy would answer 500), and its handle
spreads requests over all nodes' replicas (the proxy prefers its own node's).

Concurrent uploads of one LR size run as one engine call (`@serve.batch`); the batch handler
groups by size because Serve batches whatever arrives. Queues are bounded everywhere: a model
replica holds at most `max_queued` requests, the handle's queue as many again per replica, and the
ingress refuses (503) what would exceed both.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at runtime.
import asyncio
import base64
import hashlib
import logging
from pathlib import Path

import numpy as np
import ray
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from msn_deploy.engines.media.images import LoadedImage
from msn_deploy.engines.media.upscaled import encode_upscaled, finish_upscaled
from msn_deploy.engines.runtime.base import EngineError
from msn_deploy.engines.serve.payload import RequestError, check_header, decode, read_body
from msn_deploy.engines.serve.settings import TOKEN_ENV, ModelFiles, ServeSettings, hash_token, token_from
from msn_deploy.engines.web.device import (
    MODULE_NAME,
    BrowserFiles,
    BrowserGraph,
    browser_graph,
    browser_runtime,
    media_type,
)
from msn_deploy.msn import InputError

log = logging.getLogger("msn.serve")

APP_NAME = "msn"
MODEL_DEPLOYMENT = "MSNModel"
# How long a stopping replica waits for the requests it holds (Serve's default is 20 s).
DRAIN_TIMEOUT_S = 60.0

api = FastAPI(title="msn-deploy", docs_url=None, redoc_url=None, openapi_url=None)
# The page is one file with its script and style inline: no CDN, no build step, nothing to fetch.
PAGE = (Path(__file__).parent / "page.html").read_text()
# Only the page's own script and this service's modules may run (a file name or a reply shown in
# the page can never add one; the wasm runtime may compile), and it talks only to this service.
_PAGE_SCRIPT = PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
PAGE_POLICY = ("default-src 'none'; script-src 'sha256-"
               + base64.b64encode(hashlib.sha256(_PAGE_SCRIPT.encode()).digest()).decode()
               + "' 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'unsafe-inline'; "
               "img-src blob: data:; connect-src 'self' blob:; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
# Cross-origin isolation, so that the wasm runtime may use threads in the page.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}
GRAPH_URL = "/v1/model.onnx"
BROWSER_HEADERS = {"Cache-Control": "no-cache", **ISOLATION}  # on what the page's "on this device" mode fetches


@api.exception_handler(RequestError)
async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
    headers = {503: {"Retry-After": "1"}, 401: {"WWW-Authenticate": "Bearer"}}.get(exc.status)
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


@api.exception_handler(StarletteHTTPException)
async def _routing_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Unknown paths and wrong methods answer in the same JSON shape as every other error."""
    return JSONResponse({"error": f"{exc.detail}: the API is POST /v1/upscale, GET /v1/health, GET /v1/info, "
                                  f"GET {GRAPH_URL} (and the page at GET /)"},
                        status_code=exc.status_code, headers=exc.headers)


def group_by_size(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of same-shape CHW images, cut into engine calls of 1, 2, 4, 8... images (7 = 4+2+1).

    Sizes are never mixed. Power-of-two batches bound the input shapes a replica ever sees, which
    matters to OpenVINO: it compiles (about 1 s) and caches one model per shape, batch included.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape, []).append(index)
    calls = []
    for indices in groups.values():
        while indices:
            size = 1 << (len(indices).bit_length() - 1)
            calls.append(indices[:size])
            indices = indices[size:]
    return calls


# Helpers the deployments call are defined above them: Serve ships the classes by value.
def running_replicas(app_name: str) -> int:
    """Model replicas in the RUNNING state, as Serve's controller reports them."""
    status = serve.status().applications[app_name].deployments[MODEL_DEPLOYMENT]
    return int(status.replica_states.get("RUNNING", 0))


def ingress_limit(settings: ServeSettings) -> int:
    """Requests the ingress admits: what the replicas hold plus what the handle may queue."""
    return 2 * settings.max_queued * settings.replicas


# A model replica that died (or was drained) under a request: the request can be sent again.
REPLICA_LOST = (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError)
READY_TIMEOUT_S = 5.0
UPLOADS_ARRIVING = 256  # connections an ingress replica lets send their bodies at once


@serve.deployment(name=MODEL_DEPLOYMENT)
class MSNModel:
    """One loaded engine; requests arrive as encoded bytes whose header the ingress has checked."""

    def __init__(self, settings: ServeSettings, model: ModelFiles) -> None:
        self.settings = settings
        target = settings.target.resolve(model.name)
        self.engine = model.load(target, **settings.engine_options(target))
        self.model_name = model.name
        self.upscale_batch.set_max_batch_size(settings.max_batch)
        self.upscale_batch.set_batch_wait_timeout_s(settings.batch_wait_ms / 1000)
        context = serve.get_replica_context()
        self.identity = {"X-MSN-Replica": context.replica_tag, "X-MSN-Node": ray.get_runtime_context().get_node_id()}
        log.info("replica %s loaded %s: %s", context.replica_tag, model.name, self.engine)

    async def ready(self) -> dict[str, str]:
        return self.identity

    async def describe(self) -> dict[str, object]:
        return {"model": self.model_name, **self.engine.describe(), "device": self.settings.engine_device}

    async def upscale(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        image = await asyncio.to_thread(decode, body, self.settings.max_pixels)
        sr, batch_size = await self.upscale_batch(image.rgb.transpose(2, 0, 1))
        png = await asyncio.to_thread(self._encode, image, sr)
        return png, {**self.identity, "X-MSN-Batch": str(batch_size)}

    def _encode(self, image: LoadedImage, sr: np.ndarray) -> bytes:
        return encode_upscaled(".png", finish_upscaled(image, sr.transpose(1, 2, 0), self.engine.scale))

    @serve.batch  # sizes are set per replica from the settings in __init__
    async def upscale_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        """One engine call per LR size in this batch; each result comes back with its call's size."""
        return await asyncio.to_thread(self._run_groups, images)

    def _run_groups(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        results: list[tuple[np.ndarray, int]] = [None] * len(images)  # type: ignore[list-item]
        for indices in group_by_size(images):
            try:
                out = self.engine(np.stack([images[i] for i in indices]), tile=self.settings.tile or None,
                                  overlap=self.settings.overlap)
            except InputError as exc:
                raise RequestError(400, str(exc)) from None
            except EngineError as exc:
                log.error("engine failed: %s", exc)
                raise
            for position, index in enumerate(indices):
                results[index] = (out[position], len(indices))
        return results


@serve.deployment(name="MSNIngress")
@serve.ingress(api)
class MSNIngress:
    def __init__(self, settings: ServeSettings, model: DeploymentHandle, graph: BrowserGraph) -> None:
        self.settings = settings
        self.model = model
        self.browser = BrowserFiles(graph)
        self.active = 0  # uploads this ingress holds now, from their last byte in to the last byte out

    def _authorize(self, request: Request) -> None:
        if self.settings.token_sha256 is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.settings.token_matches(token.strip()):
            raise RequestError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    async def _call_model(self, method: str, *args: object, timeout_s: float | None = None) -> object:
        try:
            return await asyncio.wait_for(getattr(self.model, method).remote(*args), timeout_s)
        except BackPressureError:
            raise RequestError(503, "every model replica is busy; retry shortly") from None
        except REPLICA_LOST:
            raise RequestError(503, "the model replica stopped while handling this request; retry it") from None
        except RayTaskError as exc:  # the replica raised: a client error travels back as it was
            if isinstance(exc.cause, RequestError):
                raise exc.cause from None
            raise
        except TimeoutError:
            raise RequestError(503, "no model replica is ready yet; retry shortly") from None

    @api.get("/")
    async def page(self) -> HTMLResponse:
        """The web page; it needs no token to load (the uploads it sends carry one)."""
        return HTMLResponse(PAGE, headers={**BROWSER_HEADERS, "Content-Security-Policy": PAGE_POLICY})

    @api.get("/web/config.json")
    async def browser_config(self) -> JSONResponse:
        """Whether the page may offer "on this device", and its settings for it."""
        return JSONResponse(self.browser.config(GRAPH_URL), headers=BROWSER_HEADERS)

    @api.get("/web/" + MODULE_NAME)
    async def browser_module(self) -> Response:
        return Response(self.browser.module, media_type=media_type(MODULE_NAME), headers=BROWSER_HEADERS)

    @api.get("/web/ort/{name}")
    async def browser_runtime(self, name: str) -> FileResponse:
        path = self.browser.runtime_file(name)
        if path is None:
            state = "on" if self.browser.available else f"off: {self.browser.reason}"
            raise RequestError(404, f"no runtime file {name!r} here (the page's 'on this device' mode is {state})")
        return FileResponse(path, media_type=media_type(name), headers=BROWSER_HEADERS)

    @api.get(GRAPH_URL)
    async def graph(self, request: Request) -> Response:
        """The served model's ONNX graph (it is the service's model: the token guards it)."""
        self._authorize(request)
        if not self.browser.available:
            raise RequestError(404, f"this service offers no graph to browsers: {self.browser.reason}")
        return Response(self.browser.graph.data, media_type="application/octet-stream", headers=BROWSER_HEADERS)

    @api.api_route("/v1/health", methods=["GET", "HEAD"])  # load balancers probe with HEAD
    async def health(self) -> JSONResponse:
        identity = await self._call_model("ready", timeout_s=READY_TIMEOUT_S)
        return JSONResponse({"status": "ok"}, headers=identity)

    @api.get("/v1/info")
    async def info(self, request: Request) -> JSONResponse:
        self._authorize(request)
        description = await self._call_model("describe", timeout_s=READY_TIMEOUT_S)
        return JSONResponse({
            **description,
            "replicas": await asyncio.to_thread(running_replicas, serve.get_replica_context().app_name),
            "max_batch": self.settings.max_batch,
            "batch_wait_ms": self.settings.batch_wait_ms,
            "max_pixels": self.settings.max_pixels,
            "max_upload_mb": self.settings.max_upload_mb,
            "body_timeout_s": self.settings.body_timeout_s,
        })

    @api.post("/v1/upscale")
    async def upscale(self, request: Request) -> Response:
        self._authorize(request)
        # Only uploads that have arrived count against the queues: a client that trickles its body
        # holds nothing of the model's, and is cut off after body_timeout_s.
        try:
            body = await asyncio.wait_for(read_body(request.headers.get("content-length"), request.stream(),
                                                    self.settings.max_upload_bytes), self.settings.body_timeout_s)
        except TimeoutError:
            raise RequestError(408, f"the upload did not arrive within {self.settings.body_timeout_s:g} s; "
                                    "send the whole image at once") from None
        if self.active >= ingress_limit(self.settings):
            raise RequestError(503, f"the service already holds {self.active} requests; retry shortly")
        self.active += 1
        try:
            await asyncio.to_thread(check_header, body, self.settings.max_pixels)
            png, headers = await self._call_model("upscale", body)
            return Response(png, media_type="image/png", headers=headers)
        finally:
            self.active -= 1


def replica_resources(settings: ServeSettings) -> dict[str, float]:
    """Ray resources each model replica reserves: Ray places replicas only where these are free."""
    return {"num_cpus": settings.cpus_per_replica, "num_gpus": settings.gpus_per_replica}


def build_app(settings: ServeSettings, model: ModelFiles | None = None) -> Application:
    """The application, with placement and backpressure derived from the settings."""
    model = model or ModelFiles.read(settings.model)
    model_deployment = MSNModel.options(
        num_replicas=settings.replicas,
        ray_actor_options=replica_resources(settings),
        max_ongoing_requests=settings.max_queued,
        max_queued_requests=settings.max_queued * settings.replicas,
        graceful_shutdown_timeout_s=DRAIN_TIMEOUT_S,
    )
    ingress = MSNIngress.options(
        ray_actor_options={"num_cpus": 0},  # waits on the model replicas; takes no CPU from them
        # Room for uploads still arriving on top of the admitted ones (which ingress_limit bounds), so
        # that slow senders wait in their own body timeout instead of filling Serve's queue.
        max_ongoing_requests=ingress_limit(settings) + UPLOADS_ARRIVING,
        graceful_shutdown_timeout_s=DRAIN_TIMEOUT_S,
    )
    graph = browser_graph(model, settings.precision)
    _, off = browser_runtime(graph)  # checked here for the operator's log; the ingress checks its own node
    if off:
        log.warning("the page's 'on this device' mode is off: %s", off)
    return ingress.bind(settings, model_deployment.bind(settings, model), graph)


def app_from_config(args: dict) -> Application:
    """Entry point for Ray Serve config files (`import_path: engines.serve.app:app_from_config`)."""
    token = token_from(None)
    settings = ServeSettings(**args, token_sha256=hash_token(token) if token else None)
    if token is None:
        log.warning("no $%s set: the service answers anyone who can reach it", TOKEN_ENV)
    return build_app(settings)
