"""A description of the machine a benchmark ran on (no hostname or user names)."""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import os
import platform
import subprocess
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


def code_version(source: Path = Path(__file__).resolve().parent) -> dict:
    """The commit of the code that runs and whether it has uncommitted changes.

    Read with git in the package's source tree; an installed wheel (no git checkout) says
    ``commit: None`` and gives the package version instead.
    """

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "package": _package_version()}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "package": _package_version()}


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("slocal")
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, cores, library versions, GPU, date and code version (commit, dirty) of this run."""
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
        "code": code_version(),
    }
