"""Per-picture bitstream priors in decoding order (no pixel decoding)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from . import _core
from .io.demux import (check_path, feed_extradata, iter_packets, named_errors, open_container, packet_offset,
                       select_stream)

# Per-4x4 arrays, in the order of ../shared/corpus/SCHEMA.md.
BLOCK_ARRAYS = (
    "pred_mode",
    "cu_log2",
    "part_mode",
    "merge_flag",
    "inter_dir",
    "mv",
    "ref_idx",
    "ref_poc",
    "qp_y",
    "tu_log2",
    "residual",
    "intra_mode",
    "pcm_flag",
    "transquant_bypass",
)

SLICE_TYPES = {0: "B", 1: "P", 2: "I"}
RAW_EXTENSIONS = {".hevc", ".265", ".h265", ".bit", ".bin"}


def referenced_pocs(slices) -> "list[int] | None":
    """Sorted POCs that any of the slices references (any list), or None without slices."""
    return sorted({r for s in slices for lst in s["ref_poc"] for r in lst}) if slices else None


class PicturePriors:
    """What the bitstream says about one picture.

    Attributes mirror the schema: ``poc``, ``nal_type``, ``slice_type`` (0 B, 1 P, 2 I),
    ``temporal_id``, ``decode_index``, coded ``width``/``height``, ``conf_win`` (left, right,
    top, bottom), ``bit_depth``, ``chroma_format``. Per-4x4 arrays (``pred_mode``, ``mv``,
    ...) are read-only NumPy views of the parser's memory, shaped ``[Gh, Gw, ...]`` over the
    coded picture.
    """

    __slots__ = ("_pic", "_arrays", "_valid", "_refs")

    def __init__(self, pic: "_core.Picture"):
        self._pic = pic
        self._arrays = None
        self._valid = None
        self._refs = False  # not computed yet (None: unknown)

    # picture level
    poc = property(lambda self: self._pic.poc)
    nal_type = property(lambda self: self._pic.nal_type)
    slice_type = property(lambda self: self._pic.slice_type)
    temporal_id = property(lambda self: self._pic.temporal_id)
    decode_index = property(lambda self: self._pic.decode_index)
    cvs_index = property(lambda self: self._pic.cvs_index)
    output_flag = property(lambda self: self._pic.pic_output_flag)
    width = property(lambda self: self._pic.width)
    height = property(lambda self: self._pic.height)
    conf_win = property(lambda self: self._pic.conf_win)
    bit_depth = property(lambda self: self._pic.bit_depth)
    bit_depth_chroma = property(lambda self: self._pic.bit_depth_chroma)
    chroma_format = property(lambda self: self._pic.chroma_format)
    ctb_size = property(lambda self: self._pic.ctb_size)
    num_slice_segments = property(lambda self: self._pic.num_slice_segments)
    errors = property(lambda self: list(self._pic.errors))
    slices = property(lambda self: self._pic.slices)

    @property
    def referenced_pocs(self):
        """Sorted POCs that any slice of the picture references (any list), or None when the
        picture has no slice data; cached (the rasterizer asks for it on every flow)."""
        if self._refs is False:
            self._refs = referenced_pocs(self._pic.slices)
        return self._refs

    @property
    def picture_type(self) -> str:
        """'I', 'P' or 'B' from the first slice."""
        return SLICE_TYPES[self._pic.slice_type]

    @property
    def cropped_size(self) -> tuple[int, int]:
        """(width, height) after the conformance window."""
        l, r, t, b = self.conf_win
        return self.width - l - r, self.height - t - b

    @property
    def ctb_decoded(self) -> np.ndarray:
        """uint8 [H_ctb, W_ctb]: 1 where the CTB's slice data was decoded without error."""
        return self._pic.ctb_decoded

    @property
    def complete(self) -> bool:
        """True if every CTB was decoded without error (nothing concealed)."""
        return self._pic.num_ctb_decoded == self.ctb_decoded.size

    @property
    def valid(self) -> np.ndarray:
        """bool [Gh, Gw] on the 4x4 grid of the arrays: True where the priors were decoded.

        False marks blocks of CTBs that were concealed (damaged or missing slice data): there
        the arrays hold the placeholder "intra, no motion, picture QP, one CTB-sized CU", which
        says nothing about the content. Consumers should give such blocks no confidence (the
        flow rasterizer weights them 0). Read-only; all True for a complete picture.
        """
        if self._valid is None:
            c = self.ctb_size // 4
            ctb = self.ctb_decoded.astype(bool)
            gh, gw = (self.height + 3) // 4, (self.width + 3) // 4
            v = np.ascontiguousarray(np.repeat(np.repeat(ctb, c, axis=0), c, axis=1)[:gh, :gw])
            v.flags.writeable = False
            self._valid = v
        return self._valid

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._pic.arrays()
        return self._arrays

    def __getattr__(self, name):
        if name in BLOCK_ARRAYS:
            return self.arrays[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (
            f"<PicturePriors decode_index={self.decode_index} poc={self.poc} "
            f"type={self.picture_type} nal_type={self.nal_type} {self.width}x{self.height}>"
        )


# Parser limits accepted by make_decoder, extract() and open(); defaults in
# _core.Decoder.default_limits (csrc/hevc/limits.h, README "Hostile input").
LIMITS = tuple(_core.Decoder.default_limits)


def make_decoder(strict: bool = False, **limits) -> "_core.Decoder":
    """The parser with resource limits (see LIMITS; 0 or None keeps the default)."""
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise TypeError(f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(LIMITS)}")
    return _core.Decoder(strict=strict, **{k: v for k, v in limits.items() if v})


def is_raw_hevc(path: str | os.PathLike) -> bool:
    """True for an Annex B elementary stream (by extension or by its first bytes)."""
    p = Path(path)
    if p.suffix.lower() in RAW_EXTENSIONS:
        return True
    with open(p, "rb") as f:
        head = f.read(4)
    return head[:3] == b"\x00\x00\x01" or head == b"\x00\x00\x00\x01"


def _finished(decoder: "_core.Decoder") -> list:
    """Pictures finished since the last call, decoding order. The output-order queue, which
    decoding-order readers do not use, is emptied too: it would keep every picture alive."""
    decoder.pop_output()
    return decoder.pop_decoded()


def iter_pictures(decoder: "_core.Decoder", chunks) -> Iterator["_core.Picture"]:
    """Feeds Annex B chunks and yields finished pictures as they complete.

    The parser stops after each finished picture (``yield_pictures=1``), so a chunk full of
    tiny pictures never holds more than one in memory.
    """
    for chunk in chunks:
        more = decoder.push_annexb(chunk, yield_pictures=1)
        yield from _finished(decoder)
        while more:
            more = decoder.push_annexb(b"", yield_pictures=1)
            yield from _finished(decoder)
    while decoder.push_annexb(b"", final=True, yield_pictures=1):
        yield from _finished(decoder)
    decoder.flush()
    yield from _finished(decoder)


def _file_chunks(path, size=1 << 20):
    with open(path, "rb") as f:
        while True:
            b = f.read(size)
            if not b:
                return
            yield b


def _container_pictures(path: str, decoder: "_core.Decoder") -> Iterator["_core.Picture"]:
    with open_container(path, raw=False) as c:
        s = select_stream(c)
        length_size = feed_extradata(decoder, s)
        for pkt in iter_packets(c, s, path):
            decoder.push_packet(pkt, length_size=length_size, offset=packet_offset(pkt))
            yield from _finished(decoder)
    decoder.flush()
    yield from _finished(decoder)


def extract(path: str | os.PathLike, *, strict: bool = False, **limits) -> Iterator[PicturePriors]:
    """Yields the priors of every decoded picture of an HEVC file, in decoding order.

    Raw Annex B files are read by the C++ parser directly; MP4/MOV/MKV are demuxed with PyAV
    (no pixel decoding). ``strict=True`` raises :class:`bitsr.BitstreamError` on the first
    damaged NAL unit instead of concealing it. ``limits`` (``max_luma_samples``,
    ``max_dimension``, ``max_slice_segments``, ``max_dpb_pictures``, ``max_nal_size``) bound
    what the parser accepts (:class:`bitsr.LimitError` beyond). Memory stays bounded: only
    pictures still needed as references are kept by the parser.

    Raises FileNotFoundError for a missing path, :class:`bitsr.UnsupportedStreamError` for a
    container without HEVC video, and :class:`bitsr.BitstreamError` for anything that is not
    a readable HEVC stream (a directory, an empty file, no decodable picture, a container
    FFmpeg cannot read).
    """
    path = check_path(path)  # path errors now, not at the first next()
    # H.264 dispatch (bitsr/io/h264.py): priors from FFmpeg's exported side data
    from .io.h264 import extract_h264, is_h264

    if is_h264(path):
        return extract_h264(path, strict=strict, **limits)
    dec = make_decoder(strict, **limits)
    return _extract(path, dec)


def _extract(path: str, dec: "_core.Decoder") -> Iterator[PicturePriors]:
    pics = iter_pictures(dec, _file_chunks(path)) if is_raw_hevc(path) else _container_pictures(path, dec)
    n = 0
    with named_errors(path):
        for pic in pics:
            n += 1
            yield PicturePriors(pic)
    if n == 0:
        raise _core.BitstreamError(f"{path}: no decodable HEVC picture found" + _warning_summary(dec))


def _warning_summary(dec: "_core.Decoder", n: int = 3) -> str:
    w = list(dec.warnings)
    if dec.num_skipped_pictures:
        w.insert(0, f"{dec.num_skipped_pictures} picture(s) skipped before the first IRAP picture or as RASL")
    return f" ({'; '.join(w[:n])}{'; ...' if len(w) > n else ''})" if w else ""
