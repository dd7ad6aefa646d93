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
from ..priors import PicturePriors, is_raw_hevc
from .demux import hevc_stream


class Frame:
    """One output picture: pixels from FFmpeg, priors from the bitstream."""

    __slots__ = ("display_index", "priors", "_av", "pts", "time_base", "_rgb", "_window")

    def __init__(self, display_index: int, priors: PicturePriors, av_frame: "av.VideoFrame", pts, time_base):
        self.display_index = display_index
        self.priors = priors
        self._av = av_frame
        self.pts = pts
        self.time_base = time_base
        self._rgb = None
        self._window = None  # (size, {display offset: PicturePriors}), set by Reader.__iter__

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

    def flow(self, k: int = -1, **kwargs):
        """Motion-vector flow to the frame at display index ``display_index + k``:
        ``(flow [2,H,W], confidence [H,W])`` float32, see :func:`bitsr.flow.mv_flow` for
        ``factor``, ``interp`` and ``as_torch``. |k| is limited by the reader's ``lookahead``."""
        from ..flow import frame_flow

        return frame_flow(self, k, **kwargs)

    def maps(self, names=None, **kwargs):
        """Coding-structure maps of this frame, see :func:`bitsr.maps.maps`."""
        from ..maps import maps

        return maps(self.priors, names, **kwargs)

    def __repr__(self) -> str:
        return f"<bitsr.Frame display_index={self.display_index} poc={self.poc} type={self.picture_type} {self.width}x{self.height}>"


class Reader:
    """Iterates the frames of an HEVC file in display order. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, *, strict: bool = False, threads: int = 0, lookahead: int = 2,
                 **limits):
        self.path = os.fspath(path)
        if not 0 <= int(lookahead) <= 16:
            raise ValueError(f"lookahead must be in 0..16, got {lookahead}")
        self.lookahead = int(lookahead)
        if not os.path.exists(self.path):
            raise FileNotFoundError(2, "no such file", self.path)
        self._container = av.open(self.path)
        try:
            self.stream = hevc_stream(self._container)
        except Exception:
            self._container.close()
            raise
        cc = self.stream.codec_context
        cc.thread_type = "AUTO"
        if threads:
            cc.thread_count = threads
        self._decoder = _core.Decoder(strict=strict, **{k: v for k, v in limits.items() if v})
        extra = bytes(cc.extradata or b"")
        self._length_size = 0
        if extra[:1] == b"\x01" and len(extra) >= 23:
            self._length_size = self._decoder.push_hvcc(extra)
        elif extra:
            self._decoder.push_annexb(extra, final=True)
        self._raw = is_raw_hevc(self.path)
        self._pics: collections.deque = collections.deque()
        self._pts_by_decode: dict[int, Optional[int]] = {}
        self._packet_pts: collections.deque = collections.deque()
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

    def _take_pictures(self) -> None:
        for pic in self._decoder.pop_decoded():
            pts = self._packet_pts.popleft() if self._packet_pts else None
            self._pts_by_decode[pic.decode_index] = pts
        self._pics.extend(self._decoder.pop_output())

    def _pair(self, f: "av.VideoFrame") -> Frame:
        if not self._pics:
            self._decoder.bump_one()
            self._take_pictures()
        if not self._pics:
            raise _core.BitstreamError(
                f"{self.path}: FFmpeg output a frame (pts {f.pts}) for which the parser has no picture")
        pic = self._pics.popleft()
        pts = self._pts_by_decode.pop(pic.decode_index, None)
        if pts is not None and f.pts is not None and pts != f.pts:
            raise _core.BitstreamError(
                f"{self.path}: frame pts {f.pts} does not match the parsed picture's packet pts {pts} "
                f"(POC {pic.poc})")
        fr = Frame(self._display_index, PicturePriors(pic), f, f.pts if f.pts is not None else pts, self.time_base)
        self._display_index += 1
        return fr

    def __iter__(self) -> Iterator[Frame]:
        return _windowed(self._frames(), self.lookahead)

    def _frames(self) -> Iterator[Frame]:
        if self._container is None:
            raise ValueError("reader is closed")
        dec = self._decoder
        cc = self.stream.codec_context
        for packet in self._container.demux(self.stream):
            if not packet.size:  # the demuxer's end-of-stream marker; flushed below
                continue
            self._packet_pts.append(packet.pts)
            dec.push_packet(packet, length_size=self._length_size)
            self._take_pictures()
            for f in cc.decode(packet):
                yield self._pair(f)
        dec.flush()
        self._take_pictures()
        for f in cc.decode(None):
            yield self._pair(f)
        self.close()


def _windowed(frames: Iterator[Frame], size: int) -> Iterator[Frame]:
    """Delays frames by `size` so each one carries the priors of the `size` frames before and
    after it (Frame.flow needs them). Holds at most `size` decoded frames."""
    history: collections.deque = collections.deque(maxlen=size)
    pending: collections.deque = collections.deque()

    def release() -> Frame:
        fr = pending.popleft()
        win = {0: fr.priors}
        for j, p in enumerate(reversed(history)):
            win[-1 - j] = p
        for j, nxt in enumerate(pending):
            win[1 + j] = nxt.priors
        fr._window = (size, win)
        if size:
            history.append(fr.priors)
        return fr

    for fr in frames:
        pending.append(fr)
        if len(pending) > size:
            yield release()
    while pending:
        yield release()


def open(path: str | os.PathLike, *, strict: bool = False, threads: int = 0, lookahead: int = 2,  # noqa: A001
         **limits) -> Reader:
    """Opens an HEVC file (raw .hevc/.265/.h265, MP4, MOV, MKV) for reading frames with priors.

    ``lookahead`` frames are decoded ahead (and as many kept behind) so that ``Frame.flow(k)``
    works for |k| <= lookahead.

    >>> with bitsr.open("clip.mp4") as video:
    ...     for frame in video:
    ...         frame.rgb, frame.priors.mv
    """
    return Reader(path, strict=strict, threads=threads, lookahead=lookahead, **limits)
