"""Opening inputs with PyAV: path checks, stream selection, packets and decoding, with
FFmpeg's errors turned into bitsr errors naming the file. Shared by the HEVC and H.264 readers.
"""
from __future__ import annotations

import contextlib
import os
import stat
from typing import Iterator, Optional, Union

import av

from .. import _core


def check_path(path: Union[str, os.PathLike]) -> str:
    """The path as str; FileNotFoundError if missing, BitstreamError if not a non-empty file."""
    path = os.fspath(path)
    try:
        st = os.stat(path)  # (one system call: this runs for every file of a data set)
    except (OSError, ValueError):
        raise FileNotFoundError(2, "no such file", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise _core.BitstreamError(f"{path}: is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise _core.BitstreamError(f"{path}: not a regular file")
    if st.st_size == 0:
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


def open_container(path: str, format: Optional[str] = None) -> "av.container.InputContainer":  # noqa: A002
    """``format``: FFmpeg's demuxer for a raw stream ('hevc', 'h264'); None probes."""
    with av_errors(path, "cannot open as a video file"):
        return av.open(path, format=format)


def codec_name(s) -> Optional[str]:
    """FFmpeg's codec name of a stream; None when FFmpeg has no decoder for it (damaged headers)."""
    cc = s.codec_context
    return cc.name if cc is not None else None


def select_stream(container: "av.container.InputContainer", codec: str) -> "av.VideoStream":
    """The first video stream of ``codec``; UnsupportedStreamError naming the streams found."""
    for s in container.streams.video:
        if codec_name(s) == codec:
            return s
    names = [codec_name(s) or "unknown" for s in container.streams.video]
    raise _core.UnsupportedStreamError(
        f"{container.name}: no HEVC or H.264 video stream (video streams: {', '.join(names) or 'none'})")


def decode(cc, packet, path: str, strict: bool, warn) -> list:
    """Frames FFmpeg outputs for ``packet`` (None: drain). A decoding error raises
    BitstreamError when ``strict``, else goes to ``warn(message)`` and yields no frame."""
    try:
        return cc.decode(packet)
    except av.FFmpegError as e:
        what = f"packet {packet.opaque[0]}" if packet is not None else "the last frames"
        msg = f"FFmpeg could not decode {what}: {getattr(e, 'strerror', None) or e}"
        if strict:
            raise _core.BitstreamError(f"{path}: {msg}") from e
        warn(msg)
        return []


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

