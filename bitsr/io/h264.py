"""H.264 input: priors from what FFmpeg's decoder exports through PyAV.

bitsr has no H.264 parser. FFmpeg's decoder, asked with ``flags2=+export_mvs`` and
``export_side_data=venc_params``, attaches to every output frame its motion vectors
(AV_FRAME_DATA_MOTION_VECTORS: one per partition and list, 16x16/16x8/8x16/8x8 blocks,
quarter-pel) and its per-macroblock QP (AV_FRAME_DATA_VIDEO_ENC_PARAMS). Those are turned
into the HEVC schema's per-4x4 arrays and wrapped in :class:`bitsr.PicturePriors`, so code
written for HEVC priors (the flow rasterizer) reads them unchanged.

What FFmpeg does not export is filled in by stated rules:

* Decode order: each packet carries its index through the decoder (``copy_opaque``), so a
  frame knows its ``decode_index``.
* References: FFmpeg says only which list a vector uses (its ``source`` is -1 for list 0 and
  +1 for list 1), not the reference index. A list-0 vector is taken to point at the nearest
  *earlier-displayed* reference picture, a list-1 vector at the nearest *later-displayed*
  one, among the pictures decoded before the current one since the last IDR. Reference
  pictures are those whose slice NAL units have nal_ref_idc != 0 (read from the packets).
  ``ref_idx`` is then 0, ``poc`` and ``ref_poc`` are display indices (frame counter in
  output order), so ``ref_poc - poc`` is the signed temporal distance as for HEVC.
* Partitions: ``cu_log2`` is 4 (the macroblock); ``part_mode`` 0/1/2/3 for 16x16, 16x8,
  8x16 and 8x8 macroblocks. FFmpeg exports one vector per 8x8 block, taken from its first
  sub-block, so 8x4/4x8/4x4 sub-partitions are lost; a sub-block of a B_8x8 macroblock that
  does not use a list shows a zero vector for it.
* Not exported at all: skip (``pred_mode`` is 0 inter or 1 intra, never 2), merge/direct
  flags, transform sizes and coded-block patterns (``tu_log2`` = 4, ``residual`` = 1, the
  conservative answer), intra modes (``intra_mode`` 1 for intra blocks), weights.

This module is the H.264 half of :class:`bitsr.Reader` (:class:`H264Source`) and of
:func:`bitsr.extract` (:func:`extract_h264`).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import av
import numpy as np

from .. import _core
from ..priors import PicturePriors
from .demux import decode, iter_packets, open_container, select_stream
from .formats import is_raw
from .hevc import check_limits

UNUSED_POC = np.iinfo(np.int32).min
# A decode index that no output frame has claimed after this many later packets produced
# output is taken as dropped (H.264 reorders by at most 16 frames).
_REORDER_LIMIT = 34
# AVPictureType (I 1, P 2, B 3, SI 5, SP 6) -> slice_type as in the HEVC schema (I 2, P 1, B 0)
_PICT_TYPE_TO_SLICE = {1: 2, 2: 1, 3: 0, 5: 2, 6: 1}
# part_mode by [w // 8 - 1, h // 8 - 1] of the exported block: 8x8 NxN 3, 8x16 Nx2N 2,
# 16x8 2NxN 1, 16x16 2Nx2N 0
_PART_LUT = np.array([[3, 2], [1, 0]], np.uint8)


def nal_header_bytes(data: bytes, length_size: int) -> Iterator[int]:
    """First byte of each NAL unit of a packet: length-prefixed (avcC) or Annex B (0)."""
    n = len(data)
    if length_size:
        i = 0
        while i + length_size < n:
            size = int.from_bytes(data[i : i + length_size], "big")
            i += length_size
            if size <= 0:
                return
            yield data[i]
            i += size
        return
    i = data.find(b"\x00\x00\x01")
    while 0 <= i and i + 3 < n:
        yield data[i + 3]
        i = data.find(b"\x00\x00\x01", i + 3)


@dataclass
class _PacketInfo:
    is_reference: bool
    is_idr: bool
    idr_index: int  # decode index of the last IDR at or before this packet (-1: none yet)
    cvs_index: int  # IDR periods before this packet's (0-based)


def packet_info(data: bytes, length_size: int, last_idr: int, index: int, cvs: int) -> _PacketInfo:
    ref = idr = False
    for b in nal_header_bytes(data, length_size):
        t = b & 0x1F
        if t in (1, 5):  # coded slice of a non-IDR / IDR picture
            ref |= (b >> 5) & 3 != 0
            idr |= t == 5
    if idr and last_idr >= 0:
        cvs += 1
    return _PacketInfo(ref, idr, index if idr else last_idr, cvs)


class H264Picture:
    """Duck-types :class:`bitsr._core.Picture` so :class:`bitsr.PicturePriors` wraps it."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def arrays(self) -> dict[str, np.ndarray]:
        return self._arrays

    def __repr__(self) -> str:
        return f"<bitsr.io.h264.H264Picture poc={self.poc} decode_index={self.decode_index}>"


def _bit_depth_and_format(frame: "av.VideoFrame") -> tuple[int, int, int]:
    comps = frame.format.components
    bd = comps[0].bits
    planes = frame.planes
    if len(planes) < 3:
        return bd, bd, 0
    sw = planes[0].width // max(planes[1].width, 1)
    sh = planes[0].height // max(planes[1].height, 1)
    fmt = {(2, 2): 1, (2, 1): 2, (1, 1): 3}.get((sw, sh))
    if fmt is None:
        raise _core.UnsupportedStreamError(f"unsupported chroma layout {frame.format.name}")
    return bd, comps[1].bits, fmt


def _motion_cells(frame: "av.VideoFrame", ch: int, cw: int):
    """mv int16 [ch, cw, 2, 2], used bool [ch, cw, 2], part_mode uint8 [ch, cw] on the grid of
    8x8 cells (FFmpeg exports H.264 vectors for 16x16, 16x8, 8x16 and 8x8 blocks only)."""
    mv = np.zeros((ch, cw, 2, 2), np.int16)
    used = np.zeros((ch, cw, 2), bool)
    part = np.zeros((ch, cw), np.uint8)
    sd = frame.side_data.get("MOTION_VECTORS")
    if sd is None or len(sd) == 0:
        return mv, used, part
    a = sd.to_ndarray()
    w, h = a["w"].astype(np.intp), a["h"].astype(np.intp)
    x0 = (a["dst_x"].astype(np.intp) - w // 2) >> 3  # dst is the block centre
    y0 = (a["dst_y"].astype(np.intp) - h // 2) >> 3
    lst = (a["source"] > 0).astype(np.intp)
    scale = np.maximum(a["motion_scale"].astype(np.int64), 1)
    # to quarter-pel; FFmpeg's H.264 scale is 4, so this is exact there
    q = np.stack([a["motion_x"], a["motion_y"]], -1).astype(np.int64) * 4
    q = np.clip(np.where(scale[:, None] == 4, q // 4, np.round(q / scale[:, None])), -32768, 32767).astype(np.int16)
    code = _PART_LUT[np.clip(w // 8 - 1, 0, 1), np.clip(h // 8 - 1, 0, 1)]
    nx, ny = np.maximum(w // 8, 1), np.maximum(h // 8, 1)
    for dy in (0, 1):
        for dx in (0, 1):
            gy, gx = y0 + dy, x0 + dx
            m = (dx < nx) & (dy < ny) & (gy >= 0) & (gy < ch) & (gx >= 0) & (gx < cw)
            gy, gx, lm = gy[m], gx[m], lst[m]
            mv[gy, gx, lm] = q[m]
            used[gy, gx, lm] = True
            part[gy, gx] = code[m]
    return mv, used, part


def _qp_mbs(frame: "av.VideoFrame", mbh: int, mbw: int, qp_bd_offset: int) -> Optional[np.ndarray]:
    """int8 [mbh, mbw]: QP_Y of each macroblock (FFmpeg exports QP'_Y = QP_Y + QpBdOffset)."""
    ep = frame.side_data.get("VIDEO_ENC_PARAMS")
    if ep is None or ep.nb_blocks == 0:
        return None
    dt = np.dtype({"names": ["src_x", "src_y", "w", "h", "delta_qp"], "formats": ["=i4"] * 5,
                   "offsets": [0, 4, 8, 12, 16], "itemsize": ep.block_size})
    b = np.frombuffer(ep, dtype=dt, count=ep.nb_blocks, offset=ep.blocks_offset)
    q = np.zeros((mbh, mbw), np.int32)
    my, mx = b["src_y"] // 16, b["src_x"] // 16
    ok = (my >= 0) & (my < mbh) & (mx >= 0) & (mx < mbw)
    q[my[ok], mx[ok]] = ep.qp + b["delta_qp"][ok] - qp_bd_offset
    return q.astype(np.int8)


@dataclass
class _Pending:
    """An output frame whose references may not be known yet."""

    decode_index: int
    display_index: int
    info: _PacketInfo
    frame: Optional["av.VideoFrame"]
    mv: np.ndarray
    used: np.ndarray
    part: np.ndarray
    qp: Optional[np.ndarray]
    slice_type: int
    fields: dict = field(default_factory=dict)


class H264Priors:
    """Turns decoded frames (display order) into PicturePriors, resolving each frame's
    references once every frame decoded before it has been output."""

    def __init__(self, *, keep_frames: bool):
        self.keep_frames = keep_frames
        self.packets: dict[int, _PacketInfo] = {}
        self.next_packet = 0
        self.last_idr = -1
        self.idr_count = 0
        self.display_count = 0
        self.resolved: set[int] = set()  # decode indices output (or given up on)
        self.low = 0  # every decode index below this is resolved
        self.max_output = -1
        self.refs: list[tuple[int, int, int]] = []  # (decode, display, idr) of output references

    def on_packet(self, packet: "av.Packet", data: bytes, length_size: int) -> None:
        k = self.next_packet
        self.next_packet += 1
        info = packet_info(data, length_size, self.last_idr, k, self.idr_count)
        self.last_idr, self.idr_count = info.idr_index, info.cvs_index
        self.packets[k] = info
        # PyAV keys opaque objects by id() and forgets the key when any buffer carrying it is
        # freed, so a shared object (small ints are) can vanish while a frame still needs it:
        # give every packet its own tuple.
        packet.opaque = (k,)

    def on_frame(self, f: "av.VideoFrame") -> _Pending:
        tag = f.opaque
        d = tag[0] if isinstance(tag, tuple) else None
        tagged = d is not None and d not in self.resolved
        if not tagged:  # no packet identity (not expected): ready once every packet so far is out
            d = self.next_packet - 1
        info = (self.packets.get(d) if tagged else None) or _PacketInfo(
            int(f.pict_type) == 1, False, self.last_idr, self.idr_count)
        width, height = f.width, f.height
        cw, ch = -(-width // 16) * 16, -(-height // 16) * 16
        bd, bdc, cf = _bit_depth_and_format(f)
        mv, used, part = _motion_cells(f, ch // 8, cw // 8)
        qp = _qp_mbs(f, ch // 16, cw // 16, 6 * (bd - 8))
        p = _Pending(d, self.display_count, info, f if self.keep_frames else None, mv, used, part, qp,
                     _PICT_TYPE_TO_SLICE.get(int(f.pict_type), 2),
                     dict(width=cw, height=ch, conf_win=(0, cw - width, 0, ch - height), bit_depth=bd,
                          bit_depth_chroma=bdc, chroma_format=cf))
        self.display_count += 1
        if tagged:
            self._resolve(d)
        if info.is_reference:
            self.refs.append((d, p.display_index, info.idr_index))
            if len(self.refs) > 64:
                self.refs = sorted(self.refs)[-48:]
        self.max_output = max(self.max_output, d)
        # decode indices that never produced a frame (dropped/erroneous packets)
        while self.low < self.max_output - _REORDER_LIMIT:
            self._resolve(self.low)
        return p

    def finish(self) -> None:
        """End of stream: nothing else will be output."""
        while self.low < self.next_packet:
            self._resolve(self.low)

    def _resolve(self, d: int) -> None:
        if d < self.low:  # output after it was given up on
            return
        self.resolved.add(d)
        while self.low in self.resolved:
            self.resolved.discard(self.low)
            self.packets.pop(self.low - _REORDER_LIMIT * 2, None)
            self.low += 1

    def ready(self, p: _Pending) -> bool:
        """All pictures decoded before `p` have been output, so its references are known."""
        return self.low > p.decode_index

    def priors(self, p: _Pending) -> PicturePriors:
        l0 = l1 = None
        for d, disp, idr in self.refs:
            if d >= p.decode_index or idr != p.info.idr_index:
                continue
            if disp < p.display_index and (l0 is None or disp > l0):
                l0 = disp
            if disp > p.display_index and (l1 is None or disp < l1):
                l1 = disp
        used = p.used  # per 8x8 cell; expanded to the 4x4 grid below
        mv = p.mv
        for lst, ref in ((0, l0), (1, l1)):
            if ref is None and used[..., lst].any():  # no plausible reference (damaged stream)
                used[..., lst] = False
                mv[:, :, lst] = 0
        inter_dir = (used[..., 0] * 1 + used[..., 1] * 2).astype(np.uint8)
        ref_poc = np.full(used.shape, UNUSED_POC, np.int32)
        for lst, ref in ((0, l0), (1, l1)):
            if ref is not None:
                ref_poc[..., lst][used[..., lst]] = ref
        intra = inter_dir == 0
        ch, cw = intra.shape
        errors = []
        qp = p.qp
        if qp is None:
            qp = np.zeros((ch // 2, cw // 2), np.int8)
            errors.append("no per-macroblock QP exported for this frame")
        up = lambda x, k=2: np.repeat(np.repeat(x, k, 0), k, 1)  # noqa: E731
        gh, gw = 2 * ch, 2 * cw
        cu = np.full((gh, gw), 4, np.uint8)
        intra4 = up(intra)
        arrays = {
            "pred_mode": intra4.astype(np.int8),
            "cu_log2": cu,
            "part_mode": up(np.where(intra, 0, p.part).astype(np.uint8)),
            "merge_flag": np.zeros((gh, gw), np.uint8),
            "inter_dir": up(inter_dir),
            "mv": up(mv),
            "ref_idx": up(np.where(used, 0, -1).astype(np.int8)),
            "ref_poc": up(ref_poc),
            "qp_y": up(qp, 4),
            "tu_log2": cu,
            "residual": np.ones((gh, gw), np.uint8),
            "intra_mode": np.where(intra4, 1, 255).astype(np.uint8),
            "pcm_flag": np.zeros((gh, gw), np.uint8),
            "transquant_bypass": np.zeros((gh, gw), np.uint8),
        }
        for a in arrays.values():
            a.flags.writeable = False
        ctb = np.ones((gh // 4, gw // 4), np.uint8)
        ctb.flags.writeable = False
        ref_lists = [[l0] if l0 is not None and used[..., 0].any() else [],
                     [l1] if l1 is not None and used[..., 1].any() else []]
        pic = H264Picture(
            poc=p.display_index, nal_type=5 if p.info.is_idr else 1, slice_type=p.slice_type,
            temporal_id=0, decode_index=p.decode_index, cvs_index=p.info.cvs_index,
            pic_output_flag=True, num_slice_segments=1, generated=False, errors=errors,
            num_ctb_decoded=ctb.size, ctb_decoded=ctb, ctb_size=16, min_cb_size=16,
            is_reference=p.info.is_reference, codec="h264",
            slices=[{"slice_segment_address": 0, "dependent": False, "slice_type": p.slice_type,
                     "ref_poc": ref_lists, "ref_is_long_term": [[False] * len(r) for r in ref_lists],
                     "weights": None, "deblocking_disabled": None, "sao_luma": False, "sao_chroma": False}],
            _arrays=arrays, **p.fields)
        return PicturePriors(pic)


def _open_stream(path: str, threads: int, limits: dict, *, skip_loop_filter: bool, strict: bool):
    """(container, stream, NAL length size or 0 for Annex B) with FFmpeg set to export."""
    check_limits(limits)
    c = open_container(path, "h264" if is_raw(path, "h264") else None)
    try:
        s = select_stream(c, "h264")
        cc = s.codec_context
        _check_size(cc.width, cc.height, limits)
        # Frame threads make FFmpeg's exported vectors nondeterministic (and sometimes drop
        # the packet's opaque); slice threads are safe.
        cc.thread_type = "SLICE"
        cc.thread_count = int(threads)  # 0: FFmpeg picks
        cc.copy_opaque = True
        opts = {"flags2": "+export_mvs", "export_side_data": "venc_params"}
        if skip_loop_filter:  # syntax (vectors, QP) does not depend on the deblocked pixels
            opts["skip_loop_filter"] = "all"
        if strict:  # FFmpeg conceals damage silently unless told to fail
            opts["err_detect"] = "crccheck+bitstream+buffer+explode"
        cc.options = opts
        extra = bytes(cc.extradata or b"")
        length_size = (extra[4] & 3) + 1 if extra[:1] == b"\x01" and len(extra) >= 7 else 0
    except BaseException:
        c.close()
        raise
    return c, s, length_size


def _check_size(width: int, height: int, limits: dict) -> None:
    md, ml = limits.get("max_dimension") or 0, limits.get("max_luma_samples") or 0
    if (md and max(width, height) > md) or (ml and width * height > ml):
        raise _core.LimitError(f"picture size {width}x{height} exceeds the configured limit")


def _frames(container, stream, length_size: int, strict: bool, keep_frames: bool, order: str, path: str,
            warn) -> Iterator[tuple[PicturePriors, Optional["av.VideoFrame"]]]:
    """(priors, frame) in display order (`order="display"`) or decode order ("decode").
    FFmpeg errors raise BitstreamError when `strict`, else go to `warn(message)`."""
    st = H264Priors(keep_frames=keep_frames)
    cc = stream.codec_context
    waiting: list = []  # a heap of (display or decode index, n, pending frame)
    n = 0

    def take(frames):
        nonlocal n
        for f in frames:
            if strict and f.is_corrupt:
                raise _core.BitstreamError(f"{path}: FFmpeg reports frame {st.display_count} as corrupt")
            p = st.on_frame(f)
            heapq.heappush(waiting, (p.decode_index if order == "decode" else p.display_index, n, p))
            n += 1

    def release(final: bool = False):
        while waiting and (final or st.ready(waiting[0][2])):
            p = heapq.heappop(waiting)[2]
            yield st.priors(p), p.frame

    for packet in iter_packets(container, stream, path):
        st.on_packet(packet, bytes(packet), length_size)
        take(decode(cc, packet, path, strict, warn))
        yield from release()
    take(decode(cc, None, path, strict, warn))
    st.finish()
    yield from release(final=True)


def extract_h264(path: str, *, strict: bool = False, threads: int = 0, max_in_flight: int = 0,
                 **limits) -> Iterator[PicturePriors]:
    """Priors of every frame of an H.264 file (checked path) in decode order. FFmpeg decodes
    the pixels to export them (with the loop filter skipped: no exported syntax depends on
    it). Opening errors are raised here, at call time, like the HEVC path's."""
    c, s, ls = _open_stream(path, threads, limits, skip_loop_filter=True, strict=strict)
    return _extract(c, s, ls, strict, path)


def _extract(c, s, ls, strict, path) -> Iterator[PicturePriors]:
    n = 0
    with c:
        for pri, _ in _frames(c, s, ls, strict, False, "decode", path, lambda msg: None):
            n += 1
            yield pri
    if n == 0:
        raise _core.BitstreamError(f"{path}: no decodable H.264 picture found")


class H264Source:
    """The H.264 half of :class:`bitsr.Reader`: (priors, FFmpeg frame, pts) in display order."""

    codec = "h264"
    num_skipped_pictures = 0  # FFmpeg does not say; H.264 has no RASL pictures to skip

    def __init__(self, path: str, *, strict: bool, threads: int, limits: dict, warn: Callable[[str], None]):
        self.path, self.strict, self._warn = path, strict, warn
        self.container, self.stream, self._length_size = _open_stream(
            path, threads, limits, skip_loop_filter=False, strict=strict)
        self.is_raw = self.container.format.name == "h264"

    def empty_message(self) -> str:
        return f"{self.path}: no decodable H.264 picture found"

    def frames(self) -> Iterator[tuple[PicturePriors, "av.VideoFrame", Optional[int]]]:
        for pri, f in _frames(self.container, self.stream, self._length_size, self.strict, True, "display",
                              self.path, self._warn):
            yield pri, f, f.pts
