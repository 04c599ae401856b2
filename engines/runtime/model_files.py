"""A model artifact as bytes, to ship to processes on other machines (Serve replicas, Ray job
workers) that need not share a file system with the machine that read it."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.loading import load
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.msn import MSNError, UsageError
from msn_deploy.msn.formats.kinds import companion_path, locate_artifact


@dataclass(frozen=True)
class ModelFiles:
    """The artifact's bytes, and those of the file it needs beside it (msn.formats.kinds.companion_path)."""

    name: str
    data: bytes
    companion: bytes | None = None
    source: str = ""  # where it was read, on the machine that read it

    @classmethod
    def read(cls, model: str) -> ModelFiles:
        path = locate_artifact(model)
        data = path.read_bytes()
        if not data:
            raise UsageError(f"model {path} is empty")
        side = companion_path(path)
        return cls(path.name, data, side.read_bytes() if side is not None and side.is_file() else None, str(path))

    @property
    def sha256(self) -> str:
        """Of the artifact and its companion (an ncnn graph's weights are all in its .bin)."""
        digest = hashlib.sha256(self.data)
        if self.companion is not None:
            digest.update(self.companion)
        return digest.hexdigest()

    def write_to(self, folder: Path) -> Path:
        path = folder / self.name
        path.write_bytes(self.data)
        if self.companion is not None:
            companion_path(path).write_bytes(self.companion)
        return path

    def load(self, target: Target, **options) -> Engine:
        """`engines.load` on a copy that is removed at once: every backend reads the artifact into
        memory when it loads, so a process that is killed later leaves nothing behind."""
        with tempfile.TemporaryDirectory(prefix="msn-model-") as folder:
            copy = self.write_to(Path(folder))
            try:
                return load(copy, target=target, **options)
            except MSNError as exc:  # name the user's file, not the copy that no one will find
                raise _renamed(exc, str(copy), self.source or self.name) from None


def _renamed(exc: MSNError, copy: str, source: str) -> MSNError:
    text = str(exc).replace(copy, source)
    try:
        renamed = type(exc)(text)
    except TypeError:  # an error class that takes other arguments: keep it as it is
        return exc
    return renamed
