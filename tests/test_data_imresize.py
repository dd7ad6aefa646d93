"""MATLAB-compatible bicubic imresize: kernel properties, an independent scalar reference of
MATLAB's algorithm, and agreement with Pillow's separable bicubic away from the borders."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bitsr.data.imresize import contributions, cubic, imresize


def matlab_reference_1d(x: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Straight transcription of MATLAB imresize's contributions() + symmetric padding, one
    output sample at a time (1-based indices as in MATLAB)."""
    n = len(x)
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros(out_len)
    for j in range(1, out_len + 1):
        u = j / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        acc, wsum = 0.0, 0.0
        for p in range(int(math.ceil(width)) + 2):
            i = left + p
            d = u - i
            wgt = scale * cubic(np.array(scale * d)) if scale < 1 else cubic(np.array(d))
            # symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...
            k = i
            while k < 1 or k > n:
                k = 1 - k if k < 1 else 2 * n + 1 - k
            acc += float(wgt) * x[k - 1]
            wsum += float(wgt)
        out[j - 1] = acc / wsum
    return out


def test_cubic_kernel_properties():
    assert cubic(np.array(0.0)) == 1.0
    assert np.allclose(cubic(np.array([1.0, 2.0, -1.0, -2.0, 2.5])), 0.0)
    # partition of unity for any phase
    for ph in np.linspace(0, 1, 11):
        assert np.isclose(sum(cubic(np.array(ph - k)) for k in range(-3, 4)), 1.0)
    # a = -0.5: derivative of the outer piece at |x| = 1 is -(a) ... check value at 1.5
    assert np.isclose(cubic(np.array(1.5)), -0.0625)


@pytest.mark.parametrize("n_in,n_out,scale",
                         [(64, 16, 0.25), (30, 15, 0.5), (17, 34, 2.0), (20, 80, 4.0), (33, 11, 1 / 3)])
def test_contributions_match_scalar_reference(n_in, n_out, scale):
    rng = np.random.default_rng(0)
    x = rng.random(n_in) * 255
    w, idx = contributions(n_in, n_out, scale)
    assert np.allclose(w.sum(1), 1.0)
    assert idx.min() >= 0 and idx.max() < n_in
    got = (w * x[idx]).sum(1)
    assert np.allclose(got, matlab_reference_1d(x, n_out, scale), atol=1e-9)


def test_2d_matches_reference_and_pillow_interior():
    Image = pytest.importorskip("PIL.Image")

    rng = np.random.default_rng(1)
    img = rng.random((48, 40)) * 255
    for s in (0.25, 0.5, 2.0):
        out = imresize(img, s)
        assert out.shape == (math.ceil(48 * s), math.ceil(40 * s))
        ref = np.stack([matlab_reference_1d(c, out.shape[0], s) for c in img.T], 1)  # height first
        ref = np.stack([matlab_reference_1d(r, out.shape[1], s) for r in ref], 0)
        assert np.allclose(out, ref, atol=1e-9)
        # Pillow clips its window at the border instead of mirroring; inside they agree.
        pil = np.asarray(Image.fromarray(img.astype(np.float32), "F").resize(out.shape[::-1], Image.BICUBIC))
        m = 3 if s < 1 else 3 * int(s)
        assert np.abs(out - pil)[m:-m, m:-m].max() < 1e-3
        assert np.abs(out - pil).max() > 1e-3  # and the borders really differ (mirroring)


def test_constants_and_ramps_preserved():
    c = np.full((40, 52, 3), 117, np.uint8)
    assert (imresize(c, 0.25) == 117).all()
    assert (imresize(c, 0.5) == 117).all()
    # Integer downscaling samples symmetrically around each output centre: linear ramps are
    # exact away from the borders.
    ramp = np.tile(np.arange(64, dtype=np.float64) * 3.0, (16, 1))
    out = imresize(ramp, 0.25)
    centres = (np.arange(16) + 0.5) * 4 - 0.5
    assert np.allclose(out[:, 2:-2], (centres * 3.0)[None, 2:-2])


def test_uint8_rounding_and_range():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = imresize(img, 0.5)
    ref = imresize(img.astype(np.float64), 0.5)
    assert out.dtype == np.uint8
    assert np.array_equal(out, np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8))
    up = imresize(img, 4)
    assert up.shape == (96, 96, 3) and up.dtype == np.uint8


def test_size_argument_and_errors():
    img = np.zeros((30, 20))
    assert imresize(img, size=(15, 5)).shape == (15, 5)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, -1)
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)
