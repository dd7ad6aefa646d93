"""PSNR and SSIM on the luma (Y) of BT.601, with a border crop: the convention of the VSR
literature and BasicSR (``test_y_channel=True``, ``crop_border=scale``).

Images are RGB uint8 (or float in [0, 255]) arrays/tensors [H, W, 3]. Model outputs should be
rounded to uint8 first (:func:`to_uint8`) so scores match saved images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] float in [0, 1] -> [..., H, W, 3] uint8 (rounded)."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(-3, -1)


def rgb_to_y(img) -> torch.Tensor:
    """RGB [.., H, W, 3] in [0, 255] -> BT.601 studio-swing Y [.., H, W] in [16, 235], float64."""
    t = torch.as_tensor(np.asarray(img) if not isinstance(img, torch.Tensor) else img).to(torch.float64)
    return 16.0 + (65.481 * t[..., 0] + 128.553 * t[..., 1] + 24.966 * t[..., 2]) / 255.0


def _crop(y: torch.Tensor, border: int) -> torch.Tensor:
    return y[..., border:-border, border:-border] if border > 0 else y


def psnr_y(pred, target, border: int = 0) -> float:
    a, b = _crop(rgb_to_y(pred), border), _crop(rgb_to_y(target), border)
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_y(pred, target, border: int = 0) -> float:
    """Wang et al. SSIM (11x11 Gaussian, sigma 1.5, 'valid' windows) on Y in [0, 255]."""
    a = _crop(rgb_to_y(pred), border)[None, None]
    b = _crop(rgb_to_y(target), border)[None, None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = _gaussian()
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    s_aa = F.conv2d(a * a, w) - mu_a ** 2
    s_bb = F.conv2d(b * b, w) - mu_b ** 2
    s_ab = F.conv2d(a * b, w) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())
