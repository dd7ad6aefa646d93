"""Editing HEVC Annex B byte streams in tests: NAL units, access units, RBSP bits.

Enough to cut, splice and corrupt streams made by tests/streams.py; not a parser.
"""
from __future__ import annotations

import re

START = b"\x00\x00\x00\x01"
VPS, SPS, PPS, AUD, EOS, EOB = 32, 33, 34, 35, 36, 37
RASL = (8, 9)
IRAP = range(16, 24)


def nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 63


def split_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream, without start codes."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    out = []
    for i, s in enumerate(starts):
        e = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        while e > s and data[e - 1] == 0:  # trailing zero bytes / 4-byte start code
            e -= 1
        out.append(data[s:e])
    return out


def access_units(data: bytes) -> list[list[bytes]]:
    """NAL units grouped into access units (a new AU starts at a parameter set, AUD, prefix
    SEI or first slice segment that follows a slice)."""
    aus: list[list[bytes]] = []
    cur: list[bytes] = []
    seen_vcl = False
    for nal in split_nals(data):
        t = nal_type(nal)
        starts_au = (t < 32 and nal[2] & 0x80) or t in (VPS, SPS, PPS, AUD, 39) or 41 <= t <= 44
        if starts_au and seen_vcl:
            aus.append(cur)
            cur, seen_vcl = [], False
        cur.append(nal)
        seen_vcl |= t < 32
    if cur:
        aus.append(cur)
    return aus


def picture_type(au: list[bytes]) -> int:
    """NAL type of the AU's first slice segment (-1 if it has none)."""
    return next((nal_type(n) for n in au if nal_type(n) < 32), -1)


def join(nals) -> bytes:
    return b"".join(START + n for n in nals)


def eos_nal() -> bytes:
    return bytes([EOS << 1, 1])


def unescape(nal: bytes) -> bytes:
    return re.sub(b"\x00\x00\x03(?=[\x00-\x03])", b"\x00\x00", nal)


def escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def replace_sps_tail(sps_nal: bytes, new_tail_bits: str) -> bytes:
    """Replaces the last syntax bit before rbsp_trailing_bits (sps_extension_present_flag
    when it is 0, as x265 writes it) by `new_tail_bits`, then re-adds trailing bits."""
    rbsp = unescape(sps_nal)
    bits = "".join(f"{b:08b}" for b in rbsp)
    stop = bits.rindex("1")  # rbsp_stop_one_bit
    assert bits[stop - 1] == "0", "expected sps_extension_present_flag = 0"
    bits = bits[: stop - 1] + new_tail_bits + "1"
    bits += "0" * (-len(bits) % 8)
    return escape(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)))


def hvcc_nals(hvcc: bytes) -> list[bytes]:
    """The parameter-set NAL units of an hvcC record (ISO/IEC 14496-15)."""
    out, i = [], 23
    for _ in range(hvcc[22]):
        n = int.from_bytes(hvcc[i + 1 : i + 3], "big")
        i += 3
        for _ in range(n):
            size = int.from_bytes(hvcc[i : i + 2], "big")
            out.append(hvcc[i + 2 : i + 2 + size])
            i += 2 + size
    return out


def container_to_annexb(path, out) -> None:
    """Writes the HEVC stream of an MP4/MOV/MKV file as a raw Annex B stream (same NAL
    units: hvcC parameter sets first, then each packet's length-prefixed NAL units)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        hvcc = bytes(s.codec_context.extradata)
        length_size = (hvcc[21] & 3) + 1
        nals = hvcc_nals(hvcc)
        for pkt in c.demux(s):
            b, i = bytes(pkt), 0
            while i < len(b):
                n = int.from_bytes(b[i : i + length_size], "big")
                nals.append(b[i + length_size : i + length_size + n])
                i += length_size + n
    with open(out, "wb") as f:
        f.write(join(nals))
