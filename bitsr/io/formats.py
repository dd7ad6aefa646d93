"""Which codec a file holds: the one extension table and the one dispatch of bitsr's readers.

Raw elementary streams are recognised by extension (FFmpeg's probe rejects short or damaged
raw streams, and some extensions such as .bin are not probed at all) or, for HEVC, by an
Annex B start code; containers (MP4, MOV, MKV, ...) by FFmpeg's probe of their streams.
"""
from __future__ import annotations

import os

import av

from .demux import codec_name

# Raw elementary-stream extensions -> (codec, FFmpeg demuxer).
RAW_FORMATS = {
    ".hevc": "hevc", ".265": "hevc", ".h265": "hevc", ".bit": "hevc", ".bin": "hevc",
    ".h264": "h264", ".264": "h264", ".avc": "h264", ".26l": "h264", ".jsv": "h264",
}

# Container extensions taken for video when a folder is given as input.
CONTAINER_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".ts", ".m2ts", ".mts", ".avi", ".mpg", ".y4m"}
VIDEO_EXTENSIONS = frozenset(RAW_FORMATS) | CONTAINER_EXTENSIONS


def suffix(path: str | os.PathLike) -> str:
    """The lower-case extension, as Path.suffix gives it (os.path: a tenth of the time)."""
    return os.path.splitext(os.fspath(path))[1].lower()


def is_raw(path: str | os.PathLike, codec: str) -> bool:
    """True when ``path`` is a raw elementary stream of ``codec``: by extension, or for HEVC by
    an Annex B start code at the start of the file."""
    ext = RAW_FORMATS.get(suffix(path))
    if ext is not None:
        return ext == codec
    if codec != "hevc":
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:3] == b"\x00\x00\x01" or head == b"\x00\x00\x00\x01"


def detect_codec(path: str | os.PathLike) -> str:
    """'hevc' or 'h264': the reader for ``path``. Raw streams go by extension; a container (or
    a raw stream without a known extension) holding H.264 and no HEVC is read as H.264;
    anything else (including files FFmpeg cannot open) goes to the HEVC reader, which
    reports the problem by name."""
    codec = RAW_FORMATS.get(suffix(path))
    if codec is not None:
        return codec
    try:
        with av.open(str(path)) as c:
            names = [codec_name(s) for s in c.streams.video]
    except (av.FFmpegError, OSError):
        return "hevc"
    return "h264" if "h264" in names and "hevc" not in names else "hevc"
