"""bitsr.open on streams made with libx265: reordering, open GOPs, several coded video
sequences with parameter-set changes, streams that start mid-way, and containers.

For each stream: bitsr.open yields as many frames as PyAV's own decode, in display order;
each frame shows its own source picture (x265 numbers pictures by input order, so within a
coded video sequence the source index is the POC: the frame's PSNR against that source frame
is clearly above its PSNR against the neighbouring ones; the content is real video with
motion); and its priors equal bitsr.extract's for the same picture.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from annexb import EOS, RASL, access_units, container_to_annexb, eos_nal, join, nal_type, picture_type, split_nals
from streams import make_hevc, source_frames

import bitsr
from bitsr.priors import BLOCK_ARRAYS

SOURCE = "bikes"  # fast motion: neighbouring frames differ far more than coding noise
MARGIN_DB = 3.0


def make(name, frames, width=176, height=144, pix_fmt="yuv420p", params="", **kw):
    """A made stream and the luma of its source frames in the encoder's pixel format."""
    path = make_hevc(name, frames=frames, width=width, height=height, pix_fmt=pix_fmt, x265_params=params,
                     source=SOURCE, crf=24, **kw)
    lumas = [_luma(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt))
             for rgb in source_frames(frames, width, height, SOURCE)]
    return path, lumas


def _luma(vf: "av.VideoFrame") -> np.ndarray:
    deep = max(c.bits for c in vf.format.components) > 8
    dt = np.dtype(np.uint16 if deep else np.uint8)
    p = vf.planes[0]
    return np.frombuffer(p, dt).reshape(p.height, p.line_size // dt.itemsize)[:, : p.width].astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a - b) ** 2)
    return 10 * np.log10(peak * peak / max(mse, 1e-12))


def pyav_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def check_stream(path, sources_by_cvs):
    """The common proof; returns the frames. sources_by_cvs[cvs_index] = source lumas."""
    with bitsr.open(path) as video:
        frames = list(video)
        assert video.warnings == []
    assert len(frames) == pyav_count(path)
    assert [f.display_index for f in frames] == list(range(len(frames)))
    keys = [(f.priors.cvs_index, f.poc) for f in frames]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), "display order is POC order per CVS"
    for f in frames:
        src = sources_by_cvs[f.priors.cvs_index]
        y = f.yuv()[0].astype(np.float64)
        peak = float((1 << f.priors.bit_depth) - 1)
        own = psnr(y, src[f.poc], peak)
        others = [psnr(y, src[j], peak) for j in (f.poc - 1, f.poc + 1) if 0 <= j < len(src)]
        assert own > max(others) + MARGIN_DB, (f, own, others)
    extracted = {p.decode_index: p for p in bitsr.extract(path)}
    for f in frames:
        p = extracted[f.decode_index]
        assert (p.poc, p.nal_type, p.cvs_index) == (f.poc, f.nal_type, f.priors.cvs_index)
        for name in BLOCK_ARRAYS:
            np.testing.assert_array_equal(f.priors.arrays[name], p.arrays[name], err_msg=name)
    return frames


def nal_types(path) -> set[int]:
    return {nal_type(n) for n in split_nals(path.read_bytes())}


def test_b_pyramid():
    path, src = make("bpyramid", 24, params="bframes=4:b-pyramid=1:scenecut=0")
    frames = check_stream(path, {0: src})
    assert len(frames) == 24
    decode = [f.decode_index for f in frames]
    assert decode != sorted(decode), "pictures are reordered"
    # a referenced B picture (TRAIL_R with B slices) is what b-pyramid adds
    assert any(f.picture_type == "B" and f.nal_type == 1 for f in frames)
    assert any(f.picture_type == "B" and f.nal_type == 0 for f in frames)


OPEN_GOP = "open-gop=1:keyint=8:min-keyint=8:scenecut=0:bframes=3"


def test_open_gop_with_rasl():
    path, src = make("opengop", 32, params=OPEN_GOP)
    assert nal_types(path) & set(RASL), "x265 wrote RASL pictures"
    frames = check_stream(path, {0: src})
    assert len(frames) == 32
    assert 21 in {f.nal_type for f in frames}
    assert any(f.nal_type in RASL for f in frames), "RASL pictures of a later CRA are decoded"


def _cut(path, start: int, out):
    """The stream from access unit `start` on, with the first AU's parameter sets prepended
    when the cut AU lacks them."""
    aus = access_units(path.read_bytes())
    ps = [n for n in aus[0] if 32 <= nal_type(n) <= 34]
    head = aus[start]
    nals = ([] if any(nal_type(n) == 33 for n in head) else ps) + [n for au in aus[start:] for n in au]
    out.write_bytes(join(nals))
    return aus[start:]


def test_starts_at_cra(tmp_path):
    """Decoding starts at a CRA picture: its RASL pictures reference pictures before the cut,
    so both FFmpeg and the parser skip them."""
    path, src = make("opengop", 32, params=OPEN_GOP)
    aus = access_units(path.read_bytes())
    cra = next(i for i, au in enumerate(aus) if i > 0 and picture_type(au) == 21)
    cut = tmp_path / "cra_start.hevc"
    kept = _cut(path, cra, cut)
    first_rasl = 0
    for au in kept[1:]:
        if picture_type(au) not in RASL:
            break
        first_rasl += 1
    assert first_rasl > 0, "the CRA has RASL pictures"
    frames = check_stream(cut, {0: src})
    assert len(frames) == len(kept) - first_rasl
    assert frames[0].nal_type == 21
    with bitsr.open(cut) as video:
        list(video)
        assert video.num_skipped_pictures == first_rasl


def test_starts_with_non_irap(tmp_path):
    """A stream whose first pictures are not IRAP pictures (e.g. cut from a broadcast):
    nothing before the first IRAP picture can be decoded. FFmpeg outputs nothing for them and
    the parser skips them, so frames start at the first IRAP picture."""
    path, src = make("closedgop", 24, params="open-gop=0:keyint=8:min-keyint=8:scenecut=0:bframes=3")
    aus = access_units(path.read_bytes())
    cut = tmp_path / "non_irap_start.hevc"
    start = 2
    kept = _cut(path, start, cut)
    assert picture_type(kept[0]) < 16
    lead = next(i for i, au in enumerate(kept) if picture_type(au) in range(16, 24))
    # Closed GOPs: every IDR starts a CVS at POC 0, and all pictures decoded before an IDR
    # are displayed before it, so its source index is its position in decoding order.
    idr = [i for i, au in enumerate(aus) if picture_type(au) in (19, 20) and i >= start]
    assert len(idr) == 2
    frames = check_stream(cut, {k: src[i:] for k, i in enumerate(idr)})
    assert len(frames) == len(kept) - lead
    assert frames[0].nal_type in (19, 20) and frames[0].poc == 0
    with bitsr.open(cut) as video:
        list(video)
        assert video.num_skipped_pictures == lead


def _several_sequences(tmp_path):
    """Five CVSs in one raw stream (see the test below) and their sources by CVS index."""
    a, src_a = make("cvs_a", 10, 176, 144, params="scenecut=0:bframes=3")
    b, src_b = make("cvs_b", 8, 128, 96, params="scenecut=0:bframes=2")
    c, src_c = make("cvs_c", 8, 160, 128, pix_fmt="yuv422p10le", params="scenecut=0")
    d, src_d = make("opengop", 32, params=OPEN_GOP)
    e, src_e = make("cvs_e", 6, 144, 112, pix_fmt="gray", params="scenecut=0")
    aus_d = access_units(d.read_bytes())
    cra = next(i for i, au in enumerate(aus_d) if i > 0 and picture_type(au) == 21)
    d_cut = join(n for au in aus_d[cra:] for n in au)
    path = tmp_path / "multi.hevc"
    eos = join([eos_nal()])
    path.write_bytes(a.read_bytes() + eos + b.read_bytes() + c.read_bytes() + eos + d_cut + e.read_bytes())
    return path, {0: src_a, 1: src_b, 2: src_c, 3: src_d, 4: src_e}


def test_several_sequences_with_parameter_changes(tmp_path):
    """Five coded video sequences in one raw stream: changes of picture size, of bit depth
    and of chroma format (4:2:2 10-bit, then 4:0:0), and two EOS NAL units: one before an
    IDR picture, one before a sequence that starts at a CRA picture (the EOS makes that CRA
    start a new CVS, so its RASL pictures are skipped)."""
    path, sources = _several_sequences(tmp_path)
    assert EOS in nal_types(path)
    frames = check_stream(path, sources)
    by_cvs = {}
    for f in frames:
        by_cvs.setdefault(f.priors.cvs_index, []).append(f)
    assert sorted(by_cvs) == [0, 1, 2, 3, 4]
    assert [len(by_cvs[i]) for i in (0, 1, 4)] == [10, 8, 6]
    # The sequence before the EOS ends with pictures still waiting for output when the CRA
    # picture after the EOS starts the next one: that CRA implies NoOutputOfPriorPicsFlag = 1
    # (C.5.2.2), so they are discarded. FFmpeg does this (the count matched PyAV's above).
    assert [f.poc for f in by_cvs[2]] == list(range(len(by_cvs[2]))) and len(by_cvs[2]) >= 4
    assert (by_cvs[1][0].width, by_cvs[1][0].height) == (128, 96)
    y, cb, cr = by_cvs[2][0].yuv()
    assert y.dtype == np.uint16 and y.shape == (128, 160) and cb.shape == (128, 80) and y.max() < 1024
    assert len(by_cvs[4][0].yuv()) == 1
    assert by_cvs[3][0].nal_type == 21 and all(f.nal_type not in RASL or f.poc > by_cvs[3][0].poc
                                               for f in by_cvs[3])


@pytest.mark.parametrize("name", ["bpyramid", "several"])
def test_frames_waiting_for_their_priors_pair_as_when_paired_at_once(name, tmp_path, monkeypatch):
    """bitsr.open lets FFmpeg's frames wait for the parser's workers (hevc.FRAMES_AHEAD, and
    the pixels they may hold, FRAMES_AHEAD_BYTES), and gives the parser packets before FFmpeg
    (PARSE_AHEAD): frames paired at once, after up to 2 or 8 waited, or after every frame
    waited until the end of the stream, with the parser 0, 4 or more packets ahead, are the
    same frames with the same priors, and the warnings are the same; so are they with the
    parser at normal priority (idle_parser=False)."""
    from bitsr.io import hevc

    if name == "several":
        path, _ = _several_sequences(tmp_path)
    else:
        path, _ = make("bpyramid", 24, params="bframes=4:b-pyramid=1:scenecut=0")

    def run(ahead, idle=True, parse_ahead=4, ahead_bytes=48 << 20):
        monkeypatch.setattr(hevc, "FRAMES_AHEAD", ahead)
        monkeypatch.setattr(hevc, "PARSE_AHEAD", parse_ahead)
        monkeypatch.setattr(hevc, "FRAMES_AHEAD_BYTES", ahead_bytes)
        with bitsr.open(path, threads=2, idle_parser=idle) as video:
            out = [(f.poc, f.decode_index, f.priors.cvs_index, f.pts, f.priors.arrays["mv"].tobytes(),
                    f.yuv()[0].tobytes()) for f in video]
            return out, list(video.warnings)

    not_ready = []
    ready = hevc.HevcSource._ready
    monkeypatch.setattr(hevc.HevcSource, "_ready", lambda self, f: ready(self, f) or not_ready.append(f) or False)
    now = run(0, parse_ahead=0)
    assert len(now[0]) > 20
    assert run(0) == now
    assert run(8) == now
    assert run(8, parse_ahead=0) == now
    assert run(8, parse_ahead=100) == now  # every packet parsed before FFmpeg gets the first
    assert run(8, ahead_bytes=1) == now  # the byte bound: 2 frames
    assert run(8, idle=False) == now  # the parser at normal priority (the upscaling pipeline)
    not_ready.clear()
    assert run(10**6, parse_ahead=0, ahead_bytes=1 << 40) == now  # (the parser not ahead: frames wait)
    assert not_ready, "some frame waited for its priors"


@pytest.mark.parametrize("container", ["mp4", "mkv", "mov"])
def test_containers(container, tmp_path):
    """MP4/MKV/MOV muxed by PyAV: same arrays as the raw stream inside them, same pixels, and
    container timestamps: frame i of a constant-rate clip is at i / fps."""
    fps = 30  # not FFmpeg's raw-stream default of 25
    path, src = make(f"cont_{container}", 20, params="bframes=3:scenecut=0", container=container, fps=fps)
    raw = tmp_path / "same.hevc"
    container_to_annexb(path, raw)
    frames = check_stream(path, {0: src})
    with bitsr.open(raw) as video:
        assert video.fps == fps
        raw_frames = list(video)
    assert len(raw_frames) == len(frames) == 20
    for f, r in zip(frames, raw_frames):
        assert (f.poc, f.decode_index) == (r.poc, r.decode_index)
        assert all(np.array_equal(p, q) for p, q in zip(f.yuv(), r.yuv()))
        assert r.pts is None and r.time == f.display_index / fps
        assert f.pts is not None and f.time_base is not None
        assert abs(f.time - f.display_index / fps) <= float(f.time_base) / 2 + 1e-9
        assert f.time == float(f.pts * f.time_base)
    from_container = list(bitsr.extract(path))
    from_raw = list(bitsr.extract(raw))
    assert len(from_container) == len(from_raw) == 20
    for p, q in zip(from_container, from_raw):
        assert (p.poc, p.nal_type) == (q.poc, q.nal_type)
        for name in BLOCK_ARRAYS:
            np.testing.assert_array_equal(p.arrays[name], q.arrays[name], err_msg=name)
    with bitsr.open(path) as video:
        assert video.fps == fps and isinstance(video.time_base, Fraction)
        assert (video.width, video.height) == (176, 144)
