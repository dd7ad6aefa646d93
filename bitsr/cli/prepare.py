"""bitsr prepare: make HR/LR training pairs (MATLAB-bicubic LR encoded with libx265).

INPUT is a video file, a folder of videos, a folder of frames, or a REDS / Vimeo-90K style
tree (--layout). For every clip, scale and encoding it writes OUT/<clip>/x<s>/hr.mkv (lossless
FFV1), OUT/<clip>/x<s>/<tag>.mkv (HEVC) and an entry of OUT/manifest.json. Re-running skips
finished items, so an interrupted run resumes.

Example:
  bitsr prepare /data/videos -o data/train --scale 4 --crf 20 --crf 25 --crf 30 --gop ldp
"""
from __future__ import annotations

import argparse

from .common import cli_errors


def build_parser(prog: str = "bitsr prepare") -> argparse.ArgumentParser:
    from ..data.encode import GOPS, PRESETS
    from ..data.sources import LAYOUTS

    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="HR videos, frame folders, or dataset roots")
    ap.add_argument("-o", "--output", required=True, help="output folder (holds manifest.json)")
    ap.add_argument("--scale", type=int, action="append", choices=(2, 3, 4), help="downscaling factor (repeatable; default 4)")
    rate = ap.add_mutually_exclusive_group()
    rate.add_argument("--crf", type=float, action="append", help="x265 CRF (repeatable; default 25)")
    rate.add_argument("--qp", type=int, action="append", help="x265 constant QP (repeatable)")
    ap.add_argument("--gop", choices=GOPS, default="ldp", help="ldp: low-delay P; ra: random access, B pyramid (default ldp)")
    ap.add_argument("--keyint", type=int, default=32, help="intra period in frames (default 32)")
    ap.add_argument("--bframes", type=int, default=3, help="B pictures per mini-GOP for --gop ra (default 3)")
    ap.add_argument("--preset", choices=PRESETS, default="medium", help="x265 preset (default medium)")
    ap.add_argument("--layout", choices=LAYOUTS, default="auto", help="how to read folder inputs (default auto)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N", help="use at most N frames per clip")
    ap.add_argument("--fps", type=float, default=25, help="frame rate for image-folder clips (default 25)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def run(args) -> int:
    from fractions import Fraction

    from ..data.encode import EncodeSpec
    from ..data.prepare import prepare

    rates = [("qp", q) for q in args.qp] if args.qp else [("crf", c) for c in (args.crf or [25])]
    specs = [EncodeSpec(crf=v if k == "crf" else None, qp=v if k == "qp" else None, gop=args.gop,
                        keyint=args.keyint, preset=args.preset, bframes=args.bframes) for k, v in rates]
    prepare(args.inputs, args.output, scales=args.scale or [4], encodes=specs, layout=args.layout,
            max_frames=args.max_frames, fps=Fraction(args.fps).limit_denominator(1001), progress=not args.quiet)
    return 0


def main(argv=None, prog: str = "bitsr prepare") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
