"""Writes seed inputs for the fuzz targets into a directory (never commit them).

Sources: streams encoded at run time with PyAV's libx265 (tests/streams.py, covering
B-frames, slices, WPP, lossless, AMP, weighted prediction, 4:0:0/4:2:2/4:4:4, 10-bit, ...)
and the small streams of the shared corpus when it is present. Each stream becomes one
seed of fuzz_annexb (the stream itself) and three seeds of fuzz_nal (length-prefixed
access units, an hvcC record plus access units, bare NAL units), in the formats those
targets parse (see their headers).

Usage: python tools/fuzz/make_seeds.py OUTDIR [--max-bytes N] [--no-encode]
"""
from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (name, frames, width, height, x265 params, pix_fmt)
ENCODED = [
    ("ipb", 6, 64, 64, "bframes=3:ref=3:keyint=4", "yuv420p"),
    ("slices", 4, 128, 64, "slices=3:ctu=16:min-cu-size=8", "yuv420p"),
    ("wpp", 4, 96, 96, "wpp=1:ctu=16:bframes=1", "yuv420p"),
    ("lossless", 3, 64, 48, "lossless=1:ctu=16", "yuv420p"),
    ("amp", 4, 96, 64, "amp=1:rect=1:ctu=32:weightp=1:weightb=1:bframes=2", "yuv420p"),
    ("opengop", 8, 64, 64, "keyint=4:open-gop=1:bframes=2", "yuv420p"),
    ("tskip", 3, 64, 64, "tskip=1:rdoq-level=2:signhide=0:sao=0", "yuv420p"),
    ("cip", 4, 64, 64, "constrained-intra=1:ctu=16:max-tu-size=8:tu-intra-depth=3:tu-inter-depth=3", "yuv420p"),
    ("yuv444", 3, 64, 64, "ctu=16", "yuv444p"),
    ("yuv422_10", 3, 64, 64, "ctu=16", "yuv422p10le"),
    ("gray", 3, 64, 64, "ctu=16", "gray"),
    ("aq", 4, 80, 48, "aq-mode=2:cu-qp-delta=1:ctu=16:qg-size=8", "yuv420p"),
]


def split_nals(data: bytes) -> list[bytes]:
    out, i, starts = [], 0, []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        nal = data[s:e].rstrip(b"\x00")
        if nal:
            out.append(nal)
    return out


def access_units(nals: list[bytes]) -> list[list[bytes]]:
    aus: list[list[bytes]] = []
    cur: list[bytes] = []
    has_vcl = False
    for n in nals:
        t = (n[0] >> 1) & 0x3F
        vcl = t < 32
        first = vcl and len(n) > 2 and n[2] & 0x80
        starts_au = has_vcl and (first or t in (32, 33, 34, 35, 39))
        if starts_au:
            aus.append(cur)
            cur, has_vcl = [], False
        cur.append(n)
        has_vcl |= vcl
    if cur:
        aus.append(cur)
    return aus


def hvcc(nals: list[bytes]) -> bytes:
    arrays = {}
    for n in nals:
        t = (n[0] >> 1) & 0x3F
        if t in (32, 33, 34):
            arrays.setdefault(t, []).append(n)
    rec = bytearray([1] + [0] * 20 + [0xFF, len(arrays)])  # lengthSizeMinusOne = 3
    for t, ns in arrays.items():
        rec += bytes([0x80 | t]) + struct.pack(">H", len(ns))
        for n in ns:
            rec += struct.pack(">H", len(n)) + n
    return bytes(rec)


def records(items: list[bytes]) -> bytes:
    return b"".join(struct.pack(">H", len(x)) + x for x in items if len(x) < 65536)


def nal_seeds(stream: bytes) -> list[bytes]:
    nals = split_nals(stream)
    aus = [b"".join(struct.pack(">I", len(n)) + n for n in au) for au in access_units(nals)]
    return [
        bytes([0x00]) + records(aus),  # length-prefixed access units, 4-byte lengths
        bytes([0x04]) + records([hvcc(nals)] + aus),  # hvcC + access units
        bytes([0x08]) + records(nals),  # bare NAL units
    ]


def encoded_streams():
    sys.path.insert(0, str(ROOT / "tests"))
    from streams import make_hevc  # noqa: E402

    for name, frames, w, h, params, pix in ENCODED:
        try:
            yield name, make_hevc(f"seed-{name}", frames=frames, width=w, height=h, x265_params=params,
                                  pix_fmt=pix).read_bytes()
        except Exception as e:  # an x265 build without an option: skip that seed
            print(f"seed {name}: not encoded ({e})", file=sys.stderr)


def corpus_streams(max_bytes: int):
    sys.path.insert(0, str(ROOT))
    from bitsr._paths import shared_dir

    sh = shared_dir()
    if sh is None:
        return
    base = sh / "corpus" / "hevc"
    for p in sorted(base.glob("*")) + sorted((base / "malformed").glob("*")):
        if p.suffix in (".h265", ".265", ".hevc", ".bin") and p.stat().st_size <= max_bytes:
            yield p.stem, p.read_bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--max-bytes", type=int, default=24000, help="largest corpus stream to use")
    ap.add_argument("--no-encode", action="store_true", help="only the shared corpus")
    args = ap.parse_args()
    out = Path(args.outdir)
    (out / "annexb").mkdir(parents=True, exist_ok=True)
    (out / "nal").mkdir(parents=True, exist_ok=True)
    streams = list(corpus_streams(args.max_bytes))
    if not args.no_encode:
        streams += list(encoded_streams())
    for name, data in streams:
        (out / "annexb" / f"{name}.bin").write_bytes(data)
        for k, seed in enumerate(nal_seeds(data)):
            h = hashlib.sha1(seed).hexdigest()[:8]
            (out / "nal" / f"{name}-{k}-{h}.bin").write_bytes(seed)
    print(f"{len(streams)} streams -> {out}/annexb, {out}/nal", file=sys.stderr)
    return 0 if streams else 1


if __name__ == "__main__":
    raise SystemExit(main())
