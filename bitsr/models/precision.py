"""Arithmetic precision of the networks on the CPU: bf16 where the CPU computes it natively."""
from __future__ import annotations

import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16
    convolutions are about twice as fast as fp32 ones; elsewhere oneDNN emulates them."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_cpu_bf16(precision: str, device) -> bool:
    """Whether a network on ``device`` runs its convolutions in bf16 for ``precision``:
    ``"auto"`` where the CPU computes bf16 natively, ``"bf16"`` on any CPU, ``"fp32"`` never
    (CUDA has its own autocast, see :func:`bitsr.upscale`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if torch.device(device).type != "cpu" or precision == "fp32":
        return False
    return precision == "bf16" or cpu_bf16()
