"""HEVC-exact inter prediction in NumPy, written from H.265 (v4+) for the tests.

Fractional sample interpolation (8.5.3.3.3), default weighted sample prediction
(8.5.3.3.4.2) and explicit weighted sample prediction (8.5.3.3.4.3), evaluated per sample
from the per-4x4 priors bitsr exports. With in-loop filters off, a block without residual
reconstructs to exactly its prediction, so comparing this against the decoder's pixels
checks motion vectors, reference POCs, weights and frame alignment all at once.

The interpolation uses one separable 2-D form for every fractional position, with the
phase-0 filters [0,0,0,64,0,0,0,0] (luma) and [0,64,0,0] (chroma). That is exactly the
spec's case split: for xFrac = 0 the first stage gives ref << (6 - shift1) with no rounding
(shift1 <= 4), and the second stage then yields (sum * 2^(6 - shift1)) >> 6 = sum >> shift1;
for yFrac = 0 the second stage multiplies by 64 and shifts by 6; for both 0 the result is
ref << (6 - shift1) = ref << shift3, since 6 - Min(4, BitDepth - 8) = Max(2, 14 - BitDepth).
`test_exact_mc.test_interpolation_cases` checks the equivalence against the spec's formulas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# fL[xFrac] (Table 8-11) and fC[xFrac] (Table 8-12), with the phase-0 rows described above.
LUMA_TAPS = np.array(
    [
        [0, 0, 0, 64, 0, 0, 0, 0],
        [-1, 4, -10, 58, 17, -5, 1, 0],
        [-1, 4, -11, 40, 40, -11, 4, -1],
        [0, 1, -5, 17, 58, -10, 4, -1],
    ],
    np.int32,
)
CHROMA_TAPS = np.array(
    [
        [0, 64, 0, 0],
        [-2, 58, 10, -2],
        [-4, 54, 16, -2],
        [-6, 46, 28, -4],
        [-4, 36, 36, -4],
        [-4, 28, 46, -6],
        [-2, 16, 54, -4],
        [-2, 10, 58, -2],
    ],
    np.int32,
)
UNUSED_POC = np.iinfo(np.int32).min
# (SubWidthC, SubHeightC) per chroma_format_idc (Table 6-1).
CHROMA_SUBSAMPLING = {1: (2, 2), 2: (2, 1), 3: (1, 1)}
_CHUNK = 1 << 16  # samples per gather, bounds the [N, taps, taps] temporaries


def interpolate(ref: np.ndarray, x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                taps: np.ndarray, bit_depth: int) -> np.ndarray:
    """predSampleLX (14-bit intermediate) at integer reference positions (x, y) with phases
    (fx, fy); `ref` is the whole reference plane of the coded picture, positions outside it
    are clamped (8-207/8-208, 8-219/8-220)."""
    n = taps.shape[1]
    lo = n // 2 - 1  # taps start at xInt - 3 (luma) / xInt - 1 (chroma)
    h, w = ref.shape
    shift1 = min(4, bit_depth - 8)
    k = np.arange(n) - lo
    out = np.empty(x.shape, np.int32)
    for s in range(0, x.size, _CHUNK):
        e = s + _CHUNK
        rows = np.clip(y[s:e, None] + k, 0, h - 1)
        cols = np.clip(x[s:e, None] + k, 0, w - 1)
        samples = ref[rows[:, :, None], cols[:, None, :]].astype(np.int32)  # [N, row, col]
        temp = (samples * taps[fx[s:e]][:, None, :]).sum(-1) >> shift1
        out[s:e] = (temp * taps[fy[s:e]]).sum(-1) >> 6
    return out


def default_weighted(p0: np.ndarray, p1: np.ndarray | None, bit_depth: int) -> np.ndarray:
    """8.5.3.3.4.2: uni-prediction when p1 is None, else the rounded average."""
    hi = (1 << bit_depth) - 1
    if p1 is None:
        shift1 = 14 - bit_depth
        offset1 = 1 << (shift1 - 1) if shift1 > 0 else 0
        return np.clip((p0 + offset1) >> shift1, 0, hi)
    shift2 = 15 - bit_depth
    offset2 = 1 << (shift2 - 1)
    return np.clip((p0 + p1 + offset2) >> shift2, 0, hi)


def explicit_weighted(p0, p1, w0, w1, o0, o1, log2_denom: int, bit_depth: int) -> np.ndarray:
    """8.5.3.3.4.3. Offsets o0/o1 are already scaled by WpOffsetBdShift; for uni-prediction
    pass the used list's samples, weight and offset as p0/w0/o0 and p1 = None."""
    hi = (1 << bit_depth) - 1
    log2wd = log2_denom + 14 - bit_depth
    if p1 is None:
        if log2wd >= 1:
            return np.clip(((p0 * w0 + (1 << (log2wd - 1))) >> log2wd) + o0, 0, hi)
        return np.clip(p0 * w0 + o0, 0, hi)
    return np.clip((p0 * w0 + p1 * w1 + ((o0 + o1 + 1) << log2wd)) >> (log2wd + 1), 0, hi)


@dataclass
class PlanePrediction:
    """Predicted samples of one colour plane at coded-picture coordinates (ys, xs).
    `valid` is False where the answer is unknowable from cropped output pictures (a tap or
    the sample itself outside the conformance window) or a reference is missing."""

    ys: np.ndarray
    xs: np.ndarray
    pred: np.ndarray
    valid: np.ndarray
    bi: np.ndarray = field(default=None)  # bool: bi-predicted sample
    weighted: np.ndarray = field(default=None)  # bool: explicit weighted prediction
    wp_weight: np.ndarray = field(default=None)  # bool: a used list's weight is not 1 << denom
    wp_offset: np.ndarray = field(default=None)  # bool: a used list's offset is not 0


def _slice_of_ctb(slices: list[dict], n_ctb: int) -> np.ndarray:
    """Index of the independent slice (whose header holds the weights) per CTB, raster scan.
    Assumes no tiles (CTB raster scan = tile scan), which holds for the streams tested."""
    owner = np.zeros(n_ctb, np.int32)
    indep = 0
    for i, s in enumerate(slices):
        if not s["dependent"]:
            indep = i
        owner[s["slice_segment_address"]:] = indep
    return owner


def _weight_table(t: dict, lst: int, comp: int, shift_bd: int) -> tuple[np.ndarray, np.ndarray]:
    """(LumaWeightLX or ChromaWeightLX[c], offset << WpOffsetBdShift) indexed by ref_idx;
    one dummy entry for a list the slice doesn't have, so masked-out samples can index it."""
    if comp == 0:
        w, o = t["luma_weight"][lst], t["luma_offset"][lst]
    else:
        w = [c[comp - 1] for c in t["chroma_weight"][lst]]
        o = [c[comp - 1] for c in t["chroma_offset"][lst]]
    return np.asarray(w or [0], np.int32), np.asarray(o or [0], np.int32) << shift_bd


def predict(priors, refs: dict, block_mask: np.ndarray, *, high_precision_offsets: bool = False,
            components=(0, 1, 2)) -> list[PlanePrediction]:
    """Inter prediction of the samples of the 4x4 blocks in `block_mask` ([Gh, Gw] bool).

    `priors` is a bitsr PicturePriors (or anything with its attributes and arrays); `refs`
    maps a reference POC to its decoded planes (Y, Cb, Cr) as bitsr's Frame.yuv() returns
    them, i.e. cropped to the conformance window. Returns one PlanePrediction per component.
    """
    width, height = priors.width, priors.height
    left, right, top, bottom = priors.conf_win
    inter_dir = np.asarray(priors.inter_dir)
    mv = np.asarray(priors.mv).astype(np.int32)
    ref_poc = np.asarray(priors.ref_poc)
    ref_idx = np.asarray(priors.ref_idx).astype(np.int32)
    slices = priors.slices
    log2_ctb = int(priors.ctb_size).bit_length() - 1
    ctbs_w = (width + (1 << log2_ctb) - 1) >> log2_ctb
    ctbs_h = (height + (1 << log2_ctb) - 1) >> log2_ctb
    owner = _slice_of_ctb(slices, ctbs_w * ctbs_h)
    block_mask = np.asarray(block_mask, bool) & (inter_dir > 0)
    out = []
    for comp in components:
        if comp == 0:
            sw, sh, taps, bd = 1, 1, LUMA_TAPS, priors.bit_depth
        else:
            if priors.chroma_format == 0:
                break
            sw, sh = CHROMA_SUBSAMPLING[priors.chroma_format]
            taps, bd = CHROMA_TAPS, priors.bit_depth_chroma
        pw, ph = width // sw, height // sh
        # crop rectangle of the decoded output, in this plane's coded coordinates
        cx0, cy0, cx1, cy1 = left // sw, top // sh, pw - right // sw, ph - bottom // sh
        plane_mask = np.repeat(np.repeat(block_mask, 4 // sh, 0), 4 // sw, 1)[:ph, :pw]
        ys, xs = np.nonzero(plane_mask)
        by, bx = (ys * sh) >> 2, (xs * sw) >> 2
        valid = (xs >= cx0) & (xs < cx1) & (ys >= cy0) & (ys < cy1)
        sl = owner[((ys * sh) >> log2_ctb) * ctbs_w + ((xs * sw) >> log2_ctb)]
        explicit = np.array([slices[i]["weights"] is not None for i in range(len(slices))])[sl]
        lists = []
        for lst in (0, 1):
            used = ((inter_dir[by, bx] >> lst) & 1).astype(bool)
            p = np.zeros(ys.shape, np.int32)
            mvx, mvy = mv[by, bx, lst, 0], mv[by, bx, lst, 1]
            if comp == 0:
                xi, yi, fx, fy = xs + (mvx >> 2), ys + (mvy >> 2), mvx & 3, mvy & 3
            else:  # 8.5.3.2.10: mvCLX = mvLX * 2 / SubWidthC (exact for SubWidthC in {1, 2})
                mcx, mcy = mvx * 2 // sw, mvy * 2 // sh
                xi, yi, fx, fy = xs + (mcx >> 3), ys + (mcy >> 3), mcx & 7, mcy & 7
            rp = ref_poc[by, bx, lst]
            for poc in np.unique(rp[used]):
                sel = used & (rp == poc)
                planes = refs.get(int(poc))
                if planes is None:
                    valid[sel] = False
                    continue
                full = np.zeros((ph, pw), np.int32)  # the coded picture, known inside the crop
                full[cy0:cy1, cx0:cx1] = planes[comp]
                p[sel] = interpolate(full, xi[sel], yi[sel], fx[sel], fy[sel], taps, bd)
                n, lo = taps.shape[1], taps.shape[1] // 2 - 1
                r0 = np.clip(yi[sel] - lo, 0, ph - 1)
                r1 = np.clip(yi[sel] - lo + n - 1, 0, ph - 1)
                c0 = np.clip(xi[sel] - lo, 0, pw - 1)
                c1 = np.clip(xi[sel] - lo + n - 1, 0, pw - 1)
                valid[sel] &= (r0 >= cy0) & (r1 < cy1) & (c0 >= cx0) & (c1 < cx1)
            lists.append((used, p))
        (u0, p0), (u1, p1) = lists
        bi = u0 & u1
        pred = np.zeros(ys.shape, np.int32)
        # default weighted prediction
        d = ~explicit
        pred[d & bi] = default_weighted(p0[d & bi], p1[d & bi], bd)
        pred[d & u0 & ~u1] = default_weighted(p0[d & u0 & ~u1], None, bd)
        pred[d & u1 & ~u0] = default_weighted(p1[d & u1 & ~u0], None, bd)
        wp_weight = np.zeros(ys.shape, bool)
        wp_offset = np.zeros(ys.shape, bool)
        if explicit.any():
            shift_bd = 0 if high_precision_offsets else bd - 8  # WpOffsetBdShiftY/C
            ridx0 = np.maximum(ref_idx[by, bx, 0], 0)
            ridx1 = np.maximum(ref_idx[by, bx, 1], 0)
            for si in np.unique(sl[explicit]):
                t = slices[si]["weights"]
                denom = t["luma_log2_weight_denom"] if comp == 0 else t["chroma_log2_weight_denom"]
                (tw0, to0), (tw1, to1) = (_weight_table(t, lst, comp, shift_bd) for lst in (0, 1))
                e = explicit & (sl == si)
                for u, tw, to, ri in ((u0, tw0, to0, ridx0), (u1, tw1, to1, ridx1)):
                    m = e & u
                    wp_weight[m] |= tw[ri[m]] != 1 << denom
                    wp_offset[m] |= to[ri[m]] != 0
                m = e & bi
                pred[m] = explicit_weighted(p0[m], p1[m], tw0[ridx0[m]], tw1[ridx1[m]],
                                            to0[ridx0[m]], to1[ridx1[m]], denom, bd)
                m = e & u0 & ~u1
                pred[m] = explicit_weighted(p0[m], None, tw0[ridx0[m]], None, to0[ridx0[m]], None, denom, bd)
                m = e & u1 & ~u0
                pred[m] = explicit_weighted(p1[m], None, tw1[ridx1[m]], None, to1[ridx1[m]], None, denom, bd)
        out.append(PlanePrediction(ys, xs, pred, valid, bi, explicit, wp_weight, wp_offset))
    return out


# ---- H.264 (8.4.2.2): 6-tap half-sample luma filter, bilinear quarter samples and chroma ----

def _tap6(v):
    """E - 5F + 20G + 20H - 5I + J over the last axis (6 samples)."""
    return v[..., 0] - 5 * v[..., 1] + 20 * v[..., 2] + 20 * v[..., 3] - 5 * v[..., 4] + v[..., 5]


def h264_luma(ref: np.ndarray, x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray,
              bit_depth: int = 8) -> np.ndarray:
    """Luma prediction samples (Table 8-12) at integer positions (x, y), quarter phases (fx, fy);
    coordinates clamped to the picture (8-228, 8-229)."""
    h, w = ref.shape
    hi = (1 << bit_depth) - 1
    k = np.arange(-2, 4)
    rows = np.clip(y[:, None] + k, 0, h - 1)  # [N, 6]
    cols = np.clip(x[:, None] + k, 0, w - 1)
    win = ref[rows[:, :, None], cols[:, None, :]].astype(np.int32)  # [N, 6 rows, 6 cols]; G at [2, 2]
    # half samples: b (row 0), s (row +1) horizontal; h (col 0), m (col +1) vertical; j centre
    b1_rows = _tap6(win)  # [N, 6]: b1 of rows -2..3
    b = np.clip((b1_rows[:, 2] + 16) >> 5, 0, hi)
    s = np.clip((b1_rows[:, 3] + 16) >> 5, 0, hi)
    h1 = _tap6(win[:, :, 2])
    hh = np.clip((h1 + 16) >> 5, 0, hi)
    m1 = _tap6(ref[rows, np.clip(x + 1, 0, w - 1)[:, None]].astype(np.int32))
    m = np.clip((m1 + 16) >> 5, 0, hi)
    j = np.clip((_tap6(b1_rows) + 512) >> 10, 0, hi)
    G, H, M = win[:, 2, 2], win[:, 2, 3], win[:, 3, 2]
    avg = lambda p, q: (p + q + 1) >> 1  # noqa: E731
    table = {
        (0, 0): G, (0, 1): avg(G, hh), (0, 2): hh, (0, 3): avg(M, hh),
        (1, 0): avg(G, b), (1, 1): avg(b, hh), (1, 2): avg(hh, j), (1, 3): avg(hh, s),
        (2, 0): b, (2, 1): avg(b, j), (2, 2): j, (2, 3): avg(j, s),
        (3, 0): avg(H, b), (3, 1): avg(b, m), (3, 2): avg(j, m), (3, 3): avg(m, s),
    }
    out = np.empty(x.shape, np.int32)
    for (a, c), v in table.items():
        sel = (fx == a) & (fy == c)
        out[sel] = v[sel]
    return out


def h264_chroma(ref: np.ndarray, x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Chroma prediction samples (8-266): bilinear in eighth samples, coordinates clamped."""
    h, w = ref.shape
    x0, x1 = np.clip(x, 0, w - 1), np.clip(x + 1, 0, w - 1)
    y0, y1 = np.clip(y, 0, h - 1), np.clip(y + 1, 0, h - 1)
    A, B = ref[y0, x0].astype(np.int32), ref[y0, x1].astype(np.int32)
    C, D = ref[y1, x0].astype(np.int32), ref[y1, x1].astype(np.int32)
    return ((8 - fx) * (8 - fy) * A + fx * (8 - fy) * B + (8 - fx) * fy * C + fx * fy * D + 32) >> 6


def h264_predict(priors, refs: dict, block_mask: np.ndarray, components=(0, 1, 2)) -> list[PlanePrediction]:
    """Default-weighted H.264 inter prediction (4:2:0 frames) of the 4x4 blocks in
    `block_mask`, from the per-4x4 priors bitsr derives for H.264 and reference planes keyed
    by display index (`ref_poc`). Bi-prediction averages with rounding (8-273). Streams with
    a cropping window are predicted as if the cropped-off samples were 0 (not checked)."""
    width, height = priors.width, priors.height
    _, right, _, bottom = priors.conf_win
    inter_dir = np.asarray(priors.inter_dir)
    mv = np.asarray(priors.mv).astype(np.int32)
    ref_poc = np.asarray(priors.ref_poc)
    bd = priors.bit_depth
    block_mask = np.asarray(block_mask, bool) & (inter_dir > 0)
    out = []
    for comp in components:
        s = 1 if comp == 0 else 2
        pw, ph = width // s, height // s
        cx1, cy1 = pw - right // s, ph - bottom // s
        plane_mask = np.repeat(np.repeat(block_mask, 4 // s, 0), 4 // s, 1)[:ph, :pw]
        ys, xs = np.nonzero(plane_mask)
        by, bx = (ys * s) >> 2, (xs * s) >> 2
        valid = (xs < cx1) & (ys < cy1)
        preds = []
        for lst in (0, 1):
            used = ((inter_dir[by, bx] >> lst) & 1).astype(bool)
            p = np.zeros(ys.shape, np.int32)
            mvx, mvy = mv[by, bx, lst, 0], mv[by, bx, lst, 1]
            rp = ref_poc[by, bx, lst]
            for poc in np.unique(rp[used]):
                sel = used & (rp == poc)
                planes = refs.get(int(poc))
                if planes is None:
                    valid[sel] = False
                    continue
                full = np.zeros((ph, pw), np.int32)
                full[:cy1, :cx1] = planes[comp]
                if comp == 0:
                    p[sel] = h264_luma(full, xs[sel] + (mvx[sel] >> 2), ys[sel] + (mvy[sel] >> 2),
                                       mvx[sel] & 3, mvy[sel] & 3, bd)
                else:
                    p[sel] = h264_chroma(full, xs[sel] + (mvx[sel] >> 3), ys[sel] + (mvy[sel] >> 3),
                                         mvx[sel] & 7, mvy[sel] & 7)
            preds.append((used, p))
        (u0, p0), (u1, p1) = preds
        bi = u0 & u1
        pred = np.where(bi, (p0 + p1 + 1) >> 1, np.where(u0, p0, p1))
        out.append(PlanePrediction(ys, xs, pred, valid, bi))
    return out
