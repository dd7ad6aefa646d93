"""Dihedral augmentation that keeps flows and maps consistent with the pixels.

Samples are dicts of arrays with a leading time axis. Images are [T, H, W, 3] (``lr``, ``hr``);
everything else is channels-first [T, C, H, W] (``flow``/``flow_next`` with C = (x, y),
``conf``/``conf_next``, ``maps``). A horizontal flip negates the x component of every flow, a
vertical flip the y component, and a transpose swaps the two components; maps move with the
pixels.
"""
from __future__ import annotations

import numpy as np

IMAGE_KEYS = ("lr", "hr")
FLOW_KEYS = ("flow", "flow_next")


def _axes(key: str) -> tuple[int, int]:
    return (1, 2) if key in IMAGE_KEYS else (2, 3)


def hflip(sample: dict) -> dict:
    out = {}
    for k, a in sample.items():
        a = np.flip(a, _axes(k)[1])
        if k in FLOW_KEYS:
            a = a * np.array([-1, 1], a.dtype)[None, :, None, None]
        out[k] = a
    return out


def vflip(sample: dict) -> dict:
    out = {}
    for k, a in sample.items():
        a = np.flip(a, _axes(k)[0])
        if k in FLOW_KEYS:
            a = a * np.array([1, -1], a.dtype)[None, :, None, None]
        out[k] = a
    return out


def transpose(sample: dict) -> dict:
    out = {}
    for k, a in sample.items():
        y, x = _axes(k)
        a = np.swapaxes(a, y, x)
        if k in FLOW_KEYS:
            a = a[:, ::-1]
        out[k] = a
    return out


def random_dihedral(sample: dict, rng: np.random.Generator) -> dict:
    """One of the 8 flips/transposes, uniformly."""
    h, v, t = rng.random(3) < 0.5
    if h:
        sample = hflip(sample)
    if v:
        sample = vflip(sample)
    if t:
        sample = transpose(sample)
    return {k: np.ascontiguousarray(a) for k, a in sample.items()}
