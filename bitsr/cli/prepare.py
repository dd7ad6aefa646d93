"""bitsr prepare: make HR/LR training pairs (MATLAB-bicubic LR encoded with x265 or x264).

INPUT is a video file, a folder of videos, a folder of frames, or a REDS / Vimeo-90K style
tree (--layout). For every clip, scale and encoding it writes OUT/<clip>/x<s>/hr.mkv (lossless
FFV1), OUT/<clip>/x<s>/<tag>.mkv (x265: HEVC in Matroska) or <tag>.mp4 (x264: H.264 in MP4)
and an entry of OUT/manifest.json recording the encoding. Re-running skips finished items, so
an interrupted run resumes.

Encodings: every combination of --codec, --gop and --crf (or --qp), at one --preset.
GOPs: 'ldp' low-delay P and 'ra' a fixed B pyramid (intra every --keyint frames, scene-cut
detection off); 'default' the encoder's own GOP decisions, as real video is encoded (x265:
adaptive B-pyramid of up to 4 B pictures, keyint 250, scene cuts, open GOP; x264: High
profile, up to 3 adaptive B-frames, keyint 250, scene cuts). Without --gop, x265 encodes 'ldp'
(as before) and x264 'default'. --mix instead gives every clip the training mix of
tools/prepare_train.py (7 encodings chosen from the clip's name, see
bitsr.data.encode.training_mix).

Tags (file names): crf25_ldp_k32_medium, crf25_ra3_k32_medium (x265 fixed GOPs),
crf25_x265_medium (x265 defaults), crf25_x264_medium (x264 defaults), crf25_x264ldp_k32_medium.

Examples:
  bitsr prepare /data/videos -o data/train --scale 4 --crf 20 --crf 25 --crf 30 --gop ldp
  bitsr prepare /data/videos -o data/train --codec x265 --codec x264 --gop default --crf 23 --crf 33
  bitsr prepare /data/videos -o data/train --mix
"""
from __future__ import annotations

import argparse

from .common import cli_errors


def build_parser(prog: str = "bitsr prepare") -> argparse.ArgumentParser:
    from ..data.encode import CODECS, GOPS, PRESETS
    from ..data.sources import LAYOUTS

    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="HR videos, frame folders, or dataset roots")
    ap.add_argument("-o", "--output", required=True, help="output folder (holds manifest.json)")
    ap.add_argument("--scale", type=int, action="append", choices=(2, 3, 4),
                    help="downscaling factor (repeatable; default 4)")
    rate = ap.add_mutually_exclusive_group()
    rate.add_argument("--crf", type=float, action="append", help="CRF (repeatable; default 25)")
    rate.add_argument("--qp", type=int, action="append", help="constant QP (repeatable)")
    rate.add_argument("--mix", action="store_true",
                      help="the per-clip training mix of tools/prepare_train.py "
                           "(its own codecs, GOPs, CRFs and presets)")
    ap.add_argument("--codec", choices=CODECS, action="append",
                    help="x265 (HEVC, .mkv) or x264 (H.264 High profile, .mp4) (repeatable; default x265)")
    ap.add_argument("--gop", choices=GOPS, action="append",
                    help="ldp: low-delay P; ra: fixed B pyramid; default: the encoder's own GOP (repeatable; "
                         "default: ldp for x265, default for x264)")
    ap.add_argument("--keyint", type=int, help="intra period in frames for --gop ldp/ra (default 32)")
    ap.add_argument("--bframes", type=int, help="B pictures per mini-GOP for --gop ra (default 3)")
    ap.add_argument("--preset", choices=PRESETS, default="medium", help="encoder preset (default medium)")
    ap.add_argument("--layout", choices=LAYOUTS, default="auto", help="how to read folder inputs (default auto)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N", help="use at most N frames per clip")
    ap.add_argument("--fps", type=float, default=25, help="frame rate for image-folder clips (default 25)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def specs_from_args(args) -> list:
    """The EncodeSpecs of the command line (ValueError on a contradiction)."""
    from ..data.encode import EncodeSpec

    if args.mix and (args.codec or args.gop or args.keyint is not None or args.bframes is not None):
        raise ValueError("--mix chooses codecs and GOPs itself: drop --codec/--gop/--keyint/--bframes")
    rates = [("qp", q) for q in args.qp] if args.qp else [("crf", c) for c in (args.crf or [25])]
    specs = []
    for codec in args.codec or ["x265"]:
        for gop in args.gop or ["ldp" if codec == "x265" else "default"]:
            if gop == "default" and (args.keyint is not None or args.bframes is not None):
                raise ValueError("--keyint/--bframes apply to --gop ldp/ra, not to the encoder's default GOP")
            for k, v in rates:
                specs.append(EncodeSpec(crf=v if k == "crf" else None, qp=v if k == "qp" else None, gop=gop,
                                        codec=codec, preset=args.preset,
                                        keyint=32 if args.keyint is None else args.keyint,
                                        bframes=3 if args.bframes is None else args.bframes))
    return list(dict.fromkeys(specs))


def run(args) -> int:
    from fractions import Fraction

    from ..data.encode import training_mix
    from ..data.prepare import prepare

    specs = specs_from_args(args)  # checks the flags, also with --mix
    encodes = training_mix if args.mix else specs
    prepare(args.inputs, args.output, scales=args.scale or [4], encodes=encodes, layout=args.layout,
            max_frames=args.max_frames, fps=Fraction(args.fps).limit_denominator(1001), progress=not args.quiet)
    return 0


def main(argv=None, prog: str = "bitsr prepare") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
