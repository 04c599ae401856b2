"""The job manifest: one JSON line per finished image, in the output folder, so that a rerun of
the same command skips what is done and redoes what failed or was interrupted.

Each record is appended with one write() to a file opened O_APPEND and flushed to disk before the
next image is recorded: a crash leaves at most a torn last line, which reading ignores. The
latest record of an output wins.

    {"output": "a/b_x4.png", "input": "/photos/a/b.png", "size": 81234, "mtime_ns": ...,
     "settings": "3f2c...", "status": "done", "seconds": 0.41, "time": "2026-12-01T15:02:11.042+00:00"}

A "settings" record (same file) says what each settings digest stands for, so that a refusal can
name what differs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from msn_deploy.msn import UsageError

log = logging.getLogger(__name__)

MANIFEST_NAME = ".msn-upscale.jsonl"
DONE, FAILED = "done", "failed"


def settings_digest(fields: object) -> str:
    """The one digest of the settings an output was made with (folder records, video segment plans):
    16 hex digits of the SHA-256 of their canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobSettings:
    """Everything that shapes an output's pixels and format."""

    model_sha256: str
    backend: str
    precision: str
    scale: int
    tile: int | None
    overlap: int
    suffix: str | None  # --format, or None for the input's own
    target: str | None  # WIDTHxHEIGHT[!] (exact), or None

    @property
    def digest(self) -> str:
        return settings_digest(asdict(self))

    def describe(self) -> str:
        return (f"model sha256 {self.model_sha256[:12]}, {self.backend} {self.precision}, tile {self.tile or 'off'}"
                f"/{self.overlap}, format {self.suffix or 'as input'}, target {self.target or 'none'}")


@dataclass(frozen=True)
class InputState:
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> InputState:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns)


class ManifestError(UsageError):
    """Outputs made with other settings, or a manifest that is not ours."""


class Manifest:
    """Read on open; records appended as images finish (from any thread)."""

    def __init__(self, path: Path, *, claim: bool = False) -> None:
        """Read the manifest at `path`. With `claim`, first take the output folder for this job:
        an OS lock on the manifest, held until close() or the process ends, so that two jobs
        never write into one folder at once (the second is refused, naming the folder)."""
        self.path = path
        self.latest: dict[str, dict] = {}
        self.settings: dict[str, dict] = {}
        self.torn = ""  # the last line, when a crash cut it short
        self._lock = threading.Lock()
        self._fd: int | None = None
        if claim:
            self._claim()
        if path.exists():
            self._read()

    def _claim(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise ManifestError(f"another job is writing into {self.path.parent} (its manifest {self.path.name} is "
                                "locked); wait for that job to end, or choose another -o") from None

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{self.path} cannot be read as a job manifest ({exc}); move it away to start "
                                "afresh") from None
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                kind = record["kind"]
            except (ValueError, KeyError, TypeError):
                if number == len(lines) and not text.endswith("\n"):  # a crash cut the last write short
                    self.torn = line
                else:
                    log.warning("%s line %d is not a manifest record; ignored", self.path, number)
                continue
            if kind == "settings":
                self.settings[record["digest"]] = record["settings"]
            elif kind == "image" and isinstance(record.get("output"), str):
                self.latest[record["output"]] = record

    def open(self, settings: JobSettings) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.torn:  # drop the torn line, which ends the file: the next record would be glued to it
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - len(self.torn.encode()))
            self.torn = ""
        if settings.digest not in self.settings:
            self._append({"kind": "settings", "digest": settings.digest, "settings": asdict(settings)})
            self.settings[settings.digest] = asdict(settings)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def record(self, key: str, src: Path, state: InputState, settings: JobSettings, status: str,
               seconds: float, error: str | None = None, node: str | None = None,
               output_size: int | None = None) -> None:
        record = {"kind": "image", "output": key, "input": str(src), "size": state.size, "mtime_ns": state.mtime_ns,
                  "settings": settings.digest, "status": status, "seconds": round(seconds, 3),
                  "time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        if output_size is not None:  # what the output must still be for the record to stand
            record["output_size"] = output_size
        if error is not None:
            record["error"] = error
        if node is not None:  # the Ray node that made it
            record["node"] = node
        self._append(record)
        self.latest[key] = record

    def finished_times(self) -> list[float]:
        """When each output of the manifest was last written (POSIX seconds, unsorted)."""
        return [datetime.fromisoformat(r["time"]).timestamp() for r in self.latest.values() if r["status"] == DONE]

    def is_done(self, key: str, state: InputState, settings: JobSettings, output: Path) -> bool:
        """Made from this input as it is now, with these settings, and the output is still the
        file that was written (its size; a damaged or replaced output is redone)."""
        record = self.latest.get(key)
        if record is None or record["status"] != DONE or record["settings"] != settings.digest:
            return False
        if record.get("size") != state.size or record.get("mtime_ns") != state.mtime_ns:
            return False
        try:
            return record.get("output_size") in (None, output.stat().st_size)  # None: a record of an older version
        except OSError:
            return False

    def cut_off(self, key: str) -> bool:
        """Whether the torn last line was the record of `key`'s output (as far as it goes): that
        output was written by a run that stopped before it could record it."""
        _, found, rest = self.torn.partition('"output": "')
        written = json.dumps(key)[1:-1]  # as the record spells it (escaped)
        return bool(found) and (rest.startswith(written + '"') or ('"' not in rest and written.startswith(rest)))

    def made_otherwise(self, key: str, settings: JobSettings) -> str | None:
        """The settings digest an existing output was made with, when they are not `settings`."""
        record = self.latest.get(key)
        if record is not None and record["status"] == DONE and record["settings"] != settings.digest:
            return record["settings"]
        return None

    def difference(self, digest: str, settings: JobSettings) -> str:
        """What differs between the settings of `digest` (as recorded) and `settings`, field by field."""
        known = self.settings.get(digest)
        try:
            before = JobSettings(**known) if known is not None else None
        except TypeError:  # written by a version with other fields
            before = None
        if before is None:
            return f"settings {digest}, not recorded in full; now {settings.describe()}"
        changed = [f"{name.replace('_', ' ')} {_shown(getattr(before, name))}, now {_shown(getattr(settings, name))}"
                   for name in JobSettings.__dataclass_fields__ if getattr(before, name) != getattr(settings, name)]
        return "; ".join(changed) or f"settings {digest}"


def _shown(value: object) -> str:
    if value is None:
        return "none"
    return value[:12] if isinstance(value, str) and len(value) == 64 else str(value)  # a sha256: its first digits
