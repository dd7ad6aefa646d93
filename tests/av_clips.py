"""Clips with audio and subtitles for the upscaling tests: HEVC (or H.264) video, real content via
streams.source_frames, a generated tone as AAC/Opus/PCM, and a text subtitle, muxed with PyAV.
Optional per-frame timestamps make variable-frame-rate clips. Cached per parameters."""
from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np
from streams import _CACHE, content_origin, source_frames

SUBTITLE_TEXT = "bitsr subtitle"
SUBTITLE_MS = (200, 700)  # start, end


def make_av_clip(name: str, frames: int = 20, width: int = 96, height: int = 64, container: str = "mp4",
                 audio: Optional[str] = "aac", subtitles: bool = True, fps: int = 25,
                 pts: Optional[Sequence[int]] = None, time_base: Optional[Fraction] = None,
                 x265_params: str = "bframes=3", source: str = "city", codec: str = "libx265") -> Path:
    """HEVC + ``audio`` ('aac', 'libopus', 'pcm_u8' or None) + a text subtitle ('mov_text' in
    MP4/MOV, SubRip in MKV). ``pts``/``time_base``: frame timestamps (default i / fps).
    ``codec='libx264'`` makes H.264 video instead (B-frames on)."""
    key = hashlib.sha1(repr((frames, width, height, container, audio, subtitles, fps, pts and tuple(pts),
                             time_base, x265_params, source, codec, content_origin(source))).encode()).hexdigest()[:12]
    _CACHE.mkdir(parents=True, exist_ok=True)
    path = _CACHE / f"{name}-{key}.{container}"
    if path.exists():
        return path
    tb = time_base or Fraction(1, fps)
    pts = list(pts) if pts is not None else [round(i / (fps * tb)) for i in range(frames)]
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.{container}")
    fmt = {"mp4": "mp4", "mov": "mov", "mkv": "matroska"}[container]
    with av.open(str(tmp), "w", format=fmt) as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.time_base = tb
        v.codec_context.time_base = tb
        if codec == "libx265":
            v.options = {"x265-params": "log-level=error:crf=30:" + x265_params, "preset": "ultrafast"}
        else:
            v.options = {"crf": "30", "preset": "veryfast", "bf": "2"}
        a = None
        if audio:
            a = out.add_stream(audio, rate=48000)
            a.layout = "stereo" if audio != "pcm_u8" else "mono"
        s = None
        if subtitles:
            s = out.add_mux_stream("subrip" if container == "mkv" else "mov_text")
            s.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(source_frames(frames, width, height, source)):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = pts[i], tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        if a is not None:
            end = float((pts[-1] + (pts[-1] - pts[-2] if frames > 1 else 1)) * tb)
            t = 0
            while t < end * 48000:
                x = (0.3 * np.sin(np.arange(t, t + 960) / 48000 * 2 * np.pi * 440)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = 48000, t, Fraction(1, 48000)
                out.mux(a.encode(af))
                t += 960
            out.mux(a.encode(None))
        if s is not None:
            txt = SUBTITLE_TEXT.encode()
            pk = av.Packet(len(txt).to_bytes(2, "big") + txt if container != "mkv" else txt)
            pk.stream = s
            pk.pts = pk.dts = SUBTITLE_MS[0]
            pk.duration = SUBTITLE_MS[1] - SUBTITLE_MS[0]
            pk.time_base = Fraction(1, 1000)
            out.mux(pk)
    os.replace(tmp, path)
    return path


def stream_summary(path) -> dict:
    """Per stream type: codec, packet count, sorted packet times (s), payloads for subtitles;
    'frames': decoded video frame times and size."""
    out = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            if s.type in out:
                continue
            c.seek(0)
            pk = [p for p in c.demux(s) if p.size]
            out[s.type] = {
                "codec": s.codec_context.name,
                "packets": len(pk),
                "times": sorted(float(p.pts * p.time_base) for p in pk if p.pts is not None),
                "durations": [float(p.duration * p.time_base) for p in pk],
                "payloads": [bytes(p) for p in pk] if s.type == "subtitle" else None,
                "sample_rate": getattr(s.codec_context, "sample_rate", None),
            }
        c.seek(0)
        fr = [(float(f.pts * f.time_base), f.width, f.height) for f in c.decode(video=0)]
        out["frames"] = {"times": [t for t, _, _ in fr], "sizes": {(w, h) for _, w, h in fr},
                         "rate": c.streams.video[0].average_rate}
    return out


def subtitle_text(payload: bytes, codec: str) -> str:
    if codec == "mov_text":
        return payload[2:2 + int.from_bytes(payload[:2], "big")].decode()
    return payload.decode()


def tiny_checkpoint(scale: int = 2, align: str = "mv", **model) -> Path:
    """A small BitVSR with seeded random weights, saved as a ``bitsr train`` checkpoint (the
    pipeline tests need a network, not a trained one). Cached per parameters."""
    import torch

    from bitsr.models import build_model
    from bitsr.models.checkpoint import CKPT_FORMAT, save_checkpoint

    cfg_model = {"type": "BitVSR", "scale": scale, "channels": 8, "branch_blocks": [1, 1, 2], **model}
    torch.manual_seed(0)
    net = build_model(cfg_model)
    # keyed by the parameters' names and shapes too: a changed arch never loads stale weights
    shapes = sorted((k, tuple(v.shape)) for k, v in net.state_dict().items())
    key = hashlib.sha1(repr((cfg_model, align, shapes)).encode()).hexdigest()[:12]
    _CACHE.mkdir(parents=True, exist_ok=True)
    path = _CACHE / f"tiny-bitvsr-{key}.pt"
    if not path.exists():
        save_checkpoint(path.with_name(f"{path.stem}.{os.getpid()}.pt"),
                        {"format": CKPT_FORMAT, "config": {"model": cfg_model, "data": {"align": align}},
                         "model": net.state_dict()})
        os.replace(path.with_name(f"{path.stem}.{os.getpid()}.pt"), path)
    return path
