"""Reading MSN checkpoints: known names, download cache, layouts, and clear errors."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msn_deploy.msn.config import CheckpointError, MSNConfig
from msn_deploy.msn.errors import MissingFileError

if TYPE_CHECKING:  # resolving and hashing a checkpoint (the graph cache's key) needs no torch
    import torch

log = logging.getLogger(__name__)

CACHE_ENV = "MSN_CACHE_DIR"
TIMEOUT_ENV = "MSN_DOWNLOAD_TIMEOUT"  # seconds without data before a download gives up (default 15)


@dataclass(frozen=True)
class KnownCheckpoint:
    filename: str
    url: str
    sha256: str
    description: str


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "official": KnownCheckpoint(
        filename="team28_MSN.pth",
        url="https://github.com/Amazingren/NTIRE2024_ESR/raw/main/model_zoo/team28_MSN.pth",
        sha256="5cbe6074c9c041f9894fa697f179c4deea4e91f0d0e06106c20ba24bcaeb6609",
        description="NTIRE 2024 Efficient SR, team DASE-IDEALab, x4, 87,612 params",
    ),
}


class ChecksumError(CheckpointError):
    """A downloaded or cached checkpoint whose sha256 is not the registered one."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk: its weights, the shape they imply, and where they came from."""

    state_dict: dict[str, torch.Tensor]
    config: MSNConfig
    path: Path
    sha256: str


def cache_root() -> Path:
    """$MSN_CACHE_DIR, else msn-deploy in the user's cache folder: downloaded checkpoints, exported graphs."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "msn-deploy"
    return Path(os.environ.get(CACHE_ENV, default))


def cache_dir() -> Path:
    return cache_root() / "checkpoints"


def sha256_of(source: str | os.PathLike | bytes) -> str:
    """Hex sha256 of a file (read in chunks) or of bytes already in memory."""
    digest = hashlib.sha256()
    if isinstance(source, bytes | bytearray | memoryview):
        digest.update(source)
        return digest.hexdigest()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(known: KnownCheckpoint, target: Path) -> None:
    import urllib.request  # here: 20 ms of imports that a run from a file or a cached graph never needs

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", known.url, target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    timeout = float(os.environ.get(TIMEOUT_ENV, "15"))
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(known.url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
            except (OSError, ValueError) as exc:  # URLError, timeouts and resets are all OSErrors
                reason = getattr(exc, "reason", None) or exc or "timed out"
                raise CheckpointError(
                    f"cannot download {known.url} ({reason}); put {known.filename} at {target} by hand "
                    "(it is checked by sha256), or pass --ckpt PATH to a checkpoint file"
                ) from None
        actual = sha256_of(Path(tmp))
        if actual != known.sha256:
            raise ChecksumError(f"download of {known.url} has sha256 {actual}, expected {known.sha256}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_checkpoint(ckpt: str | os.PathLike) -> Path:
    """A path to an existing file, or a known name (see KNOWN_CHECKPOINTS) fetched into the cache."""
    path = Path(ckpt)
    if path.is_file():
        return path
    name = str(ckpt)
    if name not in KNOWN_CHECKPOINTS:
        known = ", ".join(sorted(KNOWN_CHECKPOINTS))
        raise MissingFileError(f"checkpoint {name!r} is neither a file nor a known name ({known})")
    known_ckpt = KNOWN_CHECKPOINTS[name]
    target = cache_dir() / known_ckpt.filename
    if not target.is_file():
        _download(known_ckpt, target)
    actual = sha256_of(target)
    if actual != known_ckpt.sha256:
        raise ChecksumError(
            f"cached {target} has sha256 {actual}, expected {known_ckpt.sha256} for {name!r}; "
            "delete it so that it is downloaded again"
        )
    return target


def canonical_state_dict(obj: object, *, ema: bool = True) -> dict[str, torch.Tensor]:
    """Unwrap BasicSR (`params_ema`/`params`), `state_dict`/`model` wrappers and `module.` prefixes."""
    import torch

    preferred = ("params_ema", "params") if ema else ("params", "params_ema")
    while isinstance(obj, dict):
        inner = next((obj[k] for k in (*preferred, "state_dict", "model") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, dict) and not obj:
        raise CheckpointError("the checkpoint holds no tensors (an empty state dict)")
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state dict (name -> tensor), found {type(obj).__name__}")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"not a state dict: entries {not_tensors[:5]} are not tensors")
    # Integer or boolean weights would be cast into the float model without a word (and be wrong).
    not_float = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in obj.items() if not v.is_floating_point()]
    if not_float:
        more = f" (+{len(not_float) - 5} more)" if len(not_float) > 5 else ""
        raise CheckpointError(f"MSN's weights are floating point; these tensors are not: {', '.join(not_float[:5])}"
                              f"{more} (a quantised or foreign checkpoint?)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


SAFETENSORS_SUFFIX = ".safetensors"


def _load_pickled(path: Path) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        # torch's own message may advise weights_only=False: unsafe for a file of unknown origin.
        detail = str(exc).splitlines()[0] if exc.args and "weights_only" not in str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, corrupt, or not a weights file): {detail}"
        ) from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt): {detail}") from None


def read_checkpoint(ckpt: str | os.PathLike, *, ema: bool = True) -> Checkpoint:
    """Read a checkpoint file (.pth/.pt pickles read with weights_only, or .safetensors) or a known
    name into a canonical state dict and its MSNConfig."""
    path = resolve_checkpoint(ckpt)
    raw = _load_safetensors(path) if path.suffix.lower() == SAFETENSORS_SUFFIX else _load_pickled(path)
    try:
        state_dict = canonical_state_dict(raw, ema=ema)
        config = MSNConfig.from_state_dict(state_dict)
    except CheckpointError as exc:  # folder jobs and segments read many: say which file
        raise CheckpointError(f"{path}: {exc}") from None
    return Checkpoint(state_dict, config, path, sha256_of(path))


def state_dict_mismatches(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences in keys and shapes between two state dicts (empty if none)."""
    problems = []
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:8])}{more}")
    return problems
