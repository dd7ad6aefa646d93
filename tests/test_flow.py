"""MV flow on synthetic priors: POC scaling, bi-prediction fusion, projections for
I-pictures, hole filling, confidence range, output geometry, torch zero-copy, errors."""
from __future__ import annotations

import numpy as np
import pytest

from bitsr import _core
from bitsr.flow import mv_flow, output_size

NO_REF = np.iinfo(np.int32).min


class FakePriors:
    """The attributes of PicturePriors that the rasterizer reads, over a uniform picture."""

    def __init__(self, poc, gw=8, gh=6, cvs_index=0, conf_win=(0, 0, 0, 0), ctb_size=16):
        self.poc, self.cvs_index, self.conf_win, self.ctb_size = poc, cvs_index, conf_win, ctb_size
        self.width, self.height = 4 * gw, 4 * gh
        n = (gh, gw)
        self.arrays = {
            "pred_mode": np.ones(n, np.int8),  # intra until set
            "inter_dir": np.zeros(n, np.uint8),
            "mv": np.zeros(n + (2, 2), np.int16),
            "ref_poc": np.full(n + (2,), NO_REF, np.int32),
            "residual": np.zeros(n, np.uint8),
            "cu_log2": np.full(n, 4, np.uint8),
            "part_mode": np.zeros(n, np.uint8),
            "tu_log2": np.full(n, 4, np.uint8),
            "qp_y": np.full(n, 30, np.int8),
            "merge_flag": np.zeros(n, np.uint8),
        }

    def set_inter(self, region=(slice(None), slice(None)), l0=None, l1=None, skip=False, residual=0):
        """l0/l1: (ref_poc, mvx, mvy) in quarter samples."""
        a = self.arrays
        a["pred_mode"][region] = 2 if skip else 0
        a["inter_dir"][region] = (1 if l0 else 0) | (2 if l1 else 0)
        a["residual"][region] = residual
        for lst, v in ((0, l0), (1, l1)):
            if v:
                a["ref_poc"][region + (lst,)] = v[0]
                a["mv"][region + (lst,)] = (v[1], v[2])
        return self

    def set_intra(self, region):
        a = self.arrays
        a["pred_mode"][region] = 1
        a["inter_dir"][region] = 0
        a["ref_poc"][region] = NO_REF
        a["mv"][region] = 0
        return self


def flow_of(p, to, nbs=(), **kw):
    f, c = mv_flow(p, to, list(nbs), **kw)
    assert np.isfinite(f).all() and np.isfinite(c).all()
    assert c.min() >= 0.0 and c.max() <= 1.0
    return f, c


def test_poc_scaling_half_vector():
    # P picture at POC 4 predicting from POC 2 with (+2, -1) px: one picture back is half of it
    p = FakePriors(4).set_inter(l0=(2, 8, -4))
    f, c = flow_of(p, 3)
    np.testing.assert_allclose(f[0], 1.0)
    np.testing.assert_allclose(f[1], -0.5)
    f2, c2 = flow_of(p, 2)
    np.testing.assert_allclose(f2[0], 2.0)
    np.testing.assert_allclose(f2[1], -1.0)
    # forward in time: constant velocity continues (and the sign flips)
    f3, c3 = flow_of(p, 5)
    np.testing.assert_allclose(f3[0], -1.0)
    np.testing.assert_allclose(f3[1], 0.5)
    # the referenced picture itself is more certain than interpolation, which beats extrapolation
    assert c2.min() > c.max() > c3.max() > 0


def test_zero_offset_is_identity():
    p = FakePriors(4).set_inter(l0=(2, 8, -4))
    f, c = flow_of(p, 4)
    assert not f.any() and (c == 1).all()


def test_bi_prediction_fusion():
    # constant velocity seen from both sides: L0 to POC 0 moved +2 px, L1 to POC 4 moved -2 px
    agree = FakePriors(2).set_inter(l0=(0, 8, 0), l1=(4, -8, 0))
    f, c_agree = flow_of(agree, 1)
    np.testing.assert_allclose(f[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(f[1], 0.0, atol=1e-6)
    # the lists contradict each other: the more reliable one (interpolating L0) dominates,
    # and the confidence drops
    disagree = FakePriors(2).set_inter(l0=(0, 8, 0), l1=(4, 8, 0))
    f, c_dis = flow_of(disagree, 1)
    assert np.all(np.abs(f[0] - 1.0) < np.abs(f[0] + 1.0))
    assert c_dis.max() < c_agree.min()
    # one list points at the target itself: its vector wins over a conflicting scaled one
    direct = FakePriors(2).set_inter(l0=(1, 4, 0), l1=(4, 40, 0))
    f, c = flow_of(direct, 1)
    np.testing.assert_allclose(f[0], 1.0, atol=0.2)
    uni = FakePriors(2).set_inter(l0=(1, 4, 0))
    _, c_uni = flow_of(uni, 1)
    # agreeing lists are more certain than a single one
    both = FakePriors(2).set_inter(l0=(1, 4, 0), l1=(3, -4, 0))
    _, c_both = flow_of(both, 1)
    assert c_both.min() > c_uni.max()


def test_iframe_gets_flow_from_pictures_that_reference_it():
    i_pic = FakePriors(0, gw=16, gh=12)  # all intra
    p1 = FakePriors(1, gw=16, gh=12).set_inter(l0=(0, 8, 4))  # content came from +2, +1 px in POC 0
    f, c = flow_of(i_pic, p1)
    # inverted vector: the I-picture's content at (x, y) sits at (x - 2, y - 1) in POC 1
    inner = (slice(8, -8), slice(8, -8))  # pixels away from the borders the motion uncovers
    np.testing.assert_allclose(f[0][inner], -2.0, atol=1e-5)
    np.testing.assert_allclose(f[1][inner], -1.0, atol=1e-5)
    assert c[inner].min() >= 0.5
    # without the neighbour there is nothing to go by
    f0, c0 = flow_of(i_pic, 1, project=False)
    assert not f0.any() and not c0.any()
    # a B picture between: the I-picture's flow two pictures ahead is scaled from P2's motion
    p2 = FakePriors(2, gw=16, gh=12).set_inter(l0=(0, 16, 0))
    f, c = flow_of(i_pic, 1, [p2])
    np.testing.assert_allclose(f[0][inner], -2.0, atol=1e-5)
    assert 0 < c[inner].min() < 0.8


def test_exact_inverse_of_many_runs():
    """Runs of equal motion of every length, across 16- and 64-block boundaries: each block
    of the I-picture gets the mean inverse vector of the blocks of T landing on it."""
    rng = np.random.default_rng(3)
    gw, gh = 150, 9
    i_pic = FakePriors(4, gw=gw, gh=gh)  # all intra
    t = FakePriors(5, gw=gw, gh=gh)
    a = t.arrays
    dxy = np.zeros((gh, gw, 2), np.int64)
    for by in range(gh):
        bx = 0
        while bx < gw:
            n = int(rng.integers(1, 20))
            reg = (by, slice(bx, bx + n))
            lst = int(rng.integers(0, 2))
            if rng.random() < 0.15:  # intra, or a vector pointing elsewhere: no landing
                t.set_intra(reg) if rng.random() < 0.5 else t.set_inter(reg, l0=(3, 16, 16))
            else:
                d = rng.integers([-3, -1], [4, 2])
                mv = (4, 16 * int(d[0]), 16 * int(d[1]))  # whole blocks, pointing at POC 4
                t.set_inter(reg, l0=mv if lst == 0 else (3, 4, 4), l1=mv if lst == 1 else None,
                            skip=bool(rng.random() < 0.5), residual=int(rng.integers(0, 2)))
                dxy[reg] = d
            bx += n
    # expected: the mean of -4 * (dx, dy) px over the blocks landing on each block
    land = (a["ref_poc"] == 4).any(-1) & (a["pred_mode"] != 1)
    su, sv, cnt = np.zeros((gh, gw)), np.zeros((gh, gw)), np.zeros((gh, gw))
    for by, bx in zip(*np.nonzero(land)):
        x, y = bx + dxy[by, bx, 0], by + dxy[by, bx, 1]
        if 0 <= x < gw and 0 <= y < gh:
            su[y, x] -= 4 * dxy[by, bx, 0]
            sv[y, x] -= 4 * dxy[by, bx, 1]
            cnt[y, x] += 1
    (fu, fv), conf = _core.raster_block_flow(i_pic.arrays, 4, 5, [(t.arrays, 5, [3, 4])])
    hit = cnt > 0
    assert hit.mean() > 0.4
    np.testing.assert_allclose(fu[hit], (su / np.maximum(cnt, 1))[hit], atol=1e-5)
    np.testing.assert_allclose(fv[hit], (sv / np.maximum(cnt, 1))[hit], atol=1e-5)
    # one landing block: trusted; disagreeing ones lower it; filled holes are below both
    assert conf[cnt == 1].min() > 0.3 >= conf[~hit].max()


@pytest.mark.parametrize("gw,gh,share", [(23, 17, 0.05), (23, 17, 0.6), (64, 5, 0.3), (1, 9, 0.5)])
def test_fill_is_the_mean_of_the_smallest_cell_with_known_blocks(gw, gh, share):
    """Holes take the mean of the known blocks in the smallest aligned 2^k x 2^k cell
    (k >= 1) around them, with confidence 0.3 * 0.7^(k - 1) (push-pull)."""
    rng = np.random.default_rng(gw * gh)
    p = FakePriors(2, gw=gw, gh=gh)
    a = p.arrays
    a["pred_mode"][:] = 0
    a["inter_dir"][:] = 1
    a["ref_poc"][..., 0] = 1
    a["mv"][..., 0, :] = rng.integers(-400, 400, (gh, gw, 2))
    holes = rng.random((gh, gw)) < share
    holes.flat[0] = False  # at least one known block
    p.set_intra(holes)
    (fu, fv), conf = _core.raster_block_flow(a, 2, 1, [], project=False)
    assert (conf[~holes] > 0.3).all()
    for y, x in zip(*np.nonzero(holes)):
        k = 1
        while True:
            cell = (slice(y >> k << k, (y >> k) + 1 << k), slice(x >> k << k, (x >> k) + 1 << k))
            known = ~holes[cell]
            if known.any():
                break
            k += 1
        np.testing.assert_allclose(fu[y, x], fu[cell][known].mean(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(fv[y, x], fv[cell][known].mean(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(conf[y, x], 0.3 * 0.7 ** (k - 1), rtol=1e-6)


def test_intra_hole_is_filled_with_lower_confidence():
    p = FakePriors(4, gw=16, gh=12).set_inter(l0=(3, 8, 8))
    hole = (slice(4, 8), slice(6, 10))
    p.set_intra(hole)
    f, c = flow_of(p, 3)
    # 4x4 blocks -> pixels
    px = (slice(4 * 4, 8 * 4), slice(6 * 4, 10 * 4))
    np.testing.assert_allclose(f[0][px], 2.0, atol=1e-5)
    np.testing.assert_allclose(f[1][px], 2.0, atol=1e-5)
    assert 0 < c[px].max() <= 0.3 < c[: 4 * 4].min()
    # without filling the hole keeps zero flow and zero confidence
    f, c = flow_of(p, 3, fill=False)
    assert not f[:, px[0], px[1]].any() and not c[px].any()


def test_random_priors_confidence_in_range():
    rng = np.random.default_rng(0)
    for poc in range(4):
        pics = []
        for q in range(5):
            p = FakePriors(q, gw=20, gh=15)
            a = p.arrays
            a["pred_mode"][:] = rng.integers(0, 3, a["pred_mode"].shape)
            inter = a["pred_mode"] != 1
            a["inter_dir"][:] = np.where(inter, rng.integers(1, 4, inter.shape), 0)
            for lst in range(2):
                used = inter & ((a["inter_dir"] >> lst) & 1).astype(bool)
                refs = rng.integers(-2, 7, inter.shape)
                refs[refs == q] = q + 1
                a["ref_poc"][..., lst] = np.where(used, refs, NO_REF)
                a["mv"][..., lst, :] = np.where(used[..., None], rng.integers(-300, 300, inter.shape + (2,)), 0)
            a["residual"][:] = rng.integers(0, 2, inter.shape)
            pics.append(p)
        for to in range(-1, 6):
            for interp in ("nearest", "bilinear"):
                flow_of(pics[poc], to, pics, interp=interp)
    # extreme vectors and POCs stay finite and in range
    far = FakePriors(2**31 - 3, gw=20, gh=15).set_inter(l0=(-2**31 + 1, 32767, -32768), l1=(2**31 - 1, -32768, 32767))
    near = FakePriors(-2**31 + 1, gw=20, gh=15).set_inter(l0=(2**31 - 3, -32768, 32767))
    for to in (-2**31 + 1, 0, 2**31 - 1):
        flow_of(far, to, [near])


def test_output_geometry_factor_and_crop():
    p = FakePriors(4, gw=10, gh=8, conf_win=(0, 4, 4, 2)).set_inter(l0=(2, 16, 8))  # (4, 2) px to POC 2
    p.set_inter((slice(0, 1), slice(None)), l0=(2, -16, 0))  # first block row moves the other way
    h, w = 32 - 4 - 2, 40 - 4
    f, c = flow_of(p, 2)
    assert f.shape == (2, h, w) and c.shape == (h, w)
    # the top crop of 4 samples removes the first block row entirely
    np.testing.assert_allclose(f[0], 4.0)
    for factor in (2, 3, 4):
        fh, fw = -(-h // factor), -(-w // factor)
        f, c = flow_of(p, 2, factor=factor)
        assert f.shape == (2, fh, fw) and output_size(p, factor) == (fh, fw)
        np.testing.assert_allclose(f[0], 4.0 / factor)  # values in output pixels
        np.testing.assert_allclose(f[1], 2.0 / factor)
    fb, cb = flow_of(p, 2, interp="bilinear")
    # uniform below the centre of the first kept block row (bilinear reaches into the cropped one above)
    np.testing.assert_allclose(fb[0][2:], 4.0, atol=1e-5)
    assert -4.0 < fb[0][0, 0] < 4.0


def test_bilinear_blends_between_block_centres():
    p = FakePriors(1, gw=8, gh=2).set_inter(l0=(0, 0, 0))
    p.set_inter((slice(None), slice(4, 8)), l0=(0, 16, 0))  # right half moves 4 px
    fn, _ = flow_of(p, 0)
    fb, _ = flow_of(p, 0, interp="bilinear")
    row_n, row_b = fn[0, 0], fb[0, 0]
    assert row_n[15] == 0 and row_n[16] == 4
    # linear ramp from the centre of block 3 (x = 14) to the centre of block 4 (x = 18)
    np.testing.assert_allclose(row_b[[13, 14, 15, 16, 17, 18]], [0, 0.5, 1.5, 2.5, 3.5, 4.0], atol=1e-5)


def test_torch_zero_copy_and_out_buffers():
    torch = pytest.importorskip("torch")
    p = FakePriors(4).set_inter(l0=(2, 8, -4))
    h, w = output_size(p)
    out = (np.empty((2, h, w), np.float32), np.empty((h, w), np.float32))
    ft, ct = mv_flow(p, 3, out=out, as_torch=True)
    assert isinstance(ft, torch.Tensor) and ft.dtype == torch.float32
    assert ft.data_ptr() == out[0].ctypes.data and ct.data_ptr() == out[1].ctypes.data
    assert float(ft[0, 0, 0]) == 1.0
    with pytest.raises(ValueError):
        mv_flow(p, 3, out=(out[0][:, :-1], out[1]))


def test_other_coded_video_sequence_gives_zero_confidence():
    p = FakePriors(0, cvs_index=1).set_inter(l0=(2, 8, -4))  # inter just to have vectors around
    q = FakePriors(7, cvs_index=0).set_inter(l0=(6, 8, 8))
    f, c = mv_flow(p, q)
    assert not f.any() and not c.any()


def test_bad_arguments():
    p = FakePriors(4).set_inter(l0=(2, 8, -4))
    with pytest.raises(ValueError):
        mv_flow(p, 3, factor=0)
    with pytest.raises(ValueError):
        mv_flow(p, 3, interp="cubic")
    bad = dict(p.arrays, mv=p.arrays["mv"].astype(np.int32))
    with pytest.raises(TypeError):
        _core.raster_flow(bad, 4, 3, [], (0, 0, 32, 24))
    missing = {k: v for k, v in p.arrays.items() if k != "ref_poc"}
    with pytest.raises(ValueError):
        _core.raster_flow(missing, 4, 3, [], (0, 0, 32, 24))
    with pytest.raises(ValueError):
        _core.raster_flow(p.arrays, 4, 3, [], (0, 0, 33, 24))
    with pytest.raises(ValueError):
        _core.raster_flow(p.arrays, 4, 3, [(p.arrays["pred_mode"][:2], 1)], (0, 0, 32, 24))
