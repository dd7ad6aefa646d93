"""Helpers for hostile-input tests.

- Hand-made HEVC syntax: a bit writer, NAL framing with emulation prevention, and a minimal
  VPS/SPS/PPS/slice-header generator whose fields can be set to hostile values. Slice data
  is whatever bytes the test passes (the bugs these streams reproduce sit in headers and in
  the DPB, before or at the start of CTU parsing).
- Mutations of real streams (bit flips, byte overwrites, cuts, splices) from a seeded RNG.
- `check_priors`: every array of a parsed picture holds values the schema allows, whatever
  the input was (run with BITSR_POISON=1 it also catches blocks the parser never wrote).
"""
from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from annexb import escape  # emulation prevention, shared with the stream helpers


class BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> "BitWriter":
        for i in range(n - 1, -1, -1):
            self.bits.append((v >> i) & 1)
        return self

    def flag(self, v) -> "BitWriter":
        return self.u(1, 1 if v else 0)

    def ue(self, v: int) -> "BitWriter":
        v += 1
        n = v.bit_length()
        return self.u(n - 1, 0).u(n, v)

    def se(self, v: int) -> "BitWriter":
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def trailing(self) -> "BitWriter":  # rbsp_trailing_bits / byte_alignment
        self.bits.append(1)
        while len(self.bits) % 8:
            self.bits.append(0)
        return self

    def bytes(self) -> bytes:
        assert len(self.bits) % 8 == 0
        return bytes(int("".join(map(str, self.bits[i:i + 8])), 2) for i in range(0, len(self.bits), 8))


def nal(nal_type: int, rbsp: bytes, tid: int = 0) -> bytes:
    """Annex B NAL unit: start code, header, escaped payload."""
    return b"\x00\x00\x00\x01" + bytes([nal_type << 1, tid + 1]) + escape(rbsp)


def ceil_log2(v: int) -> int:
    r = 0
    while (1 << r) < v:
        r += 1
    return r


def _ptl(w: BitWriter) -> None:
    w.u(2, 0).flag(0).u(5, 1).u(32, 0x60000000)  # Main profile
    w.flag(1).flag(0).flag(0).flag(1).u(32, 0).u(12, 0)
    w.u(8, 93)  # level 3.1


def vps() -> bytes:
    w = BitWriter().u(4, 0).flag(1).flag(1).u(6, 0).u(3, 0).flag(1).u(16, 0xFFFF)
    _ptl(w)
    w.flag(0).ue(4).ue(0).ue(0)  # ordering info for the one sub-layer
    w.u(6, 0).ue(0).flag(0).flag(0)  # max_layer_id, num_layer_sets-1, timing, extension
    return nal(32, w.trailing().bytes())


@dataclass
class Sps:
    sps_id: int = 0
    width: int = 64
    height: int = 64
    log2_max_poc_lsb: int = 8
    max_dec_pic_buffering: int = 5
    num_reorder: int = 0
    max_latency_increase_plus1: int = 0
    log2_min_cb: int = 3
    log2_ctb: int = 4
    log2_max_tb: int = 4
    long_term: bool = False
    temporal_mvp: bool = False
    extended_precision: bool = False  # range extension flags
    persistent_rice: bool = False

    def nal(self) -> bytes:
        w = BitWriter().u(4, 0).u(3, 0).flag(1)
        _ptl(w)
        w.ue(self.sps_id).ue(1).ue(self.width).ue(self.height).flag(0)  # 4:2:0, no conformance window
        w.ue(0).ue(0).ue(self.log2_max_poc_lsb - 4)
        w.flag(1).ue(self.max_dec_pic_buffering - 1).ue(self.num_reorder).ue(self.max_latency_increase_plus1)
        w.ue(self.log2_min_cb - 3).ue(self.log2_ctb - self.log2_min_cb)
        w.ue(0).ue(self.log2_max_tb - 2)  # TB 4..2^log2_max_tb
        w.ue(0).ue(0)  # transform hierarchy depths
        w.flag(0).flag(0).flag(0).flag(0)  # scaling list, AMP, SAO, PCM
        w.ue(0)  # no short-term RPS in the SPS
        w.flag(self.long_term)
        if self.long_term:
            w.ue(0)
        w.flag(self.temporal_mvp).flag(0).flag(0)  # strong intra smoothing, VUI
        rext = self.extended_precision or self.persistent_rice
        w.flag(rext)
        if rext:
            w.flag(1).flag(0).flag(0).flag(0).u(4, 0)
            w.flag(0).flag(0).flag(0).flag(0).flag(self.extended_precision).flag(0).flag(0)
            w.flag(self.persistent_rice).flag(0)
        return nal(33, w.trailing().bytes())


@dataclass
class Pps:
    pps_id: int = 0
    sps_id: int = 0
    dependent_slices: bool = False
    cu_qp_delta: bool = False

    def nal(self) -> bytes:
        w = BitWriter().ue(self.pps_id).ue(self.sps_id).flag(self.dependent_slices).flag(0).u(3, 0)
        w.flag(0).flag(0).ue(0).ue(0).se(0)  # sign hiding, cabac_init, ref defaults, init_qp
        w.flag(0).flag(0).flag(self.cu_qp_delta)  # cip, tskip
        if self.cu_qp_delta:
            w.ue(0)
        w.se(0).se(0).flag(0)  # cb/cr offsets
        w.flag(0).flag(0).flag(0).flag(0).flag(0)  # weighted, transquant bypass, tiles, WPP
        w.flag(0).flag(0).flag(0).flag(0).ue(0).flag(0).flag(0)
        return nal(34, w.trailing().bytes())


@dataclass
class Slice:
    """A slice segment NAL unit: header fields, then `data` as slice_segment_data()."""

    sps: Sps
    nal_type: int = 19  # IDR_W_RADL
    first: bool = True
    address: int = 0
    slice_type: int = 2  # I
    poc_lsb: int = 0
    neg_deltas: list = field(default_factory=list)  # delta POCs (negative), all used by curr
    long_term: list = field(default_factory=list)  # (poc_lsb_lt, msb_present, msb_cycle)
    temporal_mvp: bool = False
    data: bytes = b"\xff" * 8
    pps_id: int = 0
    dependent_slices_enabled: bool = False

    dependent: bool = False
    qp_delta: int = 0

    def header(self) -> BitWriter:
        s = self.sps
        w = BitWriter().flag(self.first)
        if 16 <= self.nal_type <= 23:
            w.flag(0)
        w.ue(self.pps_id)
        if not self.first:
            if self.dependent_slices_enabled:
                w.flag(self.dependent)
            ctbs = (((s.width + (1 << s.log2_ctb) - 1) >> s.log2_ctb)
                    * ((s.height + (1 << s.log2_ctb) - 1) >> s.log2_ctb))
            w.u(ceil_log2(ctbs), self.address)
        if self.dependent:
            return w
        w.ue(self.slice_type)
        if self.nal_type not in (19, 20):
            w.u(s.log2_max_poc_lsb, self.poc_lsb)
            w.flag(0)  # short_term_ref_pic_set_sps_flag: coded here (idx 0: no inter-RPS flag)
            w.ue(len(self.neg_deltas)).ue(0)
            prev = 0
            for d in self.neg_deltas:
                w.ue(prev - d - 1).flag(1)
                prev = d
            if s.long_term:
                w.ue(len(self.long_term))
                for lsb, msb_present, cycle in self.long_term:
                    w.u(s.log2_max_poc_lsb, lsb).flag(1).flag(msb_present)
                    if msb_present:
                        w.ue(cycle)
            if s.temporal_mvp:
                w.flag(self.temporal_mvp)
        if self.slice_type != 2:
            w.flag(0)  # num_ref_idx_active_override_flag
            if self.slice_type == 0:
                w.flag(0)  # mvd_l1_zero_flag
            if self.temporal_mvp and self.slice_type == 0:
                w.flag(1)  # collocated_from_l0_flag
            w.ue(0)  # five_minus_max_num_merge_cand
        w.se(self.qp_delta)  # slice_qp_delta
        return w

    def nal(self) -> bytes:
        w = self.header().trailing()
        return nal(self.nal_type, w.bytes() + self.data)


def stream(*parts: bytes) -> bytes:
    return b"".join(parts)


def parameter_sets(sps: Sps, pps: Pps | None = None) -> bytes:
    return vps() + sps.nal() + (pps or Pps(sps_id=sps.sps_id)).nal()


# --- CABAC: a minimal encoder for I slices of 8x8 intra CUs -------------------------------

# Tables 9-52 (rangeTabLps) and 9-53 (transIdxLps) of H.265.
_RANGE_LPS = [
    (128, 176, 208, 240), (128, 167, 197, 227), (128, 158, 187, 216), (123, 150, 178, 205), (116, 142, 169, 195),
    (111, 135, 160, 185), (105, 128, 152, 175), (100, 122, 144, 166), (95, 116, 137, 158), (90, 110, 130, 150),
    (85, 104, 123, 142), (81, 99, 117, 135), (77, 94, 111, 128), (73, 89, 105, 122), (69, 85, 100, 116),
    (66, 80, 95, 110), (62, 76, 90, 104), (59, 72, 86, 99), (56, 69, 81, 94), (53, 65, 77, 89), (51, 62, 73, 85),
    (48, 59, 69, 80), (46, 56, 66, 76), (43, 53, 63, 72), (41, 50, 59, 69), (39, 48, 56, 65), (37, 45, 54, 62),
    (35, 43, 51, 59), (33, 41, 48, 56), (32, 39, 46, 53), (30, 37, 43, 50), (29, 35, 41, 48), (27, 33, 39, 45),
    (26, 31, 37, 43), (24, 30, 35, 41), (23, 28, 33, 39), (22, 27, 32, 37), (21, 26, 30, 35), (20, 24, 29, 33),
    (19, 23, 27, 31), (18, 22, 26, 30), (17, 21, 25, 28), (16, 20, 23, 27), (15, 19, 22, 25), (14, 18, 21, 24),
    (14, 17, 20, 23), (13, 16, 19, 22), (12, 15, 18, 21), (12, 14, 17, 20), (11, 14, 16, 19), (11, 13, 15, 18),
    (10, 12, 15, 17), (10, 12, 14, 16), (9, 11, 13, 15), (9, 11, 12, 14), (8, 10, 12, 14), (8, 9, 11, 13),
    (7, 9, 11, 12), (7, 9, 10, 12), (7, 8, 10, 11), (6, 8, 9, 11), (6, 7, 9, 10), (6, 7, 8, 9), (2, 2, 2, 2)]
_TRANS_LPS = [0, 0, 1, 2, 2, 4, 4, 5, 6, 7, 8, 9, 9, 11, 11, 12, 13, 13, 15, 15, 16, 16, 18, 18, 19, 19, 21, 21, 22, 22,
              23, 24, 24, 25, 26, 26, 27, 27, 28, 29, 29, 30, 30, 30, 31, 32, 32, 33, 33, 33, 34, 34, 35, 35, 35, 36,
              36, 36, 37, 37, 37, 38, 38, 63]
# initValue for initType 0 (I slices) of the contexts the writer uses (Tables 9-5 ff.)
_INIT_I = {"split_cu_flag": (139, 141, 157), "part_mode": (184,), "prev_intra_luma_pred_flag": (184,),
           "intra_chroma_pred_mode": (63,), "cbf_cbcr": (94,), "cbf_luma": (111, 141), "last_x": (125,),
           "last_y": (125,), "greater1": (140, 92), "greater2": (138,), "cu_qp_delta_abs": (154, 154)}


class CabacWriter:
    """Arithmetic encoder of 9.3.4.3's decoder, as in the H.264/HEVC encoder description."""

    def __init__(self):
        self.low, self.range, self.outstanding, self.first = 0, 510, 0, True
        self.bits = BitWriter()

    def _put(self, b: int) -> None:
        if self.first:
            self.first = False
        else:
            self.bits.u(1, b)
        while self.outstanding:
            self.bits.u(1, 1 - b)
            self.outstanding -= 1

    def _renorm(self) -> None:
        while self.range < 256:
            if self.low < 256:
                self._put(0)
            elif self.low >= 512:
                self.low -= 512
                self._put(1)
            else:
                self.low -= 256
                self.outstanding += 1
            self.range <<= 1
            self.low <<= 1

    def decision(self, ctx: list, b: int) -> None:
        state, mps = ctx
        lps = _RANGE_LPS[state][(self.range >> 6) & 3]
        self.range -= lps
        if b != mps:
            self.low += self.range
            self.range = lps
            if state == 0:
                ctx[1] = 1 - mps
            ctx[0] = _TRANS_LPS[state]
        else:
            ctx[0] = min(state + 1, 62)
        self._renorm()

    def bypass(self, b: int) -> None:
        self.low <<= 1
        if b:
            self.low += self.range
        if self.low >= 1024:
            self._put(1)
            self.low -= 1024
        elif self.low < 512:
            self._put(0)
        else:
            self.low -= 512
            self.outstanding += 1

    def bypass_bits(self, v: int, n: int) -> None:
        for i in range(n - 1, -1, -1):
            self.bypass((v >> i) & 1)

    def terminate(self, b: int) -> None:
        self.range -= 2
        if b:
            self.low += self.range
            self.range = 2
            self._renorm()
            self._put((self.low >> 9) & 1)
            self.bits.u(2, ((self.low >> 7) & 3) | 1)  # ends with rbsp_stop_one_bit
        else:
            self._renorm()

    def data(self) -> bytes:
        while len(self.bits.bits) % 8:
            self.bits.bits.append(0)
        return self.bits.bytes()


def _contexts(qp: int = 26) -> dict:
    out = {}
    for name, values in _INIT_I.items():
        ctxs = []
        for v in values:
            m, n = (v >> 4) * 5 - 45, ((v & 15) << 3) - 16
            pre = max(1, min(126, ((m * qp) >> 4) + n))
            ctxs.append([pre - 64, 1] if pre > 63 else [63 - pre, 0])
        out[name] = ctxs
    return out


@dataclass
class Cu:
    """What one 8x8 intra CU codes: planar luma, chroma = luma, and optionally one DC
    coefficient of level 3 + `escape` (coeff_abs_level_remaining), after a cu_qp_delta_abs
    of `qp_delta_abs` when the PPS enables it."""
    escape: int | None = None
    qp_delta_abs: int = 0


class IntraSliceWriter:
    """slice_segment_data() for SPS(log2_min_cb=3, log2_ctb=4, log2_max_tb=3) I slices:
    every 16x16 CTB split into four 8x8 intra CUs. Contexts (and StatCoeff) carry over
    between calls like the decoder's dependent-slice storage; each call is one segment."""

    def __init__(self, sps: Sps, pps: Pps):
        assert (sps.log2_min_cb, sps.log2_ctb, sps.log2_max_tb) == (3, 4, 3)
        self.sps, self.pps = sps, pps
        self.w_ctb = (sps.width + 15) // 16
        self.ctx = _contexts()
        self.stat = 0  # StatCoeff[2] (luma, regular transform)
        self.decoded: set = set()  # CTBs (raster) written so far in this slice

    def segment(self, first_ctb: int, cus: list[list[Cu]], end_of_segment: bool = True) -> bytes:
        e = CabacWriter()
        for k, ctb_cus in enumerate(cus):
            rs = first_ctb + k
            self._ctu(e, rs, ctb_cus)
            self.decoded.add(rs)
            e.terminate(1 if (end_of_segment and k == len(cus) - 1) else 0)
        return e.data()

    def _ctu(self, e: CabacWriter, rs: int, cus: list[Cu]) -> None:
        self.qp_delta_coded = False  # one quantization group per CTB
        x0, y0 = (rs % self.w_ctb) * 16, (rs // self.w_ctb) * 16
        left = x0 > 0 and rs - 1 in self.decoded
        above = y0 > 0 and rs - self.w_ctb in self.decoded
        e.decision(self.ctx["split_cu_flag"][int(left) + int(above)], 1)
        for i, cu in enumerate(cus):
            self._cu(e, i, left, cu)

    def _cu(self, e: CabacWriter, i: int, ctb_left: bool, cu: Cu) -> None:
        c = self.ctx
        e.decision(c["part_mode"][0], 1)  # 2Nx2N
        e.decision(c["prev_intra_luma_pred_flag"][0], 1)
        # MPM candidates: planar from an available left / same-CTB above CU, else DC
        a = 0 if (i in (1, 3) or ctb_left) else 1
        b = 0 if i in (2, 3) else 1
        cand = [0, 1, 26] if a == b else [a, b, 26]
        idx = cand.index(0)
        e.bypass(1 if idx else 0)
        if idx:
            e.bypass(1 if idx == 2 else 0)
        e.decision(c["intra_chroma_pred_mode"][0], 0)  # intra_chroma_pred_mode 4
        e.decision(c["cbf_cbcr"][0], 0)
        e.decision(c["cbf_cbcr"][0], 0)
        e.decision(c["cbf_luma"][1], 1 if cu.escape is not None else 0)
        if cu.escape is None:
            return
        if self.pps.cu_qp_delta and not self.qp_delta_coded:
            self.qp_delta_coded = True
            v = cu.qp_delta_abs
            for k in range(min(v, 5)):
                e.decision(c["cu_qp_delta_abs"][1 if k else 0], 1)
            if v < 5:
                e.decision(c["cu_qp_delta_abs"][1 if v else 0], 0)
            else:  # EG0 suffix of v - 5
                self._eg(e, v - 5, 0)
            if v:
                e.bypass(0)
        e.decision(c["last_x"][0], 0)
        e.decision(c["last_y"][0], 0)
        e.decision(c["greater1"][1], 1)
        e.decision(c["greater2"][0], 1)
        e.bypass(0)  # sign
        rice = self.stat // 4 if self.sps.persistent_rice else 0
        self._escape(e, cu.escape, rice)
        if self.sps.persistent_rice:
            if cu.escape >= (3 << (self.stat // 4)):
                self.stat += 1
            elif 2 * cu.escape < (1 << (self.stat // 4)) and self.stat > 0:
                self.stat -= 1

    @staticmethod
    def _eg(e: CabacWriter, v: int, k: int) -> None:
        while v >= (1 << k):
            e.bypass(1)
            v -= 1 << k
            k += 1
        e.bypass(0)
        e.bypass_bits(v, k)

    def _escape(self, e: CabacWriter, v: int, rice: int) -> None:
        if not self.sps.extended_precision:
            if v < (4 << rice):
                p = v >> rice
                e.bypass_bits((1 << (p + 1)) - 2, p + 1)  # p ones, one zero
                e.bypass_bits(v & ((1 << rice) - 1), rice)
                return
            p = 4
            while v >= (((1 << (p - 2)) + 2) << rice):
                p += 1
            e.bypass_bits((1 << (p + 1)) - 2, p + 1)
            e.bypass_bits(v - (((1 << (p - 3)) + 2) << rice), p - 3 + rice)
            return
        rng = 15  # log2TransformRange for 8-bit video
        max_pe = 32 - (3 + rng)
        if v < (3 << rice):
            p = v >> rice
            e.bypass_bits((1 << (p + 1)) - 2, p + 1)
            e.bypass_bits(v & ((1 << rice) - 1), rice)
            return
        pe = 0
        while pe < max_pe and v >= ((((1 << (pe + 1)) - 1) + 3) << rice):
            pe += 1
        ones = pe + 3
        if ones < max_pe + 3:
            e.bypass_bits((1 << (ones + 1)) - 2, ones + 1)
        else:
            e.bypass_bits((1 << ones) - 1, ones)
        suffix_len = rng - rice if pe == max_pe else pe
        e.bypass_bits(v - ((((1 << pe) - 1) + 3) << rice), suffix_len + rice)


# --- mutations -------------------------------------------------------------------------

def nal_offsets(data: bytes) -> list[int]:
    """Byte offsets of the first header byte of every NAL unit of an Annex B stream."""
    out, i = [], 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            return out
        out.append(j + 3)
        i = j + 3


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random structural or bit-level damage; returns the new bytes and what was done."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "flips", "byte", "zero_run", "cut", "drop", "dup", "insert_sc", "splice"])
    n = len(b)
    if n < 8:
        kind = "flip"
    i = rng.randrange(n)
    if kind == "flip":
        b[i] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 16)):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        b[i] = rng.choice([0x00, 0xFF, 0x80, 0x7F, 0x01, 0x03, rng.randrange(256)])
    elif kind == "zero_run":
        k = rng.randint(1, 64)
        b[i:i + k] = bytes(min(k, n - i))
    elif kind == "cut":
        b = b[:i]
    elif kind == "drop":
        del b[i:i + rng.randint(1, 256)]
    elif kind == "dup":
        k = rng.randint(1, 512)
        b[i:i] = b[i:i + k]
    elif kind == "insert_sc":
        b[i:i] = b"\x00\x00\x01" + bytes([rng.randrange(256), rng.randrange(1, 256)])
    else:  # splice: NAL units of the stream in another order, one repeated
        offs = nal_offsets(data)
        if len(offs) < 2:
            b[i] ^= 0xFF
        else:
            nals = [data[o - 3:(offs[k + 1] - 3 if k + 1 < len(offs) else len(data))] for k, o in enumerate(offs)]
            a, c = rng.randrange(len(nals)), rng.randrange(len(nals))
            nals[a], nals[c] = nals[c], nals[a]
            nals.insert(rng.randrange(len(nals)), nals[rng.randrange(len(nals))])
            b = bytearray(b"".join(nals))
    return bytes(b), kind


# --- invariants of parser output ----------------------------------------------------------

def check_priors(p) -> None:
    """Asserts that a PicturePriors holds only values the schema allows."""
    a = p.arrays
    gh, gw = (p.height + 3) // 4, (p.width + 3) // 4
    pm = a["pred_mode"]
    assert pm.shape == (gh, gw)
    assert np.isin(pm, (0, 1, 2)).all(), "pred_mode"
    assert ((a["cu_log2"] >= 3) & (a["cu_log2"] <= 6)).all(), "cu_log2"
    assert ((a["tu_log2"] >= 2) & (a["tu_log2"] <= 6)).all(), "tu_log2"
    assert (a["part_mode"] <= 7).all(), "part_mode"
    for k in ("merge_flag", "residual", "pcm_flag", "transquant_bypass"):
        assert (a[k] <= 1).all(), k
    intra = pm == 1
    d = a["inter_dir"]
    assert (d <= 3).all() and ((d == 0) == intra).all(), "inter_dir"
    im = a["intra_mode"]
    assert np.where(intra, im <= 34, im == 255).all(), "intra_mode"
    assert ((a["qp_y"] >= -48) & (a["qp_y"] <= 51)).all(), "qp_y"
    for l in range(2):
        used = (d >> l) & 1 == 1
        ri = a["ref_idx"][..., l]
        assert np.where(used, (ri >= 0) & (ri <= 15), ri == -1).all(), "ref_idx"
        assert ((a["ref_poc"][..., l] == np.iinfo(np.int32).min) == ~used).all(), "ref_poc"
        assert (a["mv"][..., l, :][~used] == 0).all(), "mv of an unused list"
    v = p.valid
    assert v.shape == (gh, gw) and v.dtype == bool
    assert v.all() == p.complete


# --- child processes -----------------------------------------------------------------------

def child_env(**extra: str) -> tuple[dict, str]:
    """Environment and working directory for a child Python that imports the same bitsr as
    this process (the ASan build under tools/test_sanitized.py, the in-place one otherwise).
    The working directory is neutral so that the checkout's bitsr/ does not shadow it."""
    import bitsr

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(bitsr.__file__)))
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_parent, tests]), **extra)
    return env, tempfile.gettempdir()
