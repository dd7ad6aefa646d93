"""Opening inputs with PyAV: path checks, the codec check, and FFmpeg errors as bitsr errors.

Raw Annex B files are opened with FFmpeg's ``hevc`` demuxer explicitly (its probe rejects
short or damaged streams, and some extensions such as .bin are not probed as HEVC).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Union

import av

from .. import _core

# Codecs bitsr reads. Another codec gets UnsupportedStreamError from `select_stream`.
SUPPORTED_CODECS = ("hevc",)


def check_path(path: Union[str, os.PathLike]) -> str:
    """The path as str; FileNotFoundError if missing, BitstreamError if not a non-empty file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no such file", path)
    if os.path.isdir(path):
        raise _core.BitstreamError(f"{path}: is a directory, not a video file")
    if not os.path.isfile(path):
        raise _core.BitstreamError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise _core.BitstreamError(f"{path}: empty file")
    return path


@contextlib.contextmanager
def av_errors(path: str, what: str):
    """FFmpeg failures (PyAV exceptions) become BitstreamError naming the file; the PyAV
    exception is kept as __cause__."""
    try:
        yield
    except av.FFmpegError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise _core.BitstreamError(f"{path}: {what}: {reason}") from e


@contextlib.contextmanager
def named_errors(path: str):
    """Prefixes the parser's BitstreamError messages (which name NAL index and byte offset)
    with the file name; type and attributes are kept."""
    try:
        yield
    except _core.BitstreamError as e:
        if e.args and isinstance(e.args[0], str) and not e.args[0].startswith(path):
            e.args = (f"{path}: {e.args[0]}",) + e.args[1:]
        raise


def packet_offset(pkt: "av.Packet") -> int:
    """The packet's byte position in the file (for error messages), 0 if unknown."""
    pos = pkt.pos
    return pos if pos is not None and pos >= 0 else 0


def open_container(path: str, raw: bool) -> "av.container.InputContainer":
    with av_errors(path, "cannot open as a video file"):
        return av.open(path, format="hevc" if raw else None)


def codec_name(s) -> Optional[str]:
    cc = s.codec_context  # None when FFmpeg has no decoder for the stream (damaged headers)
    return cc.name if cc is not None else None


def select_stream(container: "av.container.InputContainer") -> "av.VideoStream":
    """The video stream bitsr reads: the first one whose codec bitsr supports. This is the
    only place that decides which codecs are accepted."""
    for s in container.streams.video:
        if codec_name(s) in SUPPORTED_CODECS:
            return s
    names = [codec_name(s) or "unknown" for s in container.streams.video]
    raise _core.UnsupportedStreamError(
        f"{container.name}: no HEVC or H.264 video stream (video streams: {', '.join(names) or 'none'})")


def feed_extradata(decoder: "_core.Decoder", stream: "av.VideoStream") -> int:
    """Gives the stream's parameter sets (hvcC or Annex B extradata) to the parser; returns
    the NAL length size of the packets (0: Annex B)."""
    extra = stream.codec_context.extradata
    if not extra:
        return 0
    if extra[:1] == b"\x01" and len(extra) >= 23:  # hvcC (ISO/IEC 14496-15)
        return decoder.push_hvcc(extra)
    decoder.push_annexb(extra, final=True)
    return 0


def iter_packets(container, stream, path: str) -> Iterator["av.Packet"]:
    """The stream's non-empty packets; demuxer errors become BitstreamError."""
    it = container.demux(stream)
    while True:
        with av_errors(path, "cannot read packet"):
            pkt: Optional[av.Packet] = next(it, None)
        if pkt is None:
            return
        if pkt.size:  # size 0: the demuxer's end-of-stream marker
            yield pkt

