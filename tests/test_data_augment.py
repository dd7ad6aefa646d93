"""Flips/transposes move pixels, flows and maps consistently."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bitsr.data.augment import hflip, random_dihedral, transpose, vflip
from bitsr.models.warp import flow_warp


def _sample(seed=0, t=2, h=16, w=24):
    rng = np.random.default_rng(seed)
    return {
        "lr": rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        "hr": rng.integers(0, 256, (t, 4 * h, 4 * w, 3), dtype=np.uint8),
        "flow": rng.normal(0, 3, (t, 2, h, w)).astype(np.float32),
        "flow_next": rng.normal(0, 3, (t, 2, h, w)).astype(np.float32),
        "conf": rng.random((t, 1, h, w)).astype(np.float32),
        "maps": rng.integers(3, 7, (t, 5, h // 4, w // 4)).astype(np.float32),
    }


def _warp(img_hwc: np.ndarray, flow: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img_hwc)).permute(2, 0, 1)[None].double()
    f = torch.from_numpy(np.ascontiguousarray(flow))[None].double()
    return flow_warp(x, f)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("op", [hflip, vflip, transpose])
def test_warp_commutes_with_augmentation(op):
    """aug(warp(prev, flow)) == warp(aug(prev), aug(flow)): the augmented flow still says
    where each augmented pixel comes from."""
    s = _sample()
    a = op(s)
    before = _warp(s["lr"][0], s["flow"][1])
    after = _warp(a["lr"][0], a["flow"][1])
    expect = op({"lr": before[None]})["lr"][0]
    assert np.allclose(after, expect, atol=1e-9)
    after_n = _warp(a["lr"][1], a["flow_next"][0])
    expect_n = op({"lr": _warp(s["lr"][1], s["flow_next"][0])[None]})["lr"][0]
    assert np.allclose(after_n, expect_n, atol=1e-9)


def test_maps_move_with_pixels():
    s = _sample(1)
    # a map that marks the 4x4 block of a bright pixel follows it under each operation
    s["lr"][:] = 0
    s["lr"][0, 5, 18] = 255
    s["maps"][:] = 0
    s["maps"][0, 2, 5 // 4, 18 // 4] = 1
    for op in (hflip, vflip, transpose):
        a = op(s)
        ys, xs = np.nonzero(a["lr"][0, :, :, 0])
        by, bx = np.nonzero(a["maps"][0, 2])
        assert (ys[0] // 4, xs[0] // 4) == (by[0], bx[0])
        assert a["hr"].shape[1:3] == (a["lr"].shape[1] * 4, a["lr"].shape[2] * 4)


def test_flow_components():
    s = _sample(2)
    f = s["flow"][0]
    assert np.array_equal(hflip(s)["flow"][0], np.stack([-f[0, :, ::-1], f[1, :, ::-1]]))
    assert np.array_equal(vflip(s)["flow"][0], np.stack([f[0, ::-1], -f[1, ::-1]]))
    assert np.array_equal(transpose(s)["flow"][0], np.stack([f[1].T, f[0].T]))


def test_involutions_and_group():
    s = _sample(3)
    for op in (hflip, vflip, transpose):
        back = op(op(s))
        assert all(np.array_equal(back[k], s[k]) for k in s)
    seen = set()
    for i in range(64):
        a = random_dihedral(s, np.random.default_rng(i))
        assert all(a[k].flags.c_contiguous for k in a)
        seen.add(a["lr"].tobytes())
    assert len(seen) == 8  # all eight dihedral transforms occur
