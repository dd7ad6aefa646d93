"""bitsr.open: decoded frames in display order, each with the priors of its picture.

One pass over the container's packets feeds both PyAV's decoder (pixels) and bitsr's
parser (priors). The parser simulates the DPB output process, so its pictures come out
in the same order as FFmpeg's frames; a frame is paired with the next picture in that
order, and with container timestamps the pairing is checked picture by picture.
"""
from __future__ import annotations

import collections
import os
from fractions import Fraction
from typing import Iterator, Optional

import av
import numpy as np

from .. import _core
from ..priors import PicturePriors, is_raw_hevc, make_decoder
from .demux import hevc_stream


class Frame:
    """One output picture: pixels from FFmpeg, priors from the bitstream."""

    __slots__ = ("display_index", "priors", "_av", "pts", "time_base", "_rgb")

    def __init__(self, display_index: int, priors: PicturePriors, av_frame: "av.VideoFrame", pts, time_base):
        self.display_index = display_index
        self.priors = priors
        self._av = av_frame
        self.pts = pts
        self.time_base = time_base
        self._rgb = None

    poc = property(lambda self: self.priors.poc)
    decode_index = property(lambda self: self.priors.decode_index)
    picture_type = property(lambda self: self.priors.picture_type)
    nal_type = property(lambda self: self.priors.nal_type)
    temporal_id = property(lambda self: self.priors.temporal_id)
    width = property(lambda self: self._av.width)
    height = property(lambda self: self._av.height)

    @property
    def time(self) -> Optional[float]:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def rgb(self) -> np.ndarray:
        """uint8 [H, W, 3], conformance-cropped."""
        if self._rgb is None:
            self._rgb = self._av.to_ndarray(format="rgb24")
        return self._rgb

    def yuv(self) -> tuple[np.ndarray, ...]:
        """Decoded planes (Y, Cb, Cr; Y only for 4:0:0) at native bit depth: uint8, or uint16
        for deeper video. Conformance-cropped."""
        f = self._av
        deep = self.priors.bit_depth > 8 or self.priors.bit_depth_chroma > 8
        dtype = np.uint16 if deep else np.uint8
        out = []
        for plane in f.planes:
            w, h = plane.width, plane.height
            a = np.frombuffer(plane, dtype=dtype).reshape(h, plane.line_size // dtype().itemsize)[:, :w]
            out.append(a.copy())
        return tuple(out)

    @property
    def av_frame(self) -> "av.VideoFrame":
        return self._av

    def __repr__(self) -> str:
        return f"<bitsr.Frame display_index={self.display_index} poc={self.poc} type={self.picture_type} {self.width}x{self.height}>"


class Reader:
    """Iterates the frames of an HEVC file in display order. Use as a context manager.

    ``strict=False`` (the default) conceals damage: damaged slices come back as pictures
    whose ``priors.valid`` is False there, packets FFmpeg rejects yield no frame, and when
    FFmpeg and the parser disagree on which pictures exist the frames are re-paired by
    timestamp (what was dropped is listed in ``warnings``). ``strict=True`` raises
    :class:`bitsr.BitstreamError` instead.
    """

    MAX_UNPAIRED = 128  # parsed pictures waiting for FFmpeg's frame

    def __init__(self, path: str | os.PathLike, *, strict: bool = False, threads: int = 0, **limits):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(2, "no such file", self.path)
        self.strict = strict
        self.warnings: list[str] = []  # concealment mode: frames/pictures that could not be paired
        self._decoder = make_decoder(strict, **limits)
        self._container = av.open(self.path)
        try:
            self.stream = hevc_stream(self._container)
            cc = self.stream.codec_context
            cc.thread_type = "AUTO"
            if threads:
                cc.thread_count = threads
            extra = bytes(cc.extradata or b"")
            self._length_size = 0
            if extra[:1] == b"\x01" and len(extra) >= 23:
                self._length_size = self._decoder.push_hvcc(extra)
            elif extra:
                self._decoder.push_annexb(extra, final=True)
        except Exception:
            self._container.close()
            self._container = None
            raise
        self._raw = is_raw_hevc(self.path)
        self._pics: collections.deque = collections.deque()
        self._pts_by_decode: dict[int, Optional[int]] = {}
        self._display_index = 0

    # metadata
    @property
    def time_base(self) -> Optional[Fraction]:
        return self.stream.time_base

    @property
    def fps(self) -> Optional[Fraction]:
        return self.stream.average_rate or self.stream.guessed_rate

    @property
    def width(self) -> int:
        return self.stream.codec_context.width

    @property
    def height(self) -> int:
        return self.stream.codec_context.height

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _take_pictures(self, pts=None) -> None:
        # A packet is one access unit, finished by push_packet: the pictures it produced
        # carry its pts (a damaged packet may produce none, or more than one).
        for pic in self._decoder.pop_decoded():
            self._pts_by_decode[pic.decode_index] = pts
            pts = None
        self._pics.extend(self._decoder.pop_output())
        # FFmpeg lags behind by its frame threads and reorder delay, never by this much: the
        # oldest pictures have no frame coming (a damaged stream); bound the memory they hold.
        while len(self._pics) > self.MAX_UNPAIRED:
            pic = self._pics.popleft()
            self._pts_by_decode.pop(pic.decode_index, None)
            msg = f"{self.path}: parsed picture POC {pic.poc} got no decoded frame"
            if self.strict:
                raise _core.BitstreamError(msg)
            self._warn(msg + "; dropped")

    def _warn(self, msg: str) -> None:
        if len(self.warnings) < 1000:
            self.warnings.append(msg)

    def _pair(self, f: "av.VideoFrame") -> Optional[Frame]:
        """The parsed picture of FFmpeg's next frame. Strict mode raises when the two disagree;
        concealment mode re-synchronises on timestamps, drops pictures FFmpeg did not output,
        and skips (returns None for) a frame the parser has no picture for."""
        if not self._pics:
            self._decoder.bump_one()
            self._take_pictures()
        if not self._pics:
            msg = f"{self.path}: FFmpeg output a frame (pts {f.pts}) for which the parser has no picture"
            if self.strict:
                raise _core.BitstreamError(msg)
            self._warn(msg + "; frame skipped")
            return None
        pic = self._pics[0]
        pts = self._pts_by_decode.get(pic.decode_index)
        if pts is not None and f.pts is not None and pts != f.pts:
            msg = (f"{self.path}: frame pts {f.pts} does not match the parsed picture's packet pts {pts} "
                   f"(POC {pic.poc})")
            if self.strict:
                raise _core.BitstreamError(msg)
            # a later picture with the frame's pts: FFmpeg dropped the ones before it
            for k in range(1, len(self._pics)):
                if self._pts_by_decode.get(self._pics[k].decode_index) == f.pts:
                    for _ in range(k):
                        self._pts_by_decode.pop(self._pics.popleft().decode_index, None)
                    self._warn(f"{self.path}: {k} parsed picture(s) had no decoded frame; dropped")
                    break
            else:
                self._warn(msg + "; paired in output order")
            pic = self._pics[0]
            pts = self._pts_by_decode.get(pic.decode_index)
        self._pics.popleft()
        self._pts_by_decode.pop(pic.decode_index, None)
        fr = Frame(self._display_index, PicturePriors(pic), f, f.pts if f.pts is not None else pts, self.time_base)
        self._display_index += 1
        return fr

    def __iter__(self) -> Iterator[Frame]:
        if self._container is None:
            raise ValueError("reader is closed")
        dec = self._decoder
        cc = self.stream.codec_context
        for packet in self._container.demux(self.stream):
            if not packet.size:  # the demuxer's end-of-stream marker; flushed below
                continue
            dec.push_packet(packet, length_size=self._length_size)
            self._take_pictures(packet.pts)
            for f in self._decode(cc, packet):
                fr = self._pair(f)
                if fr is not None:
                    yield fr
        dec.flush()
        self._take_pictures()
        for f in self._decode(cc, None):
            fr = self._pair(f)
            if fr is not None:
                yield fr
        self.close()

    def _decode(self, cc, packet) -> list:
        """FFmpeg's frames for one packet; in concealment mode a packet FFmpeg rejects
        yields no frame instead of ending the stream."""
        try:
            return cc.decode(packet)
        except av.error.InvalidDataError as e:
            if self.strict:
                raise
            self._warn(f"{self.path}: FFmpeg: {e}")
            return []


def open(path: str | os.PathLike, *, strict: bool = False, threads: int = 0, **limits) -> Reader:  # noqa: A001
    """Opens an HEVC file (raw .hevc/.265/.h265, MP4, MOV, MKV) for reading frames with priors.

    >>> with bitsr.open("clip.mp4") as video:
    ...     for frame in video:
    ...         frame.rgb, frame.priors.mv
    """
    return Reader(path, strict=strict, threads=threads, **limits)
