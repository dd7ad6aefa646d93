"""Reader options and Frame accessors: threads, strict, pixel formats, the neighbour-priors
hook, lifetime."""
from __future__ import annotations

import gc
import hashlib
import os

import numpy as np
import pytest
from conftest import CORPUS, requires_shared
from streams import make_hevc

import bitsr

PARAMS = "bframes=4:b-pyramid=1:scenecut=0"


def _summary(frames):
    frames = list(frames)
    md5 = hashlib.md5()
    for f in frames:
        for p in f.yuv():
            md5.update(p.tobytes())
    return [(f.poc, f.decode_index) for f in frames], md5.hexdigest()


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_threads_do_not_change_frames(threads):
    path = make_hevc("reader", frames=20, x265_params=PARAMS, source="bikes")
    with bitsr.open(path) as video:
        auto = _summary(video)
    with bitsr.open(path, threads=threads) as video:
        assert video.stream.codec_context.thread_count == threads
        assert _summary(video) == auto
        assert video.warnings == []


def test_strict_on_clean_stream():
    path = make_hevc("reader", frames=20, x265_params=PARAMS, source="bikes")
    with bitsr.open(path, strict=True) as video:
        frames = list(video)
    assert len(frames) == 20 and all(f.priors.complete for f in frames)


@requires_shared
@pytest.mark.parametrize("name, depth, chroma, planes", [
    ("calendar_q4_main10.hevc", 10, 1, 3),
    ("main12_176x144.h265", 12, 1, 3),
    ("main10_422_176x144.h265", 10, 2, 3),
    ("city_q2_yuv422.hevc", 8, 2, 3),
    ("yuv444_176x144.h265", 8, 3, 3),
    ("mono_176x144.h265", 8, 0, 1),
    ("calendar_crop350x226_notmvp.hevc", 8, 1, 3),
])
def test_yuv_layout(name, depth, chroma, planes):
    with bitsr.open(CORPUS / name) as video:
        f = next(iter(video))
    p = f.priors
    assert (p.bit_depth, p.chroma_format) == (depth, chroma)
    w, h = p.cropped_size
    assert (f.width, f.height) == (w, h) == (video.width, video.height)
    yuv = f.yuv()
    assert len(yuv) == planes
    sub = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma]
    assert yuv[0].shape == (h, w)
    for c in yuv[1:]:
        assert c.shape == (h // sub[1], w // sub[0])
    for c in yuv:
        assert c.dtype == (np.uint8 if depth == 8 else np.uint16) and c.flags.c_contiguous
        assert int(c.max()) < (1 << depth) and int(c.max()) >= (1 << (depth - 2))
    assert f.rgb.shape == (h, w, 3) and f.rgb.dtype == np.uint8


@pytest.mark.parametrize("lookahead", [0, 1, 3])
def test_neighbour_priors_window(lookahead):
    """Each frame carries the priors of `lookahead` frames before and after it in display
    order (Frame.window, the hook for flow between frames); the frames are unchanged."""
    path = make_hevc("reader", frames=20, x265_params=PARAMS, source="bikes")
    with bitsr.open(path, lookahead=0) as video:
        plain = [(f.decode_index, f.poc) for f in video]
    with bitsr.open(path, lookahead=lookahead) as video:
        frames = list(video)
    assert [(f.decode_index, f.poc) for f in frames] == plain
    for f in frames:
        win = f.window
        assert win.size == lookahead
        assert set(win.offsets()) == {k for k in range(-lookahead, lookahead + 1) if 0 <= f.display_index + k < 20}
        for k in win.offsets():
            assert win[k].decode_index == frames[f.display_index + k].decode_index
        with pytest.raises(ValueError, match="lookahead"):
            win[lookahead + 1]
    with pytest.raises(ValueError, match="lookahead"):
        bitsr.open(path, lookahead=17)


@pytest.mark.parametrize("params", [PARAMS, "bframes=4:b-pyramid=1:scenecut=0"])
def test_window_from_the_parsers_output_order(params, monkeypatch):
    """bitsr.open gives a frame as soon as the parser's output order knows the priors of the
    frames after it (HevcSource.peek_priors), without holding FFmpeg's later frames: the
    windows are the same as when each frame waits for the later frames themselves, and hold
    the very priors objects of those frames."""
    from bitsr.io import hevc

    path = make_hevc("reader" if params == PARAMS else "reader_bpyr", frames=20, x265_params=params,
                     source="bikes")

    def windows():
        with bitsr.open(path, lookahead=2, threads=2) as video:
            frames = list(video)
        assert all(f.window[k] is frames[f.display_index + k].priors for f in frames for k in f.window.offsets())
        return [[(k, f.window[k].decode_index) for k in f.window.offsets()] for f in frames]

    known = []
    peek = hevc.HevcSource.peek_priors
    monkeypatch.setattr(hevc.HevcSource, "peek_priors", lambda self, k: known.append(peek(self, k)) or known[-1])
    early = windows()
    assert any(p is not None for p in known), "no window was known from the parser"
    monkeypatch.setattr(hevc.HevcSource, "peek_priors", lambda self, k: None)
    assert windows() == early


def test_lifetime():
    """A Reader is one pass over the file, like a file object."""
    path = make_hevc("reader", frames=20, x265_params=PARAMS, source="bikes")
    video = bitsr.open(path)
    first = next(video)
    assert repr(first).startswith("<bitsr.Frame display_index=0 poc=0 type=I")
    for f in video:  # continues where next() stopped
        assert f.display_index == 1
        break
    assert [f.display_index for f in video] == list(range(2, 20))
    assert list(video) == []  # exhausted; the file is closed
    assert video._container is None
    video = bitsr.open(path)
    next(video)
    video.close()  # stopping early
    video.close()  # idempotent
    assert list(video) == []
    assert first.yuv()[0].shape == (144, 176)  # frames outlive the reader
    video = bitsr.open(path)
    video.close()
    with pytest.raises(ValueError, match="closed"):
        next(video)
    with bitsr.open(path) as video:
        assert sum(1 for _ in video) == 20


def _ffmpeg_threads() -> int:
    return sum(open(f"/proc/self/task/{t}/comm").read().startswith("av:") for t in os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux /proc")
@pytest.mark.parametrize("container", ["hevc", "mp4"])
def test_closing_frees_ffmpeg_decoder_threads(container):
    """close(), the end of a with block and the end of a loop free FFmpeg's decoder and its
    threads at once, not when the garbage collector runs: a process forked before that (a
    DataLoader worker) hung freeing a decoder whose threads it did not have."""
    path = make_hevc("reader_threads", frames=10, x265_params=PARAMS, source="bikes", container=container)
    gc.collect()
    gc.disable()
    try:
        base = _ffmpeg_threads()
        with bitsr.open(path, threads=2) as video:
            next(video)
            assert _ffmpeg_threads() > base  # frame threads running
        assert _ffmpeg_threads() == base
        assert (video.width, video.height) == (176, 144) and video.stream is None
        assert sum(1 for _ in video) == 0
        video = bitsr.open(path, threads=2)
        assert sum(1 for _ in video) == 10
        assert _ffmpeg_threads() == base
    finally:
        gc.enable()


def test_raw_stream_time():
    """Raw streams have no timestamps: time = display_index / fps, fps from the SPS VUI."""
    path = make_hevc("reader24", frames=12, x265_params=PARAMS, source="bikes", fps=24)
    with bitsr.open(path) as video:
        assert video.fps == 24
        frames = list(video)
    assert [f.pts for f in frames] == [None] * 12
    assert [f.time for f in frames] == [i / 24 for i in range(12)]


def test_pairing_keeps_a_picture_output_before_a_new_sequence_in_the_same_batch():
    """With parser workers, a picture the parser output before a CRA that starts a new
    sequence (after an EOS) can come out of the parser in one batch with that CRA. It was
    output, so the CRA does not discard it: FFmpeg's frame for it still gets its priors (a
    pairing that depended on thread timing once failed with a KeyError)."""
    import collections
    from types import SimpleNamespace

    from bitsr.io.hevc import CRA_NUT, HevcSource

    def pic(d, cvs, nal):
        return SimpleNamespace(decode_index=d, cvs_index=cvs, nal_type=nal, pic_output_flag=True, poc=d)

    class Parser:  # the decoder's queues, as the workers hand them out
        def __init__(self):
            self.decoded, self.output = [], []

        def pop_decoded(self):
            out, self.decoded = self.decoded, []
            return out

        def pop_output(self):
            out, self.output = self.output, []
            return out

    src = HevcSource.__new__(HevcSource)
    src.strict, src._warn = True, lambda m: pytest.fail(m)
    src._decoder = Parser()
    src._pending, src._by_packet, src._order = {}, {}, collections.deque()
    src._in_order, src._cvs_starts, src._peeked = set(), collections.deque(maxlen=8), {}
    src._packet_of = {d: (d, d) for d in range(3)}  # decode index -> (packet, pts)
    a, b, cra = pic(0, 0, 19), pic(1, 0, 1), pic(2, 1, CRA_NUT)
    src._decoder.decoded = [a, b]
    src._take_pictures()
    # b was output before the CRA (same batch); a waits for output and is discarded by it
    src._decoder.decoded, src._decoder.output = [cra], [b]
    src._take_pictures()
    assert 1 in src._pending and list(src._order) == [1]
    assert 0 not in src._pending  # discarded by design, silently


def test_raw_stream_without_container_matches_ffmpeg_demuxer():
    """A raw stream is decoded without FFmpeg's container (no stream probe): the same access
    units at the same byte offsets as its raw demuxer, the same frames, size, frame rate and
    time base."""
    import av

    from bitsr.io.hevc import RawHevcFile

    path = str(make_hevc("reader_raw", frames=14, x265_params=PARAMS, source="bikes", fps=24))
    with av.open(path, format="hevc") as c:
        s = c.streams.video[0]
        units = [(p.pos, bytes(p)) for p in c.demux(s) if p.size]
    with av.open(path, format="hevc") as c:
        s = c.streams.video[0]
        pixels = [f.to_ndarray(format="yuv420p").tobytes() for f in c.decode(s)]
        meta = (s.codec_context.width, s.codec_context.height, s.codec_context.framerate, s.time_base)
    raw = RawHevcFile(path)
    try:
        assert [(off, bytes(p)) for p, off in raw.packets()] == units
    finally:
        raw.close()
    with bitsr.open(path, threads=2) as video:
        assert (video.width, video.height, video.fps, video.time_base) == meta
        frames = list(video)
    assert [f.av_frame.to_ndarray(format="yuv420p").tobytes() for f in frames] == pixels
    assert [f.time for f in frames] == [i / 24 for i in range(14)]
