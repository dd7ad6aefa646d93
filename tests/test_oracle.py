"""Every array bitsr extracts equals the HM reference decoder's, on every corpus stream."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import corpus_streams, oracle_path, requires_shared

import bitsr
from bitsr.priors import BLOCK_ARRAYS

STREAMS = corpus_streams()
PICTURE_LEVEL = ("poc", "nal_type", "slice_type", "temporal_id", "num_slice_segments")


@requires_shared
@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("stream", STREAMS, ids=[s.name for s in STREAMS])
def test_matches_oracle(stream, threads):
    oracle = np.load(oracle_path(stream))
    pics = list(bitsr.extract(stream, strict=True, threads=threads))
    assert len(pics) == len(oracle["poc"]), "number of decoded pictures"
    first = pics[0]
    assert first.width == oracle["width"] and first.height == oracle["height"]
    assert list(first.conf_win) == list(oracle["conf_win"])
    assert first.bit_depth == oracle["bit_depth"]
    assert first.chroma_format == oracle["chroma_format"]
    assert first.ctb_size == oracle["ctb_size"]
    for key in PICTURE_LEVEL:
        got = np.array([getattr(p, key) for p in pics], dtype=oracle[key].dtype)
        np.testing.assert_array_equal(got, oracle[key], err_msg=key)
    for key in BLOCK_ARRAYS:
        for i, p in enumerate(pics):
            got = p.arrays[key]
            want = oracle[key][i]
            assert got.dtype == want.dtype and got.shape == want.shape, key
            if not np.array_equal(got, want):
                bad = np.argwhere((got != want).reshape(got.shape[0], got.shape[1], -1).any(-1))
                y, x = bad[0]
                pytest.fail(f"{key} differs in picture {i} (POC {p.poc}) at 4x4 block y={y} x={x}: "
                            f"{got[y, x]} != {want[y, x]} ({len(bad)} blocks)")
        assert p.complete
