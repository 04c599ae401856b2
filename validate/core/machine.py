"""The machine line recorded with every report."""

from __future__ import annotations

import os
import platform
import subprocess

from msn_deploy.msn.formats.tensorrt import FLAVOURS
from msn_deploy.msn.threads import WAIT_POLICY_VARIABLE


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, object]:
    import torch  # when a report is written, not when a command's arguments are read

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "driver": _driver() if gpu else None,
        "cuda": torch.version.cuda if gpu else None,
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "omp_wait_policy": os.environ.get(WAIT_POLICY_VARIABLE),
        "tensorrt": _version("tensorrt"),
        "tensorrt_rtx": _version("tensorrt_rtx"),
    }


def machine_line(info: dict[str, object]) -> str:
    device = f"GPU {info['gpu']} (driver {info['driver']}, CUDA {info['cuda']})" if info["gpu"] else "no GPU"
    trt = ", ".join(f"{k} {info[k]}" for k in FLAVOURS if info[k]) or "no TensorRT"
    return (f"{info['cpu']}, {info['torch_threads']} torch threads of {info['cpu_count']} cores; {device}; "
            f"torch {info['torch']} (OpenMP waiting {info.get('omp_wait_policy') or 'default'}), onnxruntime "
            f"{info['onnxruntime']}, openvino {info.get('openvino') or 'absent'}, {trt}; Python {info['python']}")
