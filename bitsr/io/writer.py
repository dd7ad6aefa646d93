"""Writing upscaled video: RGB frames encoded with libx265/libx264, and the source's audio and
subtitle streams remuxed beside them (PyAV).

MP4/MOV are written fragmented (a fragment per keyframe and at least every second, flushed to
disk), so even a killed process leaves a playable file; Matroska is playable up to its last
cluster anyway. Source timestamps are kept: each frame is encoded with its own pts in the
source's time base (variable frame rate survives), and copied packets keep theirs.

Streams that cannot go into the output container as they are:
  * audio is transcoded to AAC (FLAC for Matroska is never needed: it takes every codec here);
  * text subtitles (mov_text, SubRip, ASS/SSA, WebVTT) are converted to the container's text
    format (mov_text for MP4/MOV, SubRip for Matroska), keeping the text and dropping styling;
  * bitmap subtitles, attachments, data and extra video streams are dropped.
Each such decision is reported as a :class:`StreamNote` warning and listed in ``notes``.
"""
from __future__ import annotations

import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from .paths import is_image_sequence

ENCODERS = ("libx265", "libx264")
DEFAULT_CRF = {"libx265": 22, "libx264": 18}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_TEXT_SUBS = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}
# AVColorSpace -> the matrix swscale uses for RGB <-> YUV (SWS_CS_*); anything else is BT.601,
# which is also what FFmpeg assumed when it converted an untagged source to RGB.
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_AVCOL_SPC_SMPTE170M = 6
_FRAGMENT_US = 1_000_000


class StreamNote(UserWarning):
    """A source stream that was transcoded, converted or dropped instead of copied."""


def output_format(path: str | os.PathLike) -> str:
    """FFmpeg muxer name for an output path (by suffix; ``image2`` for a frame pattern)."""
    if is_image_sequence(path):
        return "image2"
    ext = Path(path).suffix.lower()
    if ext not in _FORMATS:
        raise ValueError(f"{os.fspath(path)}: unsupported output container {ext or '(none)'!r} "
                         f"(use {', '.join(sorted(_FORMATS))}, or a frame pattern such as frames/%06d.png)")
    return _FORMATS[ext]


class ImageSequenceWriter:
    """One lossless RGB PNG per frame, named by a printf pattern (``frames/%06d.png``: 000001.png,
    000002.png, ... numbered from 1 as ffmpeg does). Same interface as :class:`VideoWriter`;
    audio and subtitles have nowhere to go and are reported in ``notes``."""

    def __init__(self, pattern: str | os.PathLike, width: int, height: int, *, source_streams: int = 0):
        self.path = Path(pattern)
        self.width, self.height = width, height
        self.frames_written = 0
        self.notes = ([f"{source_streams} audio/subtitle stream(s) not written: an image sequence holds frames only"]
                      if source_streams else [])

    def write(self, rgb: np.ndarray, pts: Optional[int] = None) -> None:
        name = self.path.name % (self.frames_written + 1)
        tmp = self.path.with_name(name + ".part")
        with av.open(os.fspath(tmp), "w", format="image2") as c:
            s = c.add_stream("png")
            s.width, s.height, s.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        os.replace(tmp, self.path.with_name(name))  # a reader never sees half a file
        self.frames_written += 1

    def close(self, complete: bool = True) -> None:
        pass


def _packet_time(p: "av.Packet") -> Optional[float]:
    t = p.pts if p.pts is not None else p.dts
    return None if t is None or p.time_base is None else float(t * p.time_base)


class _TextSubtitle:
    """Packet-level conversion between text subtitle formats: the text survives, styling not."""

    _ASS_TAG = re.compile(r"\{[^}]*\}")
    _HTML_TAG = re.compile(r"<[^>]*>")

    def __init__(self, src_codec: str, dst_codec: str):
        self.src, self.dst = src_codec, dst_codec

    def text(self, data: bytes) -> str:
        if self.src == "mov_text":
            n = int.from_bytes(data[:2], "big")
            s = data[2:2 + n].decode("utf-8", "replace")
        else:
            s = data.decode("utf-8", "replace")
        if self.src in ("ass", "ssa"):  # ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text
            s = self._ASS_TAG.sub("", s.split(",", 8)[-1]).replace("\\N", "\n").replace("\\n", "\n")
        elif self.src in ("subrip", "srt", "webvtt"):
            s = self._HTML_TAG.sub("", s)
        return s

    def __call__(self, data: bytes) -> bytes:
        t = self.text(data).encode("utf-8")
        if self.dst == "mov_text":
            return len(t).to_bytes(2, "big") + t
        return t


class _Passthrough:
    """Copies (or converts) the non-video streams of the source into the output, in step with
    the video so the muxer's interleaving queue stays short."""

    def __init__(self, out: "av.container.OutputContainer", src_path: str, video_index: Optional[int]):
        self.notes: list[str] = []
        self._out = out
        self._src = av.open(src_path)
        supported = out.supported_codecs
        text_target = "mov_text" if "mov_text" in supported else "subrip"
        self._routes: dict[int, tuple] = {}
        for s in self._src.streams:
            name = s.codec_context.name if s.codec_context is not None else (s.codec_name or "?")
            what = f"stream #{s.index} ({s.type} {name})"
            if s.type == "video" and s.index == video_index:
                continue
            if s.type == "audio":
                if name in supported:
                    self._routes[s.index] = ("copy", self._copy_stream(s))
                else:
                    dec = s.codec_context
                    enc = out.add_stream("aac", rate=dec.sample_rate or 48000)
                    # AAC needs a channel order; an unordered source layout gets the default one.
                    enc.layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(dec.layout.nb_channels, "stereo")
                    self._copy_metadata(s, enc)
                    self._routes[s.index] = ("transcode", enc)
                    self._note(f"{what}: {out.format.name} cannot hold {name}; transcoded to AAC")
            elif s.type == "subtitle":
                if name in supported:
                    self._routes[s.index] = ("copy", self._copy_stream(s))
                elif name in _TEXT_SUBS:
                    o = out.add_mux_stream(text_target)
                    o.time_base = s.time_base
                    self._copy_metadata(s, o)
                    self._routes[s.index] = ("text", o, _TextSubtitle(name, text_target))
                    self._note(f"{what}: {out.format.name} cannot hold {name}; converted to "
                               f"{text_target} (text only, styling dropped)")
                else:
                    self._note(f"{what}: {out.format.name} cannot hold {name} subtitles; dropped "
                               f"(write .mkv to keep them)")
            else:
                self._note(f"{what}: not copied (only the upscaled video, audio and subtitle streams are)")
        src_streams = [self._src.streams[i] for i in self._routes]
        self._packets = self._src.demux(src_streams) if src_streams else iter(())
        self._pending: Optional[av.Packet] = None
        self._done = not src_streams

    def _note(self, msg: str) -> None:
        self.notes.append(msg)

    @staticmethod
    def _copy_metadata(src, dst) -> None:
        for k in ("language", "title"):
            if k in src.metadata:
                dst.metadata[k] = src.metadata[k]

    def _copy_stream(self, s):
        o = self._out.add_stream_from_template(s)
        self._copy_metadata(s, o)
        return o

    def _next(self) -> Optional[av.Packet]:
        if self._pending is None and not self._done:
            for p in self._packets:
                if p.size:
                    self._pending = p
                    return p
            self._done = True
        return self._pending

    def pump(self, until: Optional[float]) -> None:
        """Muxes source packets up to time ``until`` (seconds; None: all)."""
        while (p := self._next()) is not None:
            t = _packet_time(p)
            if until is not None and t is not None and t > until:
                return
            self._pending = None
            self._mux(p)

    def _mux(self, p: "av.Packet") -> None:
        route = self._routes[p.stream.index]
        if route[0] == "copy":
            p.stream = route[1]
            self._out.mux(p)
        elif route[0] == "text":
            q = av.Packet(route[2](bytes(p)))
            q.pts, q.dts, q.duration, q.time_base = p.pts, p.dts, p.duration, p.time_base
            q.stream = route[1]
            self._out.mux(q)
        else:
            enc = route[1]
            for f in p.decode():
                f.pts = None if f.pts is None else int(round(f.pts * f.time_base * enc.rate))
                f.time_base = Fraction(1, enc.rate)
                self._out.mux(enc.encode(f))

    def finish(self, until: Optional[float]) -> None:
        self.pump(until)
        for route in self._routes.values():
            if route[0] == "transcode":
                self._out.mux(route[1].encode(None))

    def close(self) -> None:
        self._src.close()


class VideoWriter:
    """Encodes RGB frames into ``path`` (MP4/MOV/MKV) and copies the other streams of ``source``
    (all but its video stream number ``source_video``, the one being replaced).

    ``time_base``: the time base of the ``pts`` given to :meth:`write` (the source's, so its
    timestamps survive exactly); ``rate``: nominal frame rate (used when a pts is missing).
    ``color``: the source's (colorspace, color_primaries, color_trc) as FFmpeg ints; frames are
    converted to YUV with the same matrix FFmpeg used to make the RGB, and tagged accordingly.
    ``notes`` lists what happened to source streams that were not copied as they are (also
    :class:`StreamNote` warnings unless ``warn=False``).
    Use as a context manager, or call :meth:`close`; closing after an exception still finalizes
    the file (with ``complete=False`` the copied streams stop where the video stops).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, *, rate: Fraction,
                 time_base: Optional[Fraction] = None, encoder: str = "libx265", crf: Optional[int] = None,
                 preset: Optional[str] = None, threads: int = 0, color: tuple = (2, 2, 2),
                 source: Optional[str | os.PathLike] = None, source_video: Optional[int] = None,
                 pix_fmt: str = "yuv420p", warn: bool = True):
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        if width % 2 or height % 2:
            raise ValueError(f"{pix_fmt} needs even dimensions, got {width}x{height}")
        fmt = output_format(path)
        self.path = Path(path)
        self.width, self.height = width, height
        self._resized = False
        self.notes: list[str] = []
        self.frames_written = 0
        self.rate = Fraction(rate) if rate else Fraction(25)
        self.time_base = Fraction(time_base) if time_base else 1 / self.rate
        self._tick = max(1, round(1 / (self.rate * self.time_base)))
        self._last_pts: Optional[int] = None
        self._threads = threads
        # Streams are interleaved here (copied packets follow the video), so the muxer need not
        # wait for sparse streams such as subtitles: its default would buffer up to 10 s.
        opts = {"max_interleave_delta": str(_FRAGMENT_US // 2)}
        if fmt in ("mp4", "mov"):
            opts.update(movflags="frag_keyframe+empty_moov+default_base_moof+delay_moov",
                        frag_duration=str(_FRAGMENT_US), flush_packets="1")
        self._out = av.open(os.fspath(path), "w", format=fmt, options=opts)
        self._pass: Optional[_Passthrough] = None
        try:
            self._stream = self._add_video(encoder, width, height, crf, preset, threads, color, pix_fmt, fmt)
            if source is not None:
                self._pass = _Passthrough(self._out, os.fspath(source), source_video)
                self.notes = self._pass.notes
                if warn:
                    for msg in self.notes:
                        warnings.warn(msg, StreamNote, stacklevel=2)
        except BaseException:
            self._out.close()
            if self._pass is not None:
                self._pass.close()
            raise
        self._closed = False

    def _add_video(self, encoder, width, height, crf, preset, threads, color, pix_fmt, fmt):
        s = self._out.add_stream(encoder, rate=self.rate)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        s.time_base = self.time_base
        cc = s.codec_context
        cc.time_base = self.time_base
        spc, prim, trc = color
        self._matrix = _SWS_MATRIX.get(spc, 5)
        # Tag what the pixels are: the source's matrix, or BT.601 when it had none (that is the
        # matrix its RGB was made with).
        cc.colorspace = spc if spc in _SWS_MATRIX else _AVCOL_SPC_SMPTE170M
        cc.color_primaries, cc.color_trc = prim, trc
        cc.color_range = 1  # limited ("MPEG"), what the conversion below writes
        opts = {"crf": str(DEFAULT_CRF[encoder] if crf is None else crf)}
        if preset:
            opts["preset"] = preset
        if encoder == "libx265":
            params = ["log-level=error"]
            if threads:  # x265 runs its own pool; FFmpeg's thread_count does not reach it
                params += [f"pools={threads}", f"frame-threads={min(threads, 4)}"]
            opts["x265-params"] = ":".join(params)
            if fmt in ("mp4", "mov"):
                s.codec_tag = "hvc1"  # parameter sets out of band; the tag Apple players need
        elif threads:
            cc.thread_count = threads
        s.options = opts
        return s

    # -- writing -----------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts: Optional[int] = None) -> None:
        """Encodes one uint8 [H, W, 3] frame with timestamp ``pts`` (in ``time_base``; None:
        one nominal frame after the previous). A frame one pixel larger than the output (odd
        sizes) is cut; any other size is scaled to the output's (once with a warning)."""
        if self._closed:
            raise ValueError("writer is closed")
        if self._last_pts is None:
            pts = 0 if pts is None else int(pts)
        elif pts is None or pts <= self._last_pts:  # missing or non-increasing: keep the nominal rate
            pts = self._last_pts + self._tick
        self._last_pts = int(pts)
        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            if h - self.height in (0, 1) and w - self.width in (0, 1):
                rgb = rgb[:self.height, :self.width]  # odd size cut to even for 4:2:0
            elif not self._resized:  # the source changed resolution mid-stream
                self._resized = True
                warnings.warn(f"frame {self.frames_written} is {w}x{h}; scaled to the output's "
                              f"{self.width}x{self.height}", StreamNote, stacklevel=2)
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        f = f.reformat(width=self.width, height=self.height, format=self._stream.pix_fmt,
                       dst_colorspace=self._matrix, dst_color_range=1, interpolation="BICUBIC",
                       threads=self._threads)
        f.pts, f.time_base = self._last_pts, self.time_base
        self._mux_video(self._stream.encode(f))
        self.frames_written += 1
        if self._pass is not None:
            self._pass.pump(float(self._last_pts * self.time_base))

    def _mux_video(self, packets, flushing: bool = False) -> None:
        # x265 derives DTS from a B-frame delay it measures on its first frames; given fewer
        # frames than that delay (2) it adds an uninitialised value. Such a short stream cannot
        # be reordered, so DTS = PTS is right for it.
        short = flushing and self.frames_written <= 2
        for p in packets:
            if short or p.dts is None or p.dts > p.pts or p.pts - p.dts > 2 ** 31:
                p.dts = p.pts
            self._out.mux(p)

    @property
    def end_time(self) -> Optional[float]:
        """End of the last written frame, seconds."""
        if self._last_pts is None:
            return None
        return float((self._last_pts + self._tick) * self.time_base)

    def close(self, complete: bool = True) -> None:
        """Flushes the encoder and finalizes the file. ``complete=False`` (an interrupted run):
        copied streams end with the video instead of running to their own end."""
        if self._closed:
            return
        self._closed = True
        try:
            self._mux_video(self._stream.encode(None), flushing=True)
            if self._pass is not None:
                self._pass.finish(None if complete else self.end_time)
        finally:
            try:
                self._out.close()
            finally:
                if self._pass is not None:
                    self._pass.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)
