"""A description of the machine a benchmark ran on (no hostname or user names)."""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
from pathlib import Path

import torch


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model name from ``/proc/cpuinfo``, else ``platform.processor()``."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers restrict)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except ImportError:
        return None


def gpu_name() -> str | None:
    """The first CUDA device's name, or None without one."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def machine_info() -> dict:
    """CPU, cores, library versions, GPU and date of this run."""
    torch_threads = torch.get_num_threads()
    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "torch_threads": torch_threads,
        "gpu": gpu_name(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("torch", "numpy", "poselib", "pycolmap", "onnxruntime", "cv2", "timm")},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
