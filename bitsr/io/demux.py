"""HEVC packets from MP4/MOV/MKV (and raw streams) via PyAV, without decoding pixels."""
from __future__ import annotations

from typing import Iterator, Union

import av


def _codec_name(s) -> str | None:
    cc = s.codec_context  # None when FFmpeg has no decoder for the stream (damaged headers)
    return cc.name if cc is not None else None


def hevc_stream(container: "av.container.InputContainer"):
    for s in container.streams.video:
        if _codec_name(s) == "hevc":
            return s
    names = [_codec_name(s) or "unknown" for s in container.streams.video]
    from .._core import UnsupportedStreamError

    raise UnsupportedStreamError(f"no HEVC video stream (video streams: {names or 'none'})")


def iter_hevc_packets(path) -> Iterator[tuple[Union[str, int], bytes]]:
    """Yields ('hvcc', record) or ('annexb_extradata', bytes) once, then (length_size, packet)
    for every packet; length_size 0 means Annex B packets."""
    with av.open(str(path)) as c:
        s = hevc_stream(c)
        extra = bytes(s.codec_context.extradata or b"")
        length_size = 0
        if extra[:1] == b"\x01" and len(extra) >= 23:
            length_size = (extra[21] & 3) + 1
            yield "hvcc", extra
        elif extra:
            yield "annexb_extradata", extra
        for pkt in c.demux(s):
            if pkt.size == 0:
                continue
            yield length_size, bytes(pkt)
