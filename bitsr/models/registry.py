"""Architecture registry: configs name an arch by ``type``; the rest are constructor kwargs."""
from __future__ import annotations

import copy

import torch.nn as nn

ARCH_REGISTRY: dict[str, type] = {}


def register_arch(cls):
    if cls.__name__ in ARCH_REGISTRY:
        raise KeyError(f"arch {cls.__name__!r} registered twice")
    ARCH_REGISTRY[cls.__name__] = cls
    return cls


def build_model(cfg: dict) -> nn.Module:
    """``{"type": "BitVSR", "scale": 4, ...}`` -> module."""
    cfg = copy.deepcopy(dict(cfg))
    name = cfg.pop("type", None)
    if name not in ARCH_REGISTRY:
        raise ValueError(f"unknown model type {name!r} (known: {', '.join(sorted(ARCH_REGISTRY))})")
    return ARCH_REGISTRY[name](**cfg)
