"""Coding-structure maps: block boundaries against an independent construction from the
unit rectangles, value maps against the per-4x4 arrays, output geometry and errors."""
from __future__ import annotations

import numpy as np
import pytest
from test_flow import FakePriors

from bitsr import _core
from bitsr.maps import MAP_NAMES, maps

# (x, y, size, part_mode, pred_mode, qp) of the CUs of a 64x64 picture (one 64x64 CTB)
CUS = [
    (0, 0, 32, 1, 0, 30),    # 2NxN
    (32, 0, 16, 4, 2, 31),   # 2NxnU, skip
    (48, 0, 16, 0, 1, 32),   # intra
    (32, 16, 16, 6, 0, -3),  # nLx2N
    (48, 16, 8, 3, 1, 33),   # intra NxN
    (56, 16, 8, 0, 0, 34),
    (48, 24, 8, 0, 0, 35),
    (56, 24, 8, 0, 2, 36),
    (0, 32, 32, 0, 0, 37),
    (32, 32, 32, 2, 0, 38),  # Nx2N
]
PUS = {  # part_mode -> PU rectangles (dx, dy, w, h) in units of the CU size / 4
    0: [(0, 0, 4, 4)], 1: [(0, 0, 4, 2), (0, 2, 4, 2)], 2: [(0, 0, 2, 4), (2, 0, 2, 4)],
    3: [(0, 0, 2, 2), (2, 0, 2, 2), (0, 2, 2, 2), (2, 2, 2, 2)],
    4: [(0, 0, 4, 1), (0, 1, 4, 3)], 6: [(0, 0, 1, 4), (1, 0, 3, 4)],
}
SPLIT_TU = {0: 16}  # CU index -> TU size when the transform tree splits


def structure():
    p = FakePriors(0, gw=16, gh=16, ctb_size=64)
    a = p.arrays
    cu_rects, pu_rects, tu_rects = [], [], []
    for i, (x, y, s, part, pm, qp) in enumerate(CUS):
        blk = (slice(y // 4, (y + s) // 4), slice(x // 4, (x + s) // 4))
        a["cu_log2"][blk] = s.bit_length() - 1
        a["part_mode"][blk] = part
        a["pred_mode"][blk] = pm
        a["qp_y"][blk] = qp
        a["residual"][blk] = i % 2
        t = SPLIT_TU.get(i, s)
        a["tu_log2"][blk] = t.bit_length() - 1
        cu_rects.append((x, y, s, s))
        q = s // 4
        pu_rects += [(x + dx * q, y + dy * q, w * q, h * q) for dx, dy, w, h in PUS[part]]
        tu_rects += [(tx, ty, t, t) for ty in range(y, y + s, t) for tx in range(x, x + s, t)]
    return p, cu_rects, pu_rects, tu_rects


def expected_edges(rects, h=64, w=64):
    e = np.zeros((h, w), np.uint8)
    for x, y, rw, rh in rects:
        e[y:y + rh, x] |= 1
        e[y, x:x + rw] |= 2
    return e


def test_boundary_maps_match_unit_rectangles():
    p, cus, pus, tus = structure()
    m = maps(p, ["cu_edges", "pu_edges", "tu_edges"])
    np.testing.assert_array_equal(m["cu_edges"], expected_edges(cus))
    np.testing.assert_array_equal(m["pu_edges"], expected_edges(cus + pus))
    np.testing.assert_array_equal(m["tu_edges"], expected_edges(cus + tus))
    # on the 4x4 grid a block carries the boundary on its left/top side
    g = maps(p, ["pu_edges"], factor=4)["pu_edges"]
    np.testing.assert_array_equal(g, expected_edges(cus + pus)[::4, ::4])


def test_value_maps_follow_the_blocks():
    p, *_ = structure()
    a = p.arrays
    m = maps(p, "all")
    assert set(m) == set(MAP_NAMES)
    up = lambda b: np.repeat(np.repeat(b, 4, 0), 4, 1)  # noqa: E731
    np.testing.assert_array_equal(m["cu_log2"], up(a["cu_log2"]))
    np.testing.assert_array_equal(m["cu_depth"], up(6 - a["cu_log2"]))
    np.testing.assert_array_equal(m["tu_depth"], up(a["cu_log2"] - a["tu_log2"]))
    np.testing.assert_array_equal(m["pred_mode"], up(a["pred_mode"]))
    np.testing.assert_array_equal(m["skip"], up(a["pred_mode"] == 2))
    np.testing.assert_array_equal(m["intra"], up(a["pred_mode"] == 1))
    np.testing.assert_array_equal(m["inter"], up(a["pred_mode"] != 1))
    np.testing.assert_array_equal(m["residual"], up(a["residual"]))
    assert m["qp"].dtype == np.int8 and m["qp"].min() == -3
    np.testing.assert_array_equal(m["qp"], up(a["qp_y"]))
    g = maps(p, "all", factor=4)
    for k in ("cu_log2", "pred_mode", "qp", "residual"):
        np.testing.assert_array_equal(g[k], m[k][::4, ::4])


def test_geometry_crop_and_factor():
    p, *_ = structure()
    p.conf_win = (4, 8, 0, 6)  # left, right, top, bottom
    m = maps(p, ["cu_log2", "cu_edges"])
    assert m["cu_log2"].shape == (64 - 6, 64 - 12)
    full = maps(structure()[0], ["cu_log2", "cu_edges"])
    np.testing.assert_array_equal(m["cu_log2"], full["cu_log2"][:58, 4:56])
    np.testing.assert_array_equal(m["cu_edges"], full["cu_edges"][:58, 4:56])
    for f in (2, 3, 5):
        m = maps(p, ["qp", "tu_edges"], factor=f)
        assert m["qp"].shape == (-(-58 // f), -(-52 // f))
        # every boundary column of the full map shows up in the subsampled one
        e = m["tu_edges"]
        assert set(np.unique(e)) <= {0, 1, 2, 3} and (e & 1).any() and (e & 2).any()


def test_torch_and_errors():
    torch = pytest.importorskip("torch")
    p, *_ = structure()
    t = maps(p, ["qp"], as_torch=True)["qp"]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int8
    with pytest.raises(ValueError, match="unknown map"):
        maps(p, ["nope"])
    with pytest.raises(ValueError):
        maps(p, ["qp"], factor=0)
    with pytest.raises(ValueError):
        _core.raster_maps(p.arrays, ["qp"], (0, 0, 65, 64))
