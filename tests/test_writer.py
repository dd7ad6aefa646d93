"""bitsr.io.writer on its own: sizes, timestamps, subtitle text conversion, argument errors."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from bitsr.io.writer import StreamNote, VideoWriter, _TextSubtitle, output_format


def _frames(path):
    with av.open(str(path)) as c:
        return [(f.width, f.height, float(f.pts * f.time_base)) for f in c.decode(video=0)]


def test_odd_frames_cut_other_sizes_scaled(tmp_path):
    w = VideoWriter(tmp_path / "o.mkv", 64, 48, rate=Fraction(25), preset="ultrafast")
    rng = np.random.default_rng(0)
    w.write(rng.integers(0, 255, (49, 65, 3), dtype=np.uint8))  # one pixel too many: cut
    with pytest.warns(StreamNote, match="scaled"):
        w.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    w.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))  # warned once
    w.close()
    assert [f[:2] for f in _frames(tmp_path / "o.mkv")] == [(64, 48)] * 3


def test_missing_or_repeated_pts_keep_the_nominal_rate(tmp_path):
    w = VideoWriter(tmp_path / "o.mp4", 64, 48, rate=Fraction(25), time_base=Fraction(1, 1000), preset="ultrafast")
    for pts in (0, 40, None, 80, 300):  # None and the repeated 80 become +40 ms
        w.write(np.zeros((48, 64, 3), np.uint8), pts)
    w.close()
    assert [f[2] for f in _frames(tmp_path / "o.mp4")] == pytest.approx([0, 0.04, 0.08, 0.12, 0.3])


@pytest.mark.parametrize("src,dst,data,text", [
    ("subrip", "mov_text", b"<i>hello</i> world", b"\x00\x0bhello world"),
    ("mov_text", "subrip", b"\x00\x05hello\x00\x00\x00\x0cstyl", b"hello"),
    ("ass", "mov_text", b"0,0,Default,,0,0,0,,{\\i1}two\\Nlines", b"\x00\x09two\nlines"),
])
def test_text_subtitle_conversion(src, dst, data, text):
    assert _TextSubtitle(src, dst)(data) == text


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "o.mp4", 63, 48, rate=Fraction(25))
    with pytest.raises(ValueError, match="encoder"):
        VideoWriter(tmp_path / "o.mp4", 64, 48, rate=Fraction(25), encoder="mpeg4")
    with pytest.raises(ValueError, match="container"):
        output_format(tmp_path / "o.avi")
    assert output_format("x.MKV") == "matroska" and output_format("x.m4v") == "mp4"
