"""bitsr.open: decoded frames in display order, each with the priors of its picture.

One pass over the container's packets feeds both bitsr's parser (priors) and PyAV's
decoder (pixels); the parser gets each packet first, so its limits also protect FFmpeg.

Pairing. Every packet is numbered and the number rides through FFmpeg on the packet's
``opaque`` field (``copy_opaque``), so each output frame names the access unit it was
decoded from, and through it the parsed picture. The parser's own output order (it runs
the DPB output process, C.5.2) is the cross-check: when FFmpeg outputs a picture earlier
than the parser would, the parser is bumped; pictures the parser outputs but FFmpeg never
does (e.g. FFmpeg failed to decode them) are dropped with a warning, and frames FFmpeg
outputs for which the parser has no picture are skipped with a warning (``strict=True``
raises instead). Both sides drop pictures before the first IRAP picture and the RASL
pictures of a CRA picture that starts decoding; pictures still waiting for output when a CRA
picture starts a new CVS (after an EOS NAL unit) are discarded, as C.5.2.2 requires.
"""
from __future__ import annotations

import collections
import os
from fractions import Fraction
from typing import Iterator, Optional

import av
import numpy as np

from .. import _core
from ..priors import PicturePriors, _warning_summary, is_raw_hevc, make_decoder
from .demux import check_path, feed_extradata, iter_packets, named_errors, open_container, packet_offset, select_stream


CRA_NUT = 21


class Frame:
    """One output picture: pixels from FFmpeg, priors from the bitstream.

    ``display_index`` counts frames in display order from 0. ``pts`` is the container
    timestamp in ``time_base`` units (None for raw streams); ``time`` is in seconds: pts x
    time_base for containers, ``display_index / fps`` for raw streams (which carry no
    timestamps).
    """

    __slots__ = ("display_index", "priors", "_av", "pts", "time_base", "time", "_rgb", "_window")

    def __init__(self, display_index: int, priors: PicturePriors, av_frame: "av.VideoFrame",
                 pts: Optional[int], time_base: Optional[Fraction], time: Optional[float]):
        self.display_index = display_index
        self.priors = priors
        self._av = av_frame
        self.pts = pts
        self.time_base = time_base
        self.time = time
        self._rgb = None
        self._window = None  # (size, {display offset: PicturePriors}), set by _windowed

    poc = property(lambda self: self.priors.poc)
    decode_index = property(lambda self: self.priors.decode_index)
    picture_type = property(lambda self: self.priors.picture_type)
    nal_type = property(lambda self: self.priors.nal_type)
    temporal_id = property(lambda self: self.priors.temporal_id)
    width = property(lambda self: self._av.width)
    height = property(lambda self: self._av.height)

    @property
    def rgb(self) -> np.ndarray:
        """uint8 [H, W, 3], conformance-cropped."""
        if self._rgb is None:
            self._rgb = self._av.to_ndarray(format="rgb24")
        return self._rgb

    def yuv(self) -> tuple[np.ndarray, ...]:
        """Decoded planes (Y, Cb, Cr; Y only for 4:0:0) at native bit depth and chroma
        resolution: uint8 for 8-bit video, native-endian uint16 holding the sample values
        for deeper video. Conformance-cropped; fresh arrays."""
        f = self._av
        deep = max(c.bits for c in f.format.components) > 8
        dtype = np.dtype(np.uint16 if deep else np.uint8)
        out = []
        for plane in f.planes:
            a = np.frombuffer(plane, dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
            out.append(a[:, : plane.width].copy())
        return tuple(out)

    @property
    def av_frame(self) -> "av.VideoFrame":
        return self._av

    def flow(self, k: int = -1, **kwargs):
        """Motion-vector flow to the frame at display index ``display_index + k``:
        ``(flow [2,H,W], confidence [H,W])`` float32, see :func:`bitsr.flow.mv_flow` for
        ``factor``, ``interp``, ``as_torch`` and ``out``. |k| is limited by the reader's ``lookahead``."""
        from ..flow import frame_flow

        return frame_flow(self, k, **kwargs)

    def maps(self, names=None, **kwargs):
        """Coding-structure maps of this frame, see :func:`bitsr.maps.maps`."""
        from ..maps import maps

        return maps(self.priors, names, **kwargs)

    def __repr__(self) -> str:
        return (f"<bitsr.Frame display_index={self.display_index} poc={self.poc} "
                f"type={self.picture_type} {self.width}x{self.height}>")


class Reader:
    """Iterates the frames of an HEVC file in display order. Use as a context manager.

    ``warnings`` lists the first disagreements between FFmpeg and the parser (and FFmpeg
    decoding errors), ``num_warnings`` counts them all; ``num_frames`` counts the frames
    yielded.
    """

    MAX_WARNINGS = 100  # a long damaged stream must not grow memory

    def __init__(self, path: str | os.PathLike, *, strict: bool = False, threads: int = 0, lookahead: int = 2,
                 **limits):
        if not 0 <= int(lookahead) <= 16:
            raise ValueError(f"lookahead must be in 0..16, got {lookahead}")
        self.lookahead = int(lookahead)
        self.path = check_path(path)
        self.strict = strict
        self._decoder = make_decoder(strict, **limits)
        self.is_raw = is_raw_hevc(self.path)
        self._container = open_container(self.path, raw=self.is_raw)
        try:
            self.stream = select_stream(self._container)
            cc = self.stream.codec_context
            cc.thread_type = "AUTO"
            cc.thread_count = int(threads)  # 0: FFmpeg picks
            cc.copy_opaque = True
            with named_errors(self.path):
                self._length_size = feed_extradata(self._decoder, self.stream)
            self._fps = self.fps
        except BaseException:
            self._close_container()
            raise
        self.warnings: list[str] = []
        self.num_warnings = 0
        self.num_frames = 0
        self._iter: Optional[Iterator[Frame]] = None
        # Pairing state, all bounded by the DPB size plus FFmpeg's frame-thread delay.
        self._pending: dict[int, tuple] = {}  # decode_index -> (Picture, packet number, pts)
        self._by_packet: dict[int, list[int]] = {}  # packet number -> decode indices
        self._order: collections.deque = collections.deque()  # parser output order
        self._in_order: set[int] = set()
        self._cvs_starts: collections.deque = collections.deque(maxlen=8)  # (cvs_index, nal_type)

    # metadata
    @property
    def time_base(self) -> Optional[Fraction]:
        return self.stream.time_base

    @property
    def fps(self) -> Optional[Fraction]:
        """Frame rate: the container's average rate; for raw streams the rate the SPS VUI
        signals (FFmpeg's raw demuxer assumes 25 when there is none)."""
        s = self.stream
        if self.is_raw:
            return s.codec_context.framerate or s.guessed_rate or s.average_rate
        return s.average_rate or s.guessed_rate

    @property
    def num_skipped_pictures(self) -> int:
        """Pictures the parser skipped so far: those before the first IRAP picture and the
        RASL pictures of a CRA picture that starts a sequence (FFmpeg skips them too)."""
        return self._decoder.num_skipped_pictures

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
        """Closes the file; frames already yielded stay valid."""
        if self._iter is not None:
            self._iter.close()
        self._close_container()

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __iter__(self) -> "Reader":
        return self

    def __next__(self) -> Frame:
        """The next frame in display order. A Reader is one pass over the file, like a file
        object: iterating again continues where the last loop stopped."""
        if self._iter is None:
            if self._container is None:
                raise ValueError("I/O operation on a closed bitsr.Reader")
            self._iter = _windowed(self._frames(), self.lookahead)
        return next(self._iter)

    # -- one pass: parser first, then FFmpeg --------------------------------------------
    def _frames(self) -> Iterator[Frame]:
        dec, cc = self._decoder, self.stream.codec_context
        try:
            with named_errors(self.path):
                yield from self._pass(dec, cc)
            if self.num_frames == 0:
                raise _core.BitstreamError(f"{self.path}: no decodable HEVC picture found" + _warning_summary(dec))
        finally:
            self._close_container()

    def _pass(self, dec, cc) -> Iterator[Frame]:
        for n, packet in enumerate(iter_packets(self._container, self.stream, self.path)):
            dec.push_packet(packet, length_size=self._length_size, offset=packet_offset(packet))
            self._take_pictures(n, packet.pts)
            # A fresh object per packet: PyAV keys opaque values by id(), so a shared small
            # int would be released by whichever frame holding it dies first.
            packet.opaque = (n,)
            yield from self._paired(self._decode(cc, packet))
        dec.flush()
        self._take_pictures(None, None)
        yield from self._paired(self._decode(cc, None))
        for d in list(self._order) + [d for d in self._pending if d not in self._in_order]:
            self._drop(d, "FFmpeg did not output it")

    def _paired(self, av_frames) -> Iterator[Frame]:
        for f in av_frames:
            fr = self._pair(f)
            if fr is not None:
                yield fr

    def _decode(self, cc, packet) -> list:
        try:
            return cc.decode(packet)
        except av.FFmpegError as e:
            what = f"packet {packet.opaque[0]}" if packet is not None else "the last frames"
            msg = f"FFmpeg could not decode {what}: {getattr(e, 'strerror', None) or e}"
            if self.strict:
                raise _core.BitstreamError(f"{self.path}: {msg}") from e
            self._warn(msg)
            return []

    def _take_pictures(self, packet: Optional[int], pts: Optional[int]) -> None:
        for pic in self._decoder.pop_decoded():
            # push_packet ends the access unit, so a picture comes out with its own packet;
            # pictures with pic_output_flag 0 are output by neither side.
            if not self._cvs_starts or self._cvs_starts[-1][0] != pic.cvs_index:
                self._cvs_starts.append((pic.cvs_index, pic.nal_type))
                if pic.nal_type == CRA_NUT:
                    # A CRA starting a CVS (after an end-of-sequence NAL unit) implies
                    # NoOutputOfPriorPicsFlag = 1 (C.5.2.2): the parser and FFmpeg both discard
                    # the earlier pictures still waiting for output.
                    for d in [d for d, v in self._pending.items()
                              if v[0].cvs_index < pic.cvs_index and d not in self._in_order]:
                        self._drop(d, "discarded at the start of a new sequence")
            if pic.pic_output_flag:
                self._pending[pic.decode_index] = (pic, packet, pts)
                self._by_packet.setdefault(packet, []).append(pic.decode_index)
        for pic in self._decoder.pop_output():
            self._order.append(pic.decode_index)
            self._in_order.add(pic.decode_index)

    def _pair(self, f: "av.VideoFrame") -> Optional[Frame]:
        tag = f.opaque
        packet = tag[0] if tag is not None else None
        ids = self._by_packet.get(packet)
        if not ids:
            self._problem(f"FFmpeg output a frame (packet {packet}, pts {f.pts}) for which the parser has "
                          "no picture; frame skipped")
            return None
        d = ids[0]
        if len(ids) > 1:  # several pictures in one packet: the earliest in output order
            d = min(ids, key=lambda i: self._order.index(i) if i in self._in_order else len(self._order))
        ids.remove(d)
        if not ids:
            del self._by_packet[packet]
        while d not in self._in_order and self._decoder.bump_one():
            self._take_pictures(None, None)
        if d in self._in_order:
            while self._order[0] != d:
                self._drop(self._order[0], "FFmpeg output a later picture first")
            self._order.popleft()
            self._in_order.discard(d)
        else:
            self._problem(f"FFmpeg output picture decode_index {d} that the parser does not output")
        pic, _, pts = self._pending.pop(d)
        if f.pts is not None:
            pts = f.pts
        i = self.num_frames
        if pts is not None and self.time_base is not None:
            time = float(pts * self.time_base)
        else:
            time = float(i / self._fps) if self._fps else None
        self.num_frames += 1
        return Frame(i, PicturePriors(pic), f, pts, self.time_base, time)

    def _drop(self, d: int, why: str) -> None:
        if d in self._in_order:
            self._order.remove(d)
            self._in_order.discard(d)
        pic, packet, _ = self._pending.pop(d)
        ids = self._by_packet.get(packet)
        if ids is not None:
            ids.remove(d)
            if not ids:
                del self._by_packet[packet]
        if (pic.cvs_index + 1, CRA_NUT) in self._cvs_starts:
            return  # discarded by design, see _take_pictures
        self._problem(f"picture POC {pic.poc} (decode_index {d}) has no FFmpeg frame: {why}; dropped")

    def _problem(self, msg: str) -> None:
        if self.strict:
            raise _core.BitstreamError(f"{self.path}: {msg}")
        self._warn(msg)

    def _warn(self, msg: str) -> None:
        self.num_warnings += 1
        if len(self.warnings) < self.MAX_WARNINGS:
            self.warnings.append(msg)


def _windowed(frames: Iterator[Frame], size: int) -> Iterator[Frame]:
    """Delays frames by `size` so each one carries the priors of the `size` frames before and
    after it in display order (frame._window = (size, {offset: PicturePriors}), offset 0
    included). Holds at most `size` decoded frames and `size` earlier priors."""
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

    ``lookahead`` frames are decoded ahead (and as many priors kept behind) so that each
    frame carries its neighbours' priors (``Frame._window``, for ``Frame.flow(k)`` with
    |k| <= lookahead).

    >>> with bitsr.open("clip.mp4") as video:
    ...     for frame in video:                 # display order
    ...         frame.rgb, frame.priors.mv, frame.time

    ``threads``: FFmpeg decoding threads (0 = automatic). ``strict=True`` raises
    :class:`bitsr.BitstreamError` on the first damaged NAL unit, FFmpeg decoding error or
    disagreement between FFmpeg and the parser, instead of concealing or skipping.
    ``limits`` (``max_luma_samples``, ``max_dimension``, ...) go to the parser, which sees
    every packet before FFmpeg does. Raw streams carry no timestamps: their frames get
    ``pts = None`` and ``time = display_index / fps``.

    Raises FileNotFoundError for a missing path, :class:`bitsr.UnsupportedStreamError` for
    a file without HEVC video, and :class:`bitsr.BitstreamError` for anything else that is
    not a readable HEVC stream (directory, empty or damaged file, no decodable picture).
    """
    # H.264 dispatch (bitsr/io/h264.py): priors from FFmpeg's exported side data
    from .h264 import H264Reader, is_h264

    if is_h264(path):
        return H264Reader(path, strict=strict, threads=threads, lookahead=lookahead, **limits)
    return Reader(path, strict=strict, threads=threads, lookahead=lookahead, **limits)
