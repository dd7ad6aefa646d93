"""bitsr.open keeps memory flat on a long stream: nothing accumulates per frame."""
from __future__ import annotations

import gc
import tracemalloc

from streams import make_hevc

import bitsr
import bitsr.io.hevc
from bitsr.io.hevc import make_decoder

FRAMES = 360


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_long_stream_memory_is_flat():
    path = make_hevc("long", frames=FRAMES, width=128, height=96,
                     x265_params="bframes=4:b-pyramid=1:keyint=60", source="bikes")
    marks = {}
    largest_state = 0
    tracemalloc.start()
    try:
        with bitsr.open(path) as video:
            for frame in video:
                frame.yuv(), frame.rgb, frame.priors.arrays  # touch everything a user would
                src = video._source
                state = (len(src._pending), len(src._by_packet), len(src._order), len(src._in_order))
                largest_state = max(largest_state, *state)
                if frame.display_index in (FRAMES // 3, FRAMES - 1):
                    gc.collect()
                    marks[frame.display_index] = (_rss(), tracemalloc.get_traced_memory()[0])
            assert video.num_frames == FRAMES
    finally:
        tracemalloc.stop()
    (rss0, py0), (rss1, py1) = marks[FRAMES // 3], marks[FRAMES - 1]
    # Pairing state is bounded by the DPB and FFmpeg's frame-thread delay.
    assert largest_state <= 24
    # Python allocations: a leaked dict entry or tuple per frame would add > 50 kB over 240
    # frames; keeping each frame's priors alive adds ~0.9 MB.
    assert py1 - py0 < 32 * 1024, f"Python heap grew {py1 - py0} bytes"
    # Whole process (FFmpeg frames, parser pictures, PyAV opaque refs): keeping the decoded
    # frames alive would add > 4 MB.
    assert rss1 - rss0 < 1536 * 1024, f"RSS grew {rss1 - rss0} bytes"


def test_extract_keeps_no_finished_pictures(monkeypatch):
    """bitsr.extract (raw and container) lets go of every picture no longer referenced: the
    parser's output-order queue, which extract does not use, must not fill up."""
    raw = make_hevc("long", frames=FRAMES, width=128, height=96,
                    x265_params="bframes=4:b-pyramid=1:keyint=60", source="bikes")
    mkv = make_hevc("long", frames=FRAMES, width=128, height=96,
                    x265_params="bframes=4:b-pyramid=1:keyint=60", source="bikes", container="mkv")
    decoders = []

    def capture(*args, **kw):
        decoders.append(make_decoder(*args, **kw))
        return decoders[-1]

    monkeypatch.setattr(bitsr.io.hevc, "make_decoder", capture)
    for path in (raw, mkv):
        n = 0
        for _ in bitsr.extract(path):
            n += 1
            assert decoders[-1].num_pending_output <= 1
        assert n == FRAMES
