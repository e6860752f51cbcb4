"""Which torch device and precision to run on (one home for the teachers, the trainer and the student)."""

from __future__ import annotations

import os

import torch

from slocal.errors import SlocalError

#: precision settings: ``auto`` (bf16 where the hardware has it natively), ``fp32``, ``bf16``.
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device | None, local_rank: int | None = None) -> torch.device:
    """The device to run on.

    ``None`` -> cuda when available, else cpu. Under torchrun (``WORLD_SIZE`` > 1)
    a bare ``cuda`` becomes ``cuda:<local rank>``; a CUDA device with an index becomes the
    current one (``torch.cuda.set_device`` refuses a bare ``cuda``, which means the current one).

    Args:
        device: ``cpu``, ``cuda``, ``cuda:1``, ... or None.
        local_rank: this process's local rank (default ``$LOCAL_RANK``, else 0).

    Raises:
        SlocalError: CUDA requested on a machine without it.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SlocalError(f"device {str(device)!r} requested but CUDA is not available (use --device cpu)")
        local = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
        if dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dev = torch.device("cuda", local)
        if dev.index is not None:
            torch.cuda.set_device(dev)
    return dev


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (bf16 is faster there, not emulated)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def use_bf16(precision: str, device: torch.device) -> bool:
    """Resolve a precision setting (``auto``, ``fp32``, ``bf16``) for ``device``."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()
