"""bitsr.open and bitsr.extract: the readers, one entry point for every codec with priors.

:func:`open` gives decoded frames in display order, each with the priors of its picture and
the :class:`~bitsr.priors.Window` of its neighbours' priors; :func:`extract` gives the priors
alone in decoding order, without pixels; :func:`iter_frames` the priors alone in display
order. The codec is found once (:func:`bitsr.io.formats.detect_codec`) and its source does the
rest: :class:`~bitsr.io.hevc.HevcSource` (bitsr's parser + FFmpeg), or
:class:`~bitsr.io.h264.H264Source` (FFmpeg's exported side data).
"""
from __future__ import annotations

import itertools
import os
import weakref
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av
import numpy as np

from .. import _core
from ..priors import PicturePriors, Window, display_order, windowed
from .demux import check_path, codec_name, decode, iter_packets, open_container
from .formats import detect_codec
from .h264 import H264Source, extract_h264
from .hevc import HevcSource, extract_hevc

# codec -> (display-order source with pixels, decoding-order priors)
SOURCES = {"hevc": (HevcSource, extract_hevc), "h264": (H264Source, extract_h264)}


class _BlankPicture:
    """Duck-types the parser's picture for video without priors: every block "unknown" (intra,
    no motion, no valid CTB), so flow from it is zero with no confidence."""

    def __init__(self, index: int, width: int, height: int):
        cw, ch = -(-width // 16) * 16, -(-height // 16) * 16
        gh, gw = ch // 4, cw // 4
        z = lambda dt: np.zeros((gh, gw), dt)  # noqa: E731
        self._arrays = {
            "pred_mode": np.ones((gh, gw), np.int8), "cu_log2": np.full((gh, gw), 4, np.uint8),
            "part_mode": z(np.uint8), "merge_flag": z(np.uint8), "inter_dir": z(np.uint8),
            "mv": np.zeros((gh, gw, 2, 2), np.int16),
            "ref_idx": np.full((gh, gw, 2), -1, np.int8),
            "ref_poc": np.full((gh, gw, 2), np.iinfo(np.int32).min, np.int32), "qp_y": z(np.int8),
            "tu_log2": np.full((gh, gw), 4, np.uint8), "residual": np.ones((gh, gw), np.uint8),
            "intra_mode": np.ones((gh, gw), np.uint8), "pcm_flag": z(np.uint8), "transquant_bypass": z(np.uint8)}
        for a in self._arrays.values():
            a.flags.writeable = False
        self.__dict__.update(
            poc=index, nal_type=0, slice_type=2, temporal_id=0, decode_index=index, cvs_index=index,
            pic_output_flag=True, num_slice_segments=0, errors=["no bitstream priors for this codec"],
            width=cw, height=ch, conf_win=(0, cw - width, 0, ch - height), bit_depth=8, bit_depth_chroma=8,
            chroma_format=1, ctb_size=16, slices=[], num_ctb_decoded=0,
            ctb_decoded=np.zeros((gh // 4, gw // 4), np.uint8))

    def arrays(self) -> dict:
        return self._arrays


class PixelSource:
    """Frames of any video FFmpeg decodes, without bitstream priors (``has_priors`` False): each
    frame carries blank priors (:class:`_BlankPicture`). For upscaling VP9, AV1, MPEG-4 ..."""

    has_priors = False
    num_skipped_pictures = 0

    def __init__(self, path: str, *, strict: bool, threads: int, limits: dict, warn):
        self.path, self.strict, self._warn = path, strict, warn
        self.container = open_container(path)
        videos = [s for s in self.container.streams.video if codec_name(s) is not None]
        if not videos:
            self.container.close()
            raise _core.UnsupportedStreamError(f"{path}: no video stream FFmpeg can decode")
        self.stream = videos[0]
        self.codec = codec_name(self.stream)
        cc = self.stream.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = int(threads)
        self.is_raw = False

    def empty_message(self) -> str:
        return f"{self.path}: no decodable frame found"

    def frames(self):
        cc, n = self.stream.codec_context, 0
        # streamed, then None to drain the decoder (a list would read the whole file first)
        for packet in itertools.chain(iter_packets(self.container, self.stream, self.path), [None]):
            if packet is not None:
                packet.opaque = (n,)
            for f in decode(cc, packet, self.path, self.strict, self._warn):
                yield PicturePriors(_BlankPicture(n, f.width, f.height)), f, f.pts
                n += 1


class PriorsFrame:
    """A picture in display order: its priors and the :class:`~bitsr.priors.Window` of its
    neighbours' priors (``window``, set by the reader), without pixels (see :func:`iter_frames`)."""

    __slots__ = ("display_index", "priors", "window")

    def __init__(self, display_index: int, priors: PicturePriors):
        self.display_index = display_index
        self.priors = priors
        self.window: Optional[Window] = None

    poc = property(lambda self: self.priors.poc)
    decode_index = property(lambda self: self.priors.decode_index)
    picture_type = property(lambda self: self.priors.picture_type)
    nal_type = property(lambda self: self.priors.nal_type)
    temporal_id = property(lambda self: self.priors.temporal_id)

    def flow(self, k: int = -1, **kwargs):
        """Motion-vector flow to the frame at display index ``display_index + k``:
        ``(flow [2,H,W], confidence [H,W])`` float32, see :func:`bitsr.flow.mv_flow` for
        ``factor``, ``interp``, ``as_torch`` and ``out``. |k| is limited by the reader's ``lookahead``."""
        from ..flow import window_flow

        return window_flow(self.priors, self.window, k, **kwargs)

    def maps(self, names=None, **kwargs):
        """Coding-structure maps of this frame, see :func:`bitsr.maps.maps`."""
        from ..maps import maps

        return maps(self.priors, names, **kwargs)

    def __repr__(self) -> str:
        return f"<bitsr.PriorsFrame display_index={self.display_index} poc={self.poc} type={self.picture_type}>"


class Frame(PriorsFrame):
    """One output picture: pixels from FFmpeg, priors from the bitstream.

    ``display_index`` counts frames in display order from 0. ``pts`` is the container
    timestamp in ``time_base`` units (None for raw streams); ``time`` is in seconds: pts x
    time_base for containers, ``display_index / fps`` for raw streams (which carry no
    timestamps).
    """

    __slots__ = ("_av", "pts", "time_base", "time", "_rgb")

    def __init__(self, display_index: int, priors: PicturePriors, av_frame: "av.VideoFrame",
                 pts: Optional[int], time_base: Optional[Fraction], time: Optional[float]):
        super().__init__(display_index, priors)
        self._av = av_frame
        self.pts = pts
        self.time_base = time_base
        self.time = time
        self._rgb = None

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

    def __repr__(self) -> str:
        return (f"<bitsr.Frame display_index={self.display_index} poc={self.poc} "
                f"type={self.picture_type} {self.width}x{self.height}>")


class Reader:
    """Iterates the frames of a video with priors (HEVC or H.264) in display order. Use as a
    context manager; see :func:`open`.

    ``codec`` is 'hevc' or 'h264' (with ``any_codec=True``, a video of another codec is read
    too, its frames carrying blank priors: ``has_priors`` False, ``codec`` FFmpeg's name).
    ``warnings`` lists the first disagreements between FFmpeg
    and the parser (and FFmpeg decoding errors), ``num_warnings`` counts them all;
    ``num_frames`` counts the frames yielded.
    """

    MAX_WARNINGS = 100  # a long damaged stream must not grow memory

    def __init__(self, path: str | os.PathLike, *, strict: bool = False, threads: int = 0, lookahead: int = 2,
                 any_codec: bool = False, idle_parser: bool = True, **limits):
        if not 0 <= int(lookahead) <= 16:
            raise ValueError(f"lookahead must be in 0..16, got {lookahead}")
        self.lookahead = int(lookahead)
        self.path = check_path(path)
        self.strict = strict
        self.warnings: list[str] = []
        self.num_warnings = 0
        self.num_frames = 0
        self.num_concealed = 0  # frames whose priors were partly concealed (damaged slice data)
        self.last_time: Optional[float] = None  # time of the last frame yielded, seconds
        self._iter: Optional[Iterator[Frame]] = None
        self._source = None
        self.codec = detect_codec(self.path)
        warn = _weak_callback(self._warn)
        try:
            extra = {"idle_parser": idle_parser} if self.codec == "hevc" else {}
            self._source = SOURCES[self.codec][0](self.path, strict=strict, threads=threads, limits=limits,
                                                  warn=warn, **extra)
        except _core.UnsupportedStreamError:
            if not any_codec:
                raise
            self._source = PixelSource(self.path, strict=strict, threads=threads, limits=limits, warn=warn)
            self.codec = self._source.codec
        self.has_priors = getattr(self._source, "has_priors", True)
        self._container = self._source.container
        # The PyAV stream while the file is open; None after close(), which frees FFmpeg's
        # decoder (and its threads) at once. Read metadata that must outlive it at opening.
        self.stream = self._source.stream
        self.stream_index: int = self.stream.index
        self._size: Optional[tuple[int, int]] = None  # (width, height) kept at closing
        self.is_raw = self._source.is_raw
        s, c = self.stream, self._container
        self._time_base: Optional[Fraction] = s.time_base
        if self.is_raw:
            self._fps: Optional[Fraction] = s.codec_context.framerate or s.guessed_rate or s.average_rate
        else:
            self._fps = s.average_rate or s.guessed_rate
        if s.duration is not None and s.time_base is not None:
            self._duration: Optional[float] = float(s.duration * s.time_base)
        else:
            self._duration = c.duration / 1e6 if c.duration and c.duration > 0 and not self.is_raw else None

    # metadata
    @property
    def time_base(self) -> Optional[Fraction]:
        return self._time_base

    @property
    def fps(self) -> Optional[Fraction]:
        """Frame rate: the container's average rate; for raw streams the rate the SPS VUI
        signals (FFmpeg's raw demuxer assumes 25 when there is none). Read at opening, so it
        stays valid after the file is closed."""
        return self._fps

    @property
    def duration(self) -> Optional[float]:
        """Seconds the container declares (None when it does not say, e.g. raw streams)."""
        return self._duration

    def shortfall(self) -> Optional[str]:
        """After the last frame: why the video is incomplete, in words (the input ended well
        before the duration its container declares; frames with concealed damage; FFmpeg or
        parser problems), or None when nothing is known to be missing."""
        out = []
        d, fps = self.duration, self._fps
        if d and self.last_time is not None:
            step = float(1 / fps) if fps else 0.04
            if self.last_time + 2 * step < 0.98 * d:
                out.append(f"the input ended at {self.last_time:.2f} s of the {d:.2f} s its container declares "
                           "(truncated file?)")
        if self.num_concealed:
            out.append(f"{self.num_concealed} frame(s) had damaged data, concealed")
        if self.num_warnings:
            out.append(f"{self.num_warnings} decoding problem(s), the first: {self.warnings[0]}")
        return "; ".join(out) or None

    @property
    def num_skipped_pictures(self) -> int:
        """Pictures the parser skipped so far: those before the first IRAP picture and the
        RASL pictures of a CRA picture that starts a sequence (FFmpeg skips them too)."""
        return self._source.num_skipped_pictures

    @property
    def width(self) -> int:
        return self._size[0] if self.stream is None else self.stream.codec_context.width

    @property
    def height(self) -> int:
        return self._size[1] if self.stream is None else self.stream.codec_context.height

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
            cc = self.stream.codec_context
            self._size = (cc.width, cc.height)
            # The last references to the decoder: FFmpeg joins its threads now, not when the
            # garbage collector gets to this Reader (a process forked in between, such as a
            # DataLoader worker, hangs when its collector frees a decoder without its threads).
            self.stream = self._source.stream = self._source.container = None

    def __iter__(self) -> "Reader":
        return self

    def __next__(self) -> Frame:
        """The next frame in display order. A Reader is one pass over the file, like a file
        object: iterating again continues where the last loop stopped."""
        if self._iter is None:
            if self._container is None:
                raise ValueError("I/O operation on a closed bitsr.Reader")
            self._iter = windowed(self._frames(), self.lookahead, getattr(self._source, "peek_priors", None))
        return next(self._iter)

    def _frames(self) -> Iterator[Frame]:
        try:
            for priors, f, pts in self._source.frames():
                i = self.num_frames
                if pts is not None and self.time_base is not None:
                    time = float(pts * self.time_base)
                else:
                    time = float(i / self._fps) if self._fps else None
                self.num_frames += 1
                self.last_time = time
                if self.has_priors and not priors.complete:
                    self.num_concealed += 1
                yield Frame(i, priors, f, pts, self.time_base, time)
            if self.num_frames == 0:
                raise _core.BitstreamError(self._source.empty_message())
        finally:
            self._close_container()

    def _warn(self, msg: str) -> None:
        self.num_warnings += 1
        if len(self.warnings) < self.MAX_WARNINGS:
            self.warnings.append(msg)


def _weak_callback(method) -> Callable[[str], None]:
    """``method`` of an object, called through a weak reference. The sources call back into
    their Reader; a strong reference would be a cycle keeping FFmpeg's decoder and its threads
    alive after the Reader is dropped, until the garbage collector runs - and a process forked
    before that (a DataLoader worker) hangs when its collector frees a decoder whose threads
    it does not have."""
    ref = weakref.WeakMethod(method)

    def call(msg: str) -> None:
        m = ref()
        if m is not None:
            m(msg)

    return call


def open(path: str | os.PathLike, *, strict: bool = False, threads: int = 0, lookahead: int = 2,  # noqa: A001
         any_codec: bool = False, idle_parser: bool = True, **limits) -> Reader:
    """Opens an HEVC or H.264 file (raw Annex B .hevc/.265/.h265/.h264/.264, MP4, MOV, MKV) for
    reading frames with priors.

    Each frame carries the priors of ``lookahead`` neighbours on each side (``Frame.window``,
    for ``Frame.flow(k)`` with |k| <= lookahead): for HEVC from the parser's output order,
    which knows them before FFmpeg decodes those frames; otherwise the frames are decoded
    ahead.

    >>> with bitsr.open("clip.mp4") as video:
    ...     for frame in video:                 # display order
    ...         frame.rgb, frame.priors.mv, frame.time

    ``threads``: FFmpeg's decoding threads and, for HEVC, the parser's (0 = one per core): the
    parser reads the priors in the background while FFmpeg decodes, at the lowest scheduling
    priority (``idle_parser=True``: FFmpeg's threads never wait for a core; a frame waits for
    its priors). ``idle_parser=False`` runs it at normal priority instead, sharing the cores
    with whatever else runs (the same speed for ``bitsr.upscale`` on the demo sample). ``strict=True`` raises
    :class:`bitsr.BitstreamError` on the first damaged NAL unit, FFmpeg decoding error or
    disagreement between FFmpeg and the parser, instead of concealing or skipping.
    ``limits`` (``max_luma_samples``, ``max_dimension``, ...) go to the parser, which sees
    every packet before FFmpeg does. Raw streams carry no timestamps: their frames get
    ``pts = None`` and ``time = display_index / fps``. ``any_codec=True`` also opens video of
    other codecs (VP9, AV1, MPEG-4, ...), whose frames carry blank priors (``has_priors`` False).

    Raises FileNotFoundError for a missing path, :class:`bitsr.UnsupportedStreamError` for
    a file without HEVC or H.264 video, and :class:`bitsr.BitstreamError` for anything else
    that is not a readable stream (directory, empty or damaged file, no decodable picture).
    """
    return Reader(path, strict=strict, threads=threads, lookahead=lookahead, any_codec=any_codec,
                  idle_parser=idle_parser, **limits)


def extract(path: str | os.PathLike, *, strict: bool = False, threads: Optional[int] = None,
            **limits) -> Iterator[PicturePriors]:
    """Yields the priors of every decoded picture of an HEVC (or H.264) file, in decoding order.

    Raw Annex B files are read by the C++ parser directly; MP4/MOV/MKV are demuxed with PyAV
    (no pixel decoding). ``strict=True`` raises :class:`bitsr.BitstreamError` on the first
    damaged NAL unit instead of concealing it. ``limits`` (``max_luma_samples``,
    ``max_dimension``, ``max_slice_segments``, ``max_dpb_pictures``, ``max_nal_size``) bound
    what the parser accepts (:class:`bitsr.LimitError` beyond). Memory stays bounded: only
    pictures still needed as references are kept by the parser. H.264 priors come from
    FFmpeg's exported side data (:mod:`bitsr.io.h264`; pixels are decoded to get them).

    ``threads`` (default 1; 0: one per core) parse several HEVC pictures at once; pictures,
    arrays and warnings are the same whatever the number. At most ``max_in_flight`` pictures
    (default 3 * threads + 4) are held by the workers at a time: each holds its slice data and
    about 45 bytes per 4x4 block (6 MB at 1080p). For H.264, ``threads`` are FFmpeg's
    (default: FFmpeg picks).

    Raises FileNotFoundError for a missing path, :class:`bitsr.UnsupportedStreamError` for a
    container without HEVC video, and :class:`bitsr.BitstreamError` for anything that is not
    a readable HEVC stream (a directory, an empty file, no decodable picture, a container
    FFmpeg cannot read).
    """
    path = check_path(path)  # path errors now, not at the first next()
    if threads is not None:
        limits["threads"] = threads
    return SOURCES[detect_codec(path)][1](path, strict=strict, **limits)


def iter_frames(path: str | os.PathLike, *, lookahead: int = 2, strict: bool = False,
                **limits) -> Iterator[PriorsFrame]:
    """Display-order :class:`PriorsFrame` objects of a file, parsed without decoding pixels,
    each carrying the priors of ``lookahead`` frames before and after it (``window``)."""
    frames = (PriorsFrame(i, p) for i, p in enumerate(display_order(extract(path, strict=strict, **limits))))
    return windowed(frames, lookahead)
