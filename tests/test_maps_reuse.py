"""``bitsr.maps.predicted_from``: the blocks whose output may be copied from another picture's
(the upscaler's skip reuse) are exactly those the decoder made by moving that picture's samples."""
from __future__ import annotations

import numpy as np
import pytest
from streams import make_hevc

import bitsr
from bitsr.maps import predicted_from

NO_FILTERS = "no-deblock=1:no-sao=1"


def _frames(path):
    with bitsr.open(path, lookahead=1) as video:
        return [(f, f.yuv()[0].astype(np.int32)) for f in video]


def test_predicted_from_previous_is_a_copy():
    """Without in-loop filters, a block predicted from the previous display frame alone with an
    integer vector equals that frame's samples moved by the vector, sample for sample."""
    path = make_hevc("reuse_map", frames=24, width=176, height=144, crf=32, source="city",
                     x265_params=f"{NO_FILTERS}:keyint=24:bframes=0:ref=3")
    frames = _frames(path)
    checked = 0
    for (prev, y0), (cur, y1) in zip(frames, frames[1:]):
        m = predicted_from(cur.priors, prev.priors, factor=4)
        assert m.shape == (y1.shape[0] // 4, y1.shape[1] // 4)
        a = cur.priors.arrays
        for by, bx in zip(*np.nonzero(m)):
            d = int(a["inter_dir"][by, bx])
            assert d in (1, 2) and a["residual"][by, bx] == 0 and a["pred_mode"][by, bx] != 1
            assert a["ref_poc"][by, bx, d - 1] == prev.poc
            mvx, mvy = (int(v) for v in a["mv"][by, bx, d - 1])
            if mvx % 4 or mvy % 4:
                continue  # fractional: interpolated, not a copy
            y, x = 4 * by + mvy // 4, 4 * bx + mvx // 4
            if not (0 <= y <= y0.shape[0] - 4 and 0 <= x <= y0.shape[1] - 4):
                continue  # reaches beyond the picture: padded samples
            np.testing.assert_array_equal(y1[4 * by:4 * by + 4, 4 * bx:4 * bx + 4], y0[y:y + 4, x:x + 4])
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("gop", ["bframes=0:ref=3", "bframes=4:b-pyramid=1:b-adapt=2"])
def test_bipredicted_and_other_references_are_not_reusable(gop):
    """Residual-free blocks that average two pictures (B-pictures) or predict from a picture
    other than the previous display frame are left out; such blocks exist in both GOPs."""
    path = make_hevc("reuse_map", frames=24, width=176, height=144, crf=32, source="city",
                     x265_params=f"keyint=24:{gop}")
    frames = _frames(path)
    left_out = 0
    for (prev, _), (cur, _) in zip(frames, frames[1:]):
        m = predicted_from(cur.priors, prev.priors, factor=4).astype(bool)
        a = cur.priors.arrays
        d, refs = a["inter_dir"], a["ref_poc"]
        clean = (a["pred_mode"] != 1) & (a["residual"] == 0)
        bi = clean & (d == 3)
        elsewhere = clean & (((d == 1) & (refs[..., 0] != prev.poc)) | ((d == 2) & (refs[..., 1] != prev.poc)))
        assert not (m & (bi | elsewhere)).any()
        left_out += int((bi | elsewhere).sum())
        assert not predicted_from(cur.priors, None, factor=4).any()  # the first picture
    assert left_out > 100
