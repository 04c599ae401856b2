"""What one MSN service is: the model, how replicas are placed, and the limits that protect it.

The same settings come from the command line (`python -m msn_deploy.engines.serve`) and from the `args:` of a
Ray Serve config file (`serve run` / `serve deploy`), so both are validated by one pydantic model.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

from msn_deploy.engines.runtime.model_files import ModelFiles  # noqa: F401 - the service's model, re-exported
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.engines.runtime.tiling import TILE_OVERLAP, check_tiling
from msn_deploy.msn import MIN_INPUT_SIZE, UsageError

TOKEN_ENV = "MSN_SERVE_TOKEN"
# 1920x1080 fits; its x4 output is ~100 MB as 8-bit RGB and ~400 MB as float32 while it is upscaled.
DEFAULT_MAX_PIXELS = 2048 * 1024
MAX_BATCH = 4  # requests of one LR size that run as one engine call, by default
DEFAULT_MAX_UPLOAD_MB = 32.0
# 32 MiB over a 10 Mbit/s link takes 27 s: a client slower than that is holding a connection open.
DEFAULT_BODY_TIMEOUT_S = 30.0
SHAPES_CACHED = 4  # LR sizes an OpenVINO replica keeps compiled, at every batch size


class ServeSettings(BaseModel):
    """One deployment of MSN. Field names are the config file's `args:` keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="checkpoint or known name, .onnx or .plan: anything engines.load takes")
    backend: str = "auto"
    device: str = Field("", description="cpu or cuda (or another of the backend's devices); default cuda when "
                                       "gpus_per_replica > 0, else cpu")
    precision: str | None = Field(None, description="a checkpoint's precision (fp32 or fp16); artifacts have their own")
    replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(1.0, gt=0)
    gpus_per_replica: float = Field(0.0, ge=0)
    max_batch: int = Field(MAX_BATCH, ge=1, description="requests of one LR size run as one engine call")
    batch_wait_ms: float = Field(10.0, ge=0, le=10_000)
    max_queued: int = Field(16, ge=1, description="requests one replica holds before answering 503")
    max_upload_mb: float = Field(DEFAULT_MAX_UPLOAD_MB, gt=0)
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, gt=0, le=3600,
                                  description="time a client has to send its whole upload (408 after)")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=MIN_INPUT_SIZE**2, description="largest LR width x height")
    tile: int = Field(0, ge=0, description="tile size in LR px (0: whole image)")
    overlap: int = Field(TILE_OVERLAP, ge=0)
    token_sha256: str | None = Field(None, description="sha256 of the bearer token; never the token itself")

    @model_validator(mode="after")
    def _known_target(self) -> ServeSettings:
        """Backend, device and precision checked by name, as every command checks them."""
        try:
            self.target.check()
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _usable_tiles(self) -> ServeSettings:
        """A tile no plan can use would blame every client later; refuse it before Ray starts."""
        if self.tile:
            check_tiling(self.tile, self.overlap)
        return self

    @property
    def engine_device(self) -> str:
        return self.device or ("cuda" if self.gpus_per_replica > 0 else "cpu")

    @property
    def target(self) -> Target:
        """What the replicas run on, as asked (engines.runtime.targets.Target.resolve makes it concrete)."""
        return Target(self.backend, self.engine_device, self.precision)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def engine_options(self, target: Target) -> dict[str, object]:
        """`load` options for a replica on `target` (resolved): threads matched to the CPUs Ray reserves
        for a replica, so replicas do not contend; for OpenVINO, room for each power-of-two batch size
        (see app.group_by_size) of a few LR sizes."""
        threads = max(1, int(self.cpus_per_replica))
        cache = {"cache_size": SHAPES_CACHED * self.max_batch.bit_length()} if target.backend == "openvino" else {}
        return target.thread_options(threads) | cache

    def token_matches(self, presented: str) -> bool:
        if self.token_sha256 is None:
            return True
        return hmac.compare_digest(hash_token(presented), self.token_sha256)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_from(option: str | None) -> str | None:
    """`--token`, else $MSN_SERVE_TOKEN (which keeps it out of `ps`); empty means no token."""
    token = option if option is not None else os.environ.get(TOKEN_ENV)
    return token or None
