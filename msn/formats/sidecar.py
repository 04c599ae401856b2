"""The JSON sidecar beside a TensorRT plan: everything that invalidates the engine, and how it
was built (`EngineSidecar`). The C++ reader (engines/cpp/src/sidecar.cpp) is tested against
files written here."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from msn_deploy.msn.files import atomic_write_bytes
from msn_deploy.msn.formats.precision import ArtifactError, canonical_dtype, canonical_precision
from msn_deploy.msn.formats.tensorrt import FLAVOURS

SIDECAR_FORMAT = "msn-engine/2"
# Format 1 stored TensorRT's dtype names (float, half); format 2 stores float32 / float16. Both read.
READABLE_SIDECAR_FORMATS = ("msn-engine/1", SIDECAR_FORMAT)


def sidecar_path(engine: str | os.PathLike) -> Path:
    return Path(str(engine) + ".json")


@dataclass(frozen=True)
class TensorIO:
    name: str
    mode: str  # input | output
    dtype: str  # float32 | float16
    shape: list[int]  # -1 where dynamic


@dataclass(frozen=True)
class EngineSidecar:
    """The JSON beside an engine: everything that invalidates it, plus how it was built."""

    flavour: str  # tensorrt | tensorrt_rtx
    version: str
    compute_capabilities: list[str]  # TensorRT-RTX AOT targets; empty: the GPU it was built on
    gpu: dict[str, str] | None  # {"name", "compute_capability"} of the GPU present at build time
    precision: str
    scale: int
    profile: dict[str, list[int]]  # min / opt / max, each [N, H, W] in LR px
    opt_level: int
    workspace_mib: int
    io: list[TensorIO]
    onnx_path: str
    onnx_sha256: str
    onnx_metadata: dict[str, str] = field(default_factory=dict)
    engine_sha256: str = ""
    engine_bytes: int = 0
    build_seconds: float = 0.0
    built_at: str = ""
    host: str = ""
    command: str = ""

    def tensor(self, mode: str) -> TensorIO:
        return next(t for t in self.io if t.mode == mode)

    def rebuild_command(self) -> str:
        return f"python export/build_trt.py --onnx {self.onnx_path} --backend {self.flavour}"

    def to_json(self) -> dict[str, object]:
        return {
            "format": SIDECAR_FORMAT,
            "tensorrt": {"flavour": self.flavour, "version": self.version},
            "target": {"compute_capabilities": list(self.compute_capabilities), "gpu": self.gpu},
            "precision": self.precision,
            "scale": self.scale,
            "profile": self.profile,
            "opt_level": self.opt_level,
            "workspace_mib": self.workspace_mib,
            "io": [dataclasses.asdict(t) for t in self.io],
            "onnx": {"path": self.onnx_path, "sha256": self.onnx_sha256, "metadata": self.onnx_metadata},
            "engine_sha256": self.engine_sha256,
            "engine_bytes": self.engine_bytes,
            "build_seconds": self.build_seconds,
            "built_at": self.built_at,
            "host": self.host,
            "command": self.command,
        }

    def write(self, engine: str | os.PathLike) -> Path:
        """Write atomically beside `engine`; return the sidecar's path."""
        self.validate(engine)
        return atomic_write_bytes(sidecar_path(engine), json.dumps(self.to_json(), indent=2).encode())

    @classmethod
    def read(cls, engine: str | os.PathLike) -> EngineSidecar:
        """Read and validate the sidecar of `engine`; ArtifactError names the file and the fix."""
        path = sidecar_path(engine)
        rebuild = "rebuild the engine with export/build_trt.py"
        if not path.is_file():
            raise ArtifactError(f"{engine} has no sidecar {path.name}; {rebuild}")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"sidecar {path} is not valid JSON ({exc}); {rebuild}") from None
        if not isinstance(data, dict) or data.get("format") not in READABLE_SIDECAR_FORMATS:
            found = data.get("format") if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise ArtifactError(f"sidecar {path} has format {found!r}, expected {SIDECAR_FORMAT!r}; {rebuild}")
        try:
            sidecar = cls._from_json(data)
        except ArtifactError as exc:
            raise ArtifactError(f"sidecar {path}: {exc}; {rebuild}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"the field {exc}" if isinstance(exc, KeyError) else f"a malformed field ({exc})"
            raise ArtifactError(f"sidecar {path} is missing or has {what}; {rebuild}") from None
        sidecar.validate(path)
        return sidecar

    @classmethod
    def _from_json(cls, data: dict) -> EngineSidecar:
        trt, target, onnx_info = data["tensorrt"], data["target"], data["onnx"]
        io = [TensorIO(str(t["name"]), str(t["mode"]), canonical_dtype(t["dtype"], f"tensor {t['name']!r} dtype"),
                       [int(d) for d in t.get("shape", [])]) for t in data["io"]]
        profile = {k: [int(v) for v in data["profile"][k]] for k in ("min", "opt", "max")}
        return cls(
            flavour=str(trt["flavour"]), version=str(trt["version"]),
            compute_capabilities=[str(c) for c in target["compute_capabilities"]], gpu=target.get("gpu"),
            precision=canonical_precision(data["precision"]), scale=int(data["scale"]), profile=profile,
            opt_level=int(data.get("opt_level", 0)), workspace_mib=int(data.get("workspace_mib", 0)), io=io,
            onnx_path=str(onnx_info["path"]), onnx_sha256=str(onnx_info["sha256"]),
            onnx_metadata=dict(onnx_info.get("metadata", {})), engine_sha256=str(data.get("engine_sha256", "")),
            engine_bytes=int(data.get("engine_bytes", 0)), build_seconds=float(data.get("build_seconds", 0)),
            built_at=str(data.get("built_at", "")), host=str(data.get("host", "")),
            command=str(data.get("command", "")),
        )

    def validate(self, source: str | os.PathLike = "the sidecar") -> None:
        fix = "rebuild the engine with export/build_trt.py"
        if self.flavour not in FLAVOURS:
            raise ArtifactError(f"{source}: unknown TensorRT flavour {self.flavour!r}; {fix}")
        if self.scale < 1:
            raise ArtifactError(f"{source}: scale {self.scale} is not a positive integer; {fix}")
        modes = sorted(t.mode for t in self.io)
        if modes != ["input", "output"]:
            raise ArtifactError(f"{source}: expected one input and one output tensor, found {modes}; {fix}")
        for name, point in self.profile.items():
            if len(point) != 3 or min(point) < 1:
                raise ArtifactError(f"{source}: profile {name} {point} is not a positive [N, H, W]; {fix}")
        for axis in range(3):
            lo, opt, hi = (self.profile[k][axis] for k in ("min", "opt", "max"))
            if not lo <= opt <= hi:
                raise ArtifactError(f"{source}: profile is not min <= opt <= max ({self.profile}); {fix}")
        if self.gpu is not None and not (isinstance(self.gpu, dict) and "compute_capability" in self.gpu):
            raise ArtifactError(f"{source}: target gpu {self.gpu!r} lacks a compute_capability; {fix}")
