"""PSNR and SSIM on the luma (Y) of BT.601, with a border crop: the convention of the VSR
literature and BasicSR (``test_y_channel=True``, ``crop_border=scale``).

Images are RGB uint8 (or float in [0, 255]) arrays/tensors [H, W, 3]. Model outputs should be
rounded to uint8 first (:func:`to_uint8`) so scores match saved images.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] float in [0, 1] -> [..., H, W, 3] uint8 (rounded)."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(-3, -1)


_Y601 = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(img) -> np.ndarray:
    """RGB [.., H, W, 3] in [0, 255] -> BT.601 studio-swing Y [.., H, W] in [16, 235], float64."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return 16.0 + a.astype(np.float64) @ _Y601


def _crop(y: torch.Tensor, border: int) -> torch.Tensor:
    return y[..., border:-border, border:-border] if border > 0 else y


def psnr_y(pred, target, border: int = 0) -> float:
    a, b = _crop(rgb_to_y(pred), border), _crop(rgb_to_y(target), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(ax ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """'valid' 2-D Gaussian filter as two 1-D passes (OpenCV when present, else NumPy)."""
    r = len(g) // 2
    try:
        import cv2

        return cv2.sepFilter2D(x, cv2.CV_64F, g, g)[r:-r, r:-r]
    except ImportError:
        h, w = x.shape
        a = sum(g[k] * x[:, k:k + w - 2 * r] for k in range(len(g)))
        return sum(g[k] * a[k:k + h - 2 * r] for k in range(len(g)))


def ssim_y(pred, target, border: int = 0) -> float:
    """Wang et al. SSIM (11x11 Gaussian, sigma 1.5, 'valid' windows) on Y in [0, 255]."""
    a = np.ascontiguousarray(_crop(rgb_to_y(pred), border))
    b = np.ascontiguousarray(_crop(rgb_to_y(target), border))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian()
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    s_aa = _blur(a * a, g) - mu_a ** 2
    s_bb = _blur(b * b, g) - mu_b ** 2
    s_ab = _blur(a * b, g) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())
