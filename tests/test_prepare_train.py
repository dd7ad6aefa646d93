"""tools/prepare_train.py: which shared clips are trained on, and the encodings it asks for."""
from __future__ import annotations

import pytest
from tool_scripts import load_tool

from bitsr._paths import shared_dir
from bitsr.data.encode import EncodeSpec, training_mix


def _tool():
    return load_tool("prepare_train")


def _args(argv):
    return _tool().build_parser().parse_args(argv)


def test_explicit_specs_or_the_mix():
    pt = _tool()
    assert pt.explicit_specs(_args([])) is None  # the mix
    old = pt.explicit_specs(_args(["--gop", "ldp", "--crf", "20", "--crf", "25", "--crf", "30"]))
    assert [s.tag for s in old] == ["crf20_ldp_k32_medium", "crf25_ldp_k32_medium", "crf30_ldp_k32_medium"]
    got = pt.explicit_specs(_args(["--codec", "x264", "--crf", "23"]))
    assert got == [EncodeSpec(crf=23, gop="default", codec="x264")]
    # the configs validate on these tags
    assert {s.tag for s in pt.VAL_SPECS} == {"crf25_ldp_k32_medium", "crf25_x265_medium", "crf25_x264_medium"}


@pytest.mark.skipif(shared_dir() is None or not (shared_dir() / "video" / "train").is_dir(),
                    reason="shared videos not found (set BITSR_SHARED or place them at ../shared)")
def test_training_sources_exclude_vid4_and_holdout():
    pt = _tool()
    sh = shared_dir()
    train = {p.stem for p in pt.train_sources(sh)}
    hold = {p.stem for p in pt.holdout_sources(sh)}
    assert hold == set(pt.HOLDOUT) and len(hold) == 2
    assert not train & hold and not train & {"calendar", "city", "foliage", "walk"}
    assert len(train) == len(pt.all_sources(sh)) - 2
    assert {p.stem for p in pt.val_sources(sh)} == {"calendar", "city"} | hold
    keep, small = pt.large_enough(pt.train_sources(sh), 4)
    assert [p.stem for p in small] == ["carphone_pristine"] and len(keep) == len(train) - 1
    assert pt.large_enough(pt.train_sources(sh), 2)[1] == []
    mixes = [training_mix(n) for n in sorted(train)]
    assert all(len(m) == 7 for m in mixes)
    crfs = sorted({s.crf for m in mixes for s in m})
    assert crfs[0] <= 20 and crfs[-1] >= 36
