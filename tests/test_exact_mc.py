"""Exact motion compensation: with deblocking and SAO off, every block without residual
(skip CUs, and inter CUs with no coded residual) reconstructs to exactly its inter
prediction. Predicting those blocks from bitsr's priors (MVs, ref POCs, inter_dir, weight
tables) and FFmpeg's decoded reference pictures, sample for sample and in all three planes,
proves the priors, the reference picture identification and bitsr.open's frame alignment
together. The mutation tests show the check notices a quarter-pel error in one CU, a wrong
reference, a frame misalignment and a wrong weight.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import CORPUS, SHARED, requires_shared
from mc_reference import CHROMA_SUBSAMPLING, CHROMA_TAPS, LUMA_TAPS, interpolate, predict
from streams import make_hevc

import bitsr

NO_FILTERS = "no-deblock=1:no-sao=1"  # "deblock=0" leaves deblocking on in x265 (checked below)

# name -> make_hevc arguments
STREAMS = {
    "lowdelay_p": dict(frames=12, x265_params=f"{NO_FILTERS}:bframes=0:ref=1"),
    "ra_bpyramid": dict(frames=17, x265_params=f"{NO_FILTERS}:bframes=3:b-pyramid=1:b-adapt=0:ref=3"),
    "open_gop": dict(frames=20,
                     x265_params=f"{NO_FILTERS}:keyint=8:min-keyint=8:scenecut=0:open-gop=1:bframes=3:b-adapt=0"),
    "ref4": dict(frames=14, x265_params=f"{NO_FILTERS}:bframes=2:ref=4"),
    "yuv420p10": dict(frames=12, pix_fmt="yuv420p10le", x265_params=f"{NO_FILTERS}:bframes=3"),
    "yuv422p": dict(frames=10, pix_fmt="yuv422p", x265_params=f"{NO_FILTERS}:bframes=3"),
    "yuv444p": dict(frames=10, pix_fmt="yuv444p", x265_params=f"{NO_FILTERS}:bframes=3"),
    "yuv422p10": dict(frames=10, pix_fmt="yuv422p10le", x265_params=f"{NO_FILTERS}:bframes=2"),
    # 172x140 is coded as 176x144 with a conformance window: checks the crop handling
    "cropped": dict(frames=10, width=172, height=140, x265_params=f"{NO_FILTERS}:bframes=3"),
    "weighted_fade": dict(frames=16, fade=0.7, x265_params=f"{NO_FILTERS}:bframes=3:weightp=1:weightb=1:ref=2"),
    "weighted_fade_10bit": dict(frames=16, fade=0.7, pix_fmt="yuv420p10le",
                                x265_params=f"{NO_FILTERS}:bframes=3:weightp=1:weightb=1:ref=2"),
}
# Coverage thresholds assume real content (streams.py falls back to a synthetic pattern,
# on which the encoder skips less); exactness is asserted either way.
REAL_VIDEO = SHARED is not None and (SHARED / "video" / "vid4" / "city.mkv").exists()
requires_real_video = pytest.mark.skipif(not REAL_VIDEO, reason="needs the shared Vid4 video as content")
SLOW = {"yuv422p10"}  # covered by yuv422p + yuv420p10; the rest take ~1 s each


@dataclass
class Coverage:
    """What one exact-MC pass checked. Samples are per plane (Y, Cb, Cr)."""

    pictures: int = 0
    skip_cus: int = 0
    noresid_cus: int = 0  # inter CUs (merge or AMVP) without coded residual
    samples: list = field(default_factory=lambda: [0, 0, 0])
    skip_samples: list = field(default_factory=lambda: [0, 0, 0])
    bi_samples: int = 0  # luma
    weighted_samples: list = field(default_factory=lambda: [0, 0, 0])  # explicit WP, weight != 1
    offset_samples: list = field(default_factory=lambda: [0, 0, 0])  # explicit WP, offset != 0
    unchecked: int = 0  # luma samples outside the crop or with a missing reference
    mismatches: list = field(default_factory=lambda: [0, 0, 0])
    ref_pocs: set = field(default_factory=set)
    nal_types: set = field(default_factory=set)
    first_mismatch: str = ""

    def line(self, name: str) -> str:
        return (f"{name}: {self.pictures} inter pictures, {self.skip_cus} skip CUs + {self.noresid_cus} "
                f"residual-free inter CUs; samples Y/Cb/Cr {self.samples} (skip {self.skip_samples}); "
                f"bi {self.bi_samples}, WP weight!=1 {self.weighted_samples}, offset!=0 {self.offset_samples}, "
                f"unchecked {self.unchecked}; "
                f"mismatches {self.mismatches}")


class Patched(SimpleNamespace):
    """A PicturePriors look-alike with some arrays or slices replaced (mutation tests)."""

    @classmethod
    def of(cls, p, **changes):
        keys = ("width", "height", "conf_win", "bit_depth", "bit_depth_chroma", "chroma_format",
                "ctb_size", "slices", "mv", "ref_poc", "ref_idx", "inter_dir", "pred_mode", "cu_log2",
                "residual", "poc", "cvs_index", "slice_type")
        d = {k: getattr(p, k) for k in keys}
        d.update(changes)
        return cls(**d)


def cu_origins(p, mask: np.ndarray) -> int:
    """Number of CUs whose blocks are in `mask` (CUs are aligned to their size)."""
    gy, gx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    size = 1 << (np.asarray(p.cu_log2).astype(np.int32) - 2)
    return int((mask & (gy % size == 0) & (gx % size == 0)).sum())


def load(path) -> list:
    """(priors, planes) of every output frame, display order."""
    with bitsr.open(path) as video:
        return [(f.priors, f.yuv()) for f in video]


def exact_mc(frames, mutate=None, offset: int = 0, **predict_kw) -> Coverage:
    """Checks every residual-free inter block of every frame. `mutate(priors) -> priors`
    alters the priors; `offset` pairs pixels of frame i with the priors of frame i + offset."""
    cov = Coverage()
    refs: dict = {}
    for p, planes in frames:
        refs.setdefault(p.cvs_index, {})[p.poc] = planes
    for i, (p, _) in enumerate(frames):
        if not 0 <= i + offset < len(frames):
            continue
        planes = frames[i + offset][1]
        for s in p.slices:
            assert s["deblocking_disabled"] and not s["sao_luma"] and not s["sao_chroma"], "in-loop filters on"
        cov.nal_types.add(p.nal_type)
        pm = np.asarray(p.pred_mode)
        skip = pm == 2
        noresid = (pm == 0) & (np.asarray(p.residual) == 0)
        if not (skip | noresid).any():
            continue
        cov.pictures += 1
        cov.skip_cus += cu_origins(p, skip)
        cov.noresid_cus += cu_origins(p, noresid)
        if mutate is not None:
            p = mutate(p)
        preds = predict(p, refs[p.cvs_index], skip | noresid, **predict_kw)
        left, _, top, _ = p.conf_win
        rp = np.asarray(p.ref_poc)
        cov.ref_pocs.update(int(v) for v in np.unique(rp[(skip | noresid)[..., None] & (rp != np.iinfo(np.int32).min)]))
        for c, pp in enumerate(preds):
            sw, sh = (1, 1) if c == 0 else CHROMA_SUBSAMPLING[p.chroma_format]
            v = pp.valid
            ys, xs = pp.ys[v], pp.xs[v]
            got = planes[c][ys - top // sh, xs - left // sw].astype(np.int32)
            bad = got != pp.pred[v]
            in_skip = skip[(ys * sh) >> 2, (xs * sw) >> 2]
            cov.samples[c] += int(v.sum())
            cov.skip_samples[c] += int(in_skip.sum())
            cov.mismatches[c] += int(bad.sum())
            if c == 0:
                cov.unchecked += int((~v).sum())
                cov.bi_samples += int(pp.bi[v].sum())
            cov.weighted_samples[c] += int(pp.wp_weight[v].sum())
            cov.offset_samples[c] += int(pp.wp_offset[v].sum())
            if bad.any() and not cov.first_mismatch:
                j = int(np.argmax(bad))
                cov.first_mismatch = (f"POC {p.poc} plane {c} at (y={ys[j]}, x={xs[j]}): decoded {got[j]}, "
                                      f"predicted {pp.pred[v][j]}")
    return cov


_cache: dict = {}


def stream_frames(name: str):
    if name not in _cache:
        _cache[name] = load(make_hevc(f"mc_{name}", **STREAMS[name]))
    return _cache[name]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STREAMS])
def test_exact_mc(name):
    frames = stream_frames(name)
    cov = exact_mc(frames)
    print(cov.line(name))
    assert cov.mismatches == [0, 0, 0], cov.first_mismatch
    assert cov.skip_cus > 0, cov.line(name)
    p0 = frames[0][0]
    kind = STREAMS[name]
    fmt = kind.get("pix_fmt", "yuv420p")
    assert p0.chroma_format == {"420": 1, "422": 2, "444": 3}[fmt[3:6]]
    assert p0.bit_depth == (10 if "10" in fmt else 8)
    if name == "cropped":
        assert tuple(p0.conf_win) != (0, 0, 0, 0) and cov.unchecked > 0
    if not REAL_VIDEO:
        return
    assert cov.skip_cus > 20 and min(cov.skip_samples) > 1000, cov.line(name)
    if "bframes=0" not in kind["x265_params"]:
        assert cov.bi_samples > 1000, "no bi-prediction exercised"
    if name == "ref4":
        assert len(cov.ref_pocs) >= 4
    if name == "open_gop":
        assert cov.nal_types & {21} and cov.nal_types & {8, 9}, f"expected CRA + RASL, got {cov.nal_types}"
    if name.startswith("weighted"):
        assert min(cov.weighted_samples) > 1000, "explicit weights != 1 not exercised in every plane"
        assert cov.offset_samples[0] > 1000, "explicit offsets != 0 not exercised"


# Corpus streams coded with deblocking and SAO off (exact_mc asserts it per slice) that
# have residual-free inter blocks; the two large ones are slow.
CORPUS_NOFILTER = [
    "city_q4_nodeblock_nosao_b3.hevc", "10bit_128x128.h265", "aq_p_320x240.h265",
    "bframes3_128x128.h265", "constrained_intra_128x128.h265", "ctu64_noqp_nosao_320x240.h265",
    "ctu64_wpp.h265", "deblock_sao_nodeblock.h265", "inter_b.h265", "inter_p.h265",
    "motion_320x240.h265", "realworld_320x240.h265", "signhide_scaling_320x240.h265",
    "transquant_bypass_64x64.h265", "tskip_128x128.h265", "tu_inter4x4_motion.h265",
]
CORPUS_NOFILTER_SLOW = ["1080p.h265", "realworld_720p.h265"]


@requires_shared
@pytest.mark.parametrize("name", CORPUS_NOFILTER
                         + [pytest.param(n, marks=pytest.mark.slow) for n in CORPUS_NOFILTER_SLOW])
def test_exact_mc_corpus(name):
    path = CORPUS / name
    cov = exact_mc(load(path))
    print(cov.line(path.name))
    assert cov.mismatches == [0, 0, 0], cov.first_mismatch
    assert cov.skip_cus > 0 and min(cov.samples) > 0
    if name.startswith("city"):
        assert cov.skip_cus > 500 and cov.bi_samples > 10000


def test_interpolation_cases():
    """The single 2-D interpolation equals the spec's per-case formulas (8-228..8-239)."""
    rng = np.random.default_rng(1)
    for bd in (8, 10, 12):
        shift1, shift3 = min(4, bd - 8), max(2, 14 - bd)
        ref = rng.integers(0, 1 << bd, (24, 24)).astype(np.int32)
        for taps in (LUMA_TAPS, CHROMA_TAPS):
            n = taps.shape[1]
            lo = n // 2 - 1
            x = rng.integers(-4, 28, 400)
            y = rng.integers(-4, 28, 400)
            fx = rng.integers(0, len(taps), 400)
            fy = rng.integers(0, len(taps), 400)
            got = interpolate(ref, x, y, fx, fy, taps, bd)
            r = lambda yy, xx: int(ref[min(max(yy, 0), 23), min(max(xx, 0), 23)])  # noqa: E731
            for i in range(400):
                xi, yi, a, b = int(x[i]), int(y[i]), int(fx[i]), int(fy[i])
                hor = lambda yy: sum(int(taps[a][k]) * r(yy, xi + k - lo) for k in range(n))  # noqa: E731
                if a == 0 and b == 0:
                    want = r(yi, xi) << shift3
                elif b == 0:
                    want = hor(yi) >> shift1
                elif a == 0:
                    want = sum(int(taps[b][k]) * r(yi + k - lo, xi) for k in range(n)) >> shift1
                else:
                    want = sum(int(taps[b][k]) * (hor(yi + k - lo) >> shift1) for k in range(n)) >> 6
                assert got[i] == want, (bd, n, xi, yi, a, b)


# ---- the check fails when the priors, references, alignment or weights are wrong ----

def _textured_skip_cu(p, planes):
    """(y0, x0, size) in 4x4 units of the skip CU with the most luma detail."""
    pm = np.asarray(p.pred_mode)
    cu = np.asarray(p.cu_log2)
    best, arg = -1.0, None
    for by, bx in np.argwhere(pm == 2):
        s = 1 << (int(cu[by, bx]) - 2)
        if by % s or bx % s:
            continue
        blk = planes[0][by * 4 : (by + s) * 4, bx * 4 : (bx + s) * 4]
        v = float(blk.astype(np.float64).var())
        if v > best:
            best, arg = v, (int(by), int(bx), s)
    return arg


def test_catches_quarter_pel_error_in_one_cu():
    frames = stream_frames("ra_bpyramid")
    i = next(k for k, (p, _) in enumerate(frames) if (np.asarray(p.pred_mode) == 2).sum() > 50)
    p, planes = frames[i]
    by, bx, s = _textured_skip_cu(p, planes)
    mv = np.array(p.mv)
    mv[by : by + s, bx : bx + s, :, 0] += 1  # a quarter-pel to the right, in both lists
    cov = exact_mc([frames[k] for k in range(len(frames))],
                   mutate=lambda q: Patched.of(q, mv=mv) if q is p else q)
    assert cov.mismatches[0] > 0, "a quarter-pel MV error went unnoticed"


@requires_real_video
def test_catches_quarter_pel_errors_everywhere():
    """Shifting every MV by a quarter-pel breaks nearly every checked CU, not a lucky few."""
    frames = stream_frames("ra_bpyramid")

    def shift(q):
        mv = np.array(q.mv)
        mv[..., 1] += 1
        return Patched.of(q, mv=mv)

    ok = exact_mc(frames)
    cov = exact_mc(frames, mutate=shift)
    assert cov.mismatches[0] > 0.5 * ok.samples[0], cov.line("mutated")


def test_catches_wrong_reference():
    frames = stream_frames("ref4")

    def other_ref(q):
        rp = np.array(q.ref_poc)
        refs = sorted({v for s in q.slices for v in s["ref_poc"][0]})
        if len(refs) < 2:
            return q
        m = rp[..., 0] == refs[-1]
        rp[..., 0][m] = refs[-2]
        return Patched.of(q, ref_poc=rp)

    cov = exact_mc(frames, mutate=other_ref)
    assert cov.mismatches[0] > 1000, cov.line("mutated")


def test_catches_frame_misalignment():
    frames = stream_frames("ra_bpyramid")
    assert exact_mc(frames, offset=1).mismatches[0] > 1000


def test_catches_wrong_weights():
    frames = stream_frames("weighted_fade")

    def bump(q):
        if q.slices[0]["weights"] is None:
            return q
        sl = [dict(s) for s in q.slices]
        for s in sl:
            if s["weights"] is not None:
                w = {k: ([list(v) for v in val] if isinstance(val, list) else val) for k, val in s["weights"].items()}
                w["luma_offset"] = [[o + 1 for o in lst] for lst in w["luma_offset"]]
                s["weights"] = w
        return Patched.of(q, slices=sl)

    cov = exact_mc(frames, mutate=bump)
    assert cov.mismatches[0] > 1000, cov.line("mutated")


@pytest.mark.slow
def test_offsets_scale_with_bit_depth():
    """luma_offset/ChromaOffset count in 8-bit units: o = offset << (BitDepth - 8) when
    high_precision_offsets_enabled_flag is 0 (x265 never sets it); unscaled fails."""
    frames = stream_frames("weighted_fade_10bit")
    cov = exact_mc(frames, high_precision_offsets=True)
    assert cov.mismatches[0] > 1000, cov.line("unscaled offsets")
