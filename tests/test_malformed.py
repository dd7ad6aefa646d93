"""Malformed streams: the shared fuzz findings and one hand-made stream per parser bug fixed
in the hardening pass. Each must end in a clear error (strict) or a concealed result."""
from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS
from hostile import Cu, IntraSliceWriter, Pps, Slice, Sps, check_priors, child_env, parameter_sets, vps

import bitsr
from bitsr import _core

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = sorted((CORPUS / "malformed").glob("*")) if CORPUS is not None and (CORPUS / "malformed").is_dir() else []
requires_malformed = pytest.mark.skipif(not MALFORMED, reason="shared corpus malformed/ not found (set BITSR_SHARED)")


def decode(data: bytes, strict: bool = False, **limits) -> tuple[list, _core.Decoder]:
    d = _core.Decoder(strict=strict, **limits)
    d.push_annexb(data, final=True)
    d.flush()
    return [bitsr.PicturePriors(p) for p in d.pop_decoded()], d


def extract_in_child(path: Path, timeout: float = 60, strict: bool = False) -> subprocess.CompletedProcess:
    """bitsr.extract in a separate process: a hang or a crash fails the test instead of pytest."""
    code = (
        "import sys, bitsr\n"
        "from hostile import check_priors\n"
        "n = 0\n"
        "try:\n"
        f"    for p in bitsr.extract(sys.argv[1], strict={strict}):\n"
        "        check_priors(p); n += 1\n"
        "except bitsr.BitstreamError as e:\n"
        "    print('error', type(e).__name__, e.nal_index, e.byte_offset, e.element, e)\n"
        "print('pictures', n)\n"
    )
    env, cwd = child_env(BITSR_POISON="1")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


# --- the shared corpus of fuzz findings ---------------------------------------------------

@requires_malformed
@pytest.mark.parametrize("path", MALFORMED, ids=[p.name for p in MALFORMED])
def test_malformed_corpus_conceals_or_fails_clearly(path):
    r = extract_in_child(path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pictures" in r.stdout
    with pytest.raises(bitsr.BitstreamError) as ei:  # every one of them is damaged somewhere
        list(bitsr.extract(path, strict=True))
    e = ei.value
    if b"\x00\x00\x01" in path.read_bytes():
        assert e.nal_index is not None and e.byte_offset is not None and e.element
    else:  # raw fuzzer input, not Annex B
        assert "no decodable HEVC picture" in str(e)


@requires_malformed
@pytest.mark.parametrize("path", MALFORMED, ids=[p.name for p in MALFORMED])
def test_malformed_corpus_cli(path, tmp_path):
    env, cwd = child_env()
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.extract", "-q", str(path), "-o", str(tmp_path / "x.npz")],
                       capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert r.returncode in (0, 2), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r.stderr
    if r.returncode == 2:
        assert r.stderr.startswith("bitsr-extract: error:")
    else:
        assert (tmp_path / "x.npz").exists()


# --- hand-made streams, one per fixed bug --------------------------------------------------

SMALL = Sps(width=64, height=64, log2_max_tb=3)  # 16 CTBs


def intra_data(sps: Sps, first_ctb: int, n_ctb: int, pps: Pps | None = None) -> bytes:
    """Valid slice data: n_ctb CTBs of planar 8x8 CUs without residual."""
    return IntraSliceWriter(sps, pps or Pps()).segment(first_ctb, [[Cu()] * 4] * n_ctb)


IDR = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 16)).nal()


def test_sps_replaced_between_slices_of_a_picture(tmp_path):
    # Was a heap overflow: the second slice segment was parsed with a larger SPS (its
    # address beyond the picture's CTB count) but decoded into the first one's picture.
    big = Sps(width=256, height=256)
    data = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 2)).nal()
    data += big.nal() + Slice(big, first=False, address=200).nal()
    pics, dec = decode(data)
    assert len(pics) == 1 and pics[0].width == 64 and pics[0].ctb_decoded.sum() == 2
    assert any("different parameter sets" in w for w in dec.warnings)
    with pytest.raises(bitsr.BitstreamError) as ei:
        decode(data, strict=True)
    assert ei.value.element == "slice_pic_parameter_set_id" and ei.value.nal_index == 5


def test_pps_replaced_between_slices_of_a_picture():
    pps2 = Pps(dependent_slices=True)  # same id, other content
    data = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 2)).nal()
    data += pps2.nal() + Slice(SMALL, first=False, address=2, dependent_slices_enabled=True).nal()
    pics, dec = decode(data)
    assert len(pics) == 1 and pics[0].ctb_decoded.sum() == 2
    assert any("different parameter sets" in w for w in dec.warnings)
    # re-sending the same PPS between slice segments is fine
    data = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 2)).nal()
    data += Pps().nal() + Slice(SMALL, first=False, address=2, data=intra_data(SMALL, 2, 14)).nal()
    pics, _ = decode(data, strict=True)
    assert pics[0].complete


def test_slices_with_different_rps_do_not_hang(tmp_path):
    # Was an endless loop building the reference list of the second slice from the
    # picture's (empty) RPS.
    data = IDR + Slice(SMALL, nal_type=1, poc_lsb=1, data=intra_data(SMALL, 0, 4)).nal() + Slice(
        SMALL, nal_type=1, first=False, address=4, slice_type=1, poc_lsb=1, neg_deltas=[-1]).nal()
    path = tmp_path / "rps.hevc"
    path.write_bytes(data)
    r = extract_in_child(path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pictures 2" in r.stdout
    r = extract_in_child(path, timeout=60, strict=True)
    assert "error BitstreamError" in r.stdout and "short_term_ref_pic_set" in r.stdout


def test_long_term_poc_out_of_range():
    # A long-term POC of -2^31 made cur_poc - ref_poc overflow in TMVP scaling.
    lt = Sps(width=64, height=64, log2_max_tb=3, long_term=True, temporal_mvp=True)
    data = parameter_sets(lt) + Slice(lt, data=intra_data(lt, 0, 16)).nal() + Slice(
        lt, nal_type=1, slice_type=1, poc_lsb=1, long_term=[(0, 1, 1 << 23)], temporal_mvp=True).nal()
    with pytest.raises(bitsr.BitstreamError) as ei:
        decode(data, strict=True)
    assert ei.value.element == "delta_poc_msb_cycle_lt" and ei.value.nal_index == 4
    pics, _ = decode(data)
    assert len(pics) == 1  # the damaged picture is dropped, the stream goes on


def test_latency_limit_does_not_overflow():
    # sps_max_latency_increase_plus1 = 2^31 - 1 overflowed SpsMaxLatencyPictures (UB).
    sps = Sps(width=64, height=64, num_reorder=2, max_latency_increase_plus1=(1 << 31) - 1)
    data = parameter_sets(sps) + Slice(sps).nal()
    for poc, deltas in ((2, [-2]), (1, [-1]), (4, [-2]), (3, [-1])):
        data += Slice(sps, nal_type=1, slice_type=1, poc_lsb=poc, neg_deltas=deltas).nal()
    d = _core.Decoder()
    d.push_annexb(data, final=True)
    d.flush()
    assert [p.poc for p in d.pop_output()] == [0, 1, 2, 3, 4]


def test_poc_msb_accumulation_stays_in_range():
    # POC grows by max_poc_lsb/2 per picture until it leaves (-2^30, 2^30): those pictures
    # are refused instead of wrapping.
    sps = Sps(width=16, height=16, log2_max_poc_lsb=16)
    data = parameter_sets(sps) + Slice(sps, data=b"\x00").nal()
    lsb = 0
    n = 32800  # 32800 * 32767 > 2^30: crosses the limit
    for _ in range(n):
        lsb = (lsb + 32767) & 0xFFFF
        data += Slice(sps, nal_type=1, poc_lsb=lsb, data=b"\x00").nal()
    pics, dec = decode(data, parse_ctu=False)
    pocs = np.array([p.poc for p in pics], dtype=np.int64)
    assert (np.abs(pocs) < 1 << 30).all() and pocs.max() > (1 << 30) - 65536
    assert len(pics) < n + 1 and any("POC out of range" in w for w in dec.warnings)


def test_limit_errors_carry_location():
    big = Sps(width=4096, height=2304)
    with pytest.raises(bitsr.LimitError) as ei:
        decode(parameter_sets(big), max_luma_samples=1920 * 1088)
    e = ei.value
    assert isinstance(e, bitsr.BitstreamError) and isinstance(e, ValueError)
    assert e.nal_index == 1 and e.byte_offset is not None and e.element == "pic_width_in_luma_samples"


def test_dependent_segment_after_a_failed_one_is_refused():
    # One picture in three segments: independent (fine), dependent (fails in the middle of
    # CTB 1 on an out-of-range cu_qp_delta_abs), dependent (fine). The last one used to
    # start from the contexts stored after the first and read the half-written CTB 1; it is
    # refused now, and CTBs 1-3 are concealed.
    sps = Sps(width=64, height=16, log2_max_tb=3)
    pps = Pps(dependent_slices=True, cu_qp_delta=True)
    w = IntraSliceWriter(sps, pps)
    seg_a = w.segment(0, [[Cu(), Cu(), Cu(), Cu()]])
    ctx_after_a = copy.deepcopy(w.ctx)
    seg_b = w.segment(1, [[Cu(), Cu(escape=1, qp_delta_abs=100), Cu(), Cu()]])
    w.ctx = ctx_after_a
    seg_c = w.segment(2, [[Cu(escape=2), Cu(), Cu(), Cu()], [Cu()] * 4])
    dep = dict(first=False, dependent=True, dependent_slices_enabled=True)
    data = vps() + sps.nal() + pps.nal() + Slice(sps, data=seg_a).nal()
    data += Slice(sps, address=1, data=seg_b, **dep).nal() + Slice(sps, address=2, data=seg_c, **dep).nal()
    pics, dec = decode(data)
    assert len(pics) == 1
    p = pics[0]
    assert p.ctb_decoded.tolist() == [[1, 0, 0, 0]]
    assert p.valid[:, :4].all() and not p.valid[:, 4:].any()
    assert any("cu_qp_delta_abs out of range" in e for e in p.errors)
    assert any("does not continue its slice" in e for e in p.errors)
    check_priors(p)
    with pytest.raises(bitsr.BitstreamError) as ei:
        decode(data, strict=True)
    assert ei.value.element == "cu_qp_delta_abs" and ei.value.nal_index == 4


def test_escape_above_2_pow_30_is_refused():
    # Extended precision + persistent Rice adaptation: 116 escapes drive StatCoeff to 116,
    # then an escape of 2^30 + 5 made `2 * rem` overflow (UB) while updating StatCoeff.
    sps = Sps(width=128, height=64, log2_max_tb=3, extended_precision=True, persistent_rice=True)
    pps = Pps()
    w = IntraSliceWriter(sps, pps)
    cus = [Cu(escape=3 << (k // 4)) for k in range(116)] + [Cu(escape=(1 << 30) + 5)] + [Cu()] * 11
    data = parameter_sets(sps, pps) + Slice(sps, data=w.segment(0, [cus[i:i + 4] for i in range(0, 128, 4)])).nal()
    with pytest.raises(bitsr.BitstreamError) as ei:
        decode(data, strict=True)
    assert ei.value.element == "coeff_abs_level_remaining"
    pics, _ = decode(data)
    assert pics[0].ctb_decoded.sum() == 29  # CU 116 sits in CTB 29
    check_priors(pics[0])
    # the same stream one escape below the bound decodes completely
    w = IntraSliceWriter(sps, pps)
    cus[116] = Cu(escape=(1 << 30) - 1)
    data = parameter_sets(sps, pps) + Slice(sps, data=w.segment(0, [cus[i:i + 4] for i in range(0, 128, 4)])).nal()
    pics, _ = decode(data, strict=True)
    assert pics[0].complete


def test_crafted_slices_decode_as_written():
    # The CABAC writer behind the tests above produces exactly what it claims.
    sps = Sps(width=64, height=32, log2_max_tb=3)
    w = IntraSliceWriter(sps, Pps())
    cus = [[Cu(escape=i + j) if (i + j) % 2 else Cu() for j in range(4)] for i in range(8)]
    pics, _ = decode(parameter_sets(sps) + Slice(sps, data=w.segment(0, cus)).nal(), strict=True)
    p = pics[0]
    assert p.complete and (p.cu_log2 == 3).all() and (p.intra_mode == 0).all()
    res = np.array([[(i + j) % 2 for j in range(4)] for i in range(8)])
    # CTB i covers 4x4 blocks [0:4, 4i:4i+4]; CU j is the j-th 8x8 quarter in z order
    for i in range(4):
        for j in range(4):
            y, x = (j // 2) * 2, i * 4 + (j % 2) * 2
            assert (p.residual[y:y + 2, x:x + 2] == res[i, j]).all()


def test_errors_name_nal_offset_and_element_from_slice_data():
    broken = parameter_sets(SMALL) + Slice(SMALL, data=b"\xff" * 8).nal()
    pics, dec = decode(broken)
    assert pics[0].errors == ["slice data ends inside a coding tree unit"]
    with pytest.raises(bitsr.BitstreamError) as ei:
        decode(broken, strict=True)
    e = ei.value
    assert e.nal_index == 3 and e.byte_offset == broken.rfind(b"\x00\x00\x01") + 3
    assert e.element == "slice_segment_data"
    assert "(NAL 3, byte" in str(e)


def test_arithmetic_offset_out_of_range_keeps_priors_in_the_schema():
    # Slice data whose first 9 bits are 510 or 511 breaks CABAC's offset < range (ivlOffset
    # must not be either), so several bypass bins decoded at once (one division) could give
    # more bits than asked, and rem_intra_luma_pred_mode / intra_chroma_pred_mode index
    # tables. Random tails after such a start: every picture's priors stay in the schema.
    rng = random.Random(5)
    head = parameter_sets(SMALL)
    seen_intra = 0
    for _ in range(300):
        data = bytes([0xFF, rng.choice((0x00, 0x80, 0xFF))]) + rng.randbytes(rng.randint(2, 40))
        pics, _ = decode(head + Slice(SMALL, data=data).nal())
        for p in pics:
            check_priors(p)
            seen_intra += int((p.arrays["pred_mode"] == 1).sum())
    assert seen_intra > 0  # intra CUs were decoded from such data, modes and all


def test_python_raised_bitstream_errors_have_the_attributes():
    e = bitsr.BitstreamError("made in Python")
    assert e.nal_index is None and e.byte_offset is None and e.element is None


def test_warnings_and_errors_stay_bounded():
    # 3000 damaged slice segments in one picture, 3000 damaged parameter sets: the lists
    # keep the most recent 1000 warnings and the first 64 errors of the picture.
    data = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 1)).nal()
    bad_slice = Slice(SMALL, first=False, address=5, data=b"\xff").nal()
    data += (bad_slice + b"\x00\x00\x01\x42\x01\xff") * 1500
    pics, dec = decode(data, max_slice_segments=5000)
    assert len(dec.warnings) == 1000
    assert len(pics) == 1 and len(pics[0].errors) == 64


def test_parameter_set_resent_with_other_trailing_bytes_is_the_same():
    # Only the bytes the parser reads identify a parameter set: an SPS re-sent between two
    # slice segments with different bytes after its last syntax element changes nothing.
    sps_nal = SMALL.nal()
    data = parameter_sets(SMALL) + Slice(SMALL, data=intra_data(SMALL, 0, 2)).nal()
    data += sps_nal + b"\x80\x11\x22\x33"  # after rbsp_trailing_bits: ignored by the parser
    data += Slice(SMALL, first=False, address=2, data=intra_data(SMALL, 2, 14)).nal()
    pics, dec = decode(data, strict=True)
    assert pics[0].complete


@pytest.mark.parametrize("width, height", [(0xFFFFFFF0, 64), (64, 0xFFFFFF00), (1 << 31, 64)])
def test_picture_size_of_2_pow_31_and_more_is_refused(width, height):
    # Stored into an int first, such sizes became negative and passed the limit checks.
    data = parameter_sets(Sps(width=width, height=height))
    with pytest.raises(bitsr.LimitError) as ei:
        decode(data)
    assert ei.value.element == "pic_width_in_luma_samples" and str(max(width, height)) in str(ei.value)


def test_slice_qp_delta_near_2_pow_31():
    # 26 + init_qp_minus26 + slice_qp_delta overflowed an int (UB) before the range check.
    for delta in ((1 << 31) - 1, -(1 << 31) + 1):
        data = parameter_sets(SMALL) + Slice(SMALL, qp_delta=delta, data=intra_data(SMALL, 0, 16)).nal()
        with pytest.raises(bitsr.BitstreamError) as ei:
            decode(data, strict=True)
        assert ei.value.element == "slice_qp_delta"


def test_limit_ceilings():
    with pytest.raises(ValueError, match="max_dimension"):
        _core.Decoder(max_dimension=70000)
    with pytest.raises(ValueError, match="max_luma_samples"):
        _core.Decoder(max_luma_samples=(1 << 32) + 1)


def test_nal_units_of_other_layers_are_ignored_unless_strict():
    # A single flipped bit in nuh_layer_id used to end the whole stream (UnsupportedError).
    base = IDR + Slice(SMALL, nal_type=1, poc_lsb=1, data=intra_data(SMALL, 0, 16)).nal()
    layer1 = bytearray(Slice(SMALL, nal_type=1, poc_lsb=2, data=intra_data(SMALL, 0, 16)).nal())
    layer1[5] |= 0x08  # nuh_layer_id = 1
    data = IDR + bytes(layer1) + base[len(IDR):]
    pics, dec = decode(data, strict=False)
    assert [p.poc for p in pics] == [0, 1] and all(p.complete for p in pics)
    assert any("nuh_layer_id 1" in w for w in dec.warnings)
    with pytest.raises(bitsr.UnsupportedStreamError) as ei:
        decode(data, strict=True)
    assert ei.value.nal_index == 4 and ei.value.element == "nuh_layer_id"
