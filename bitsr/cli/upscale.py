"""bitsr upscale: compressed video in, upscaled video out.

Decodes an HEVC or H.264 file (raw, MP4, MOV or MKV), upscales every frame with the bitstream-guided
network and encodes the result with libx265 or libx264, keeping the source's timestamps and
copying its audio and subtitle streams. Ctrl-C stops cleanly and leaves a playable file.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .common import cli_errors


def build_parser(prog: str = "bitsr upscale") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="HEVC or H.264 video: raw Annex B (.hevc/.265/.h265) or MP4/MOV/MKV")
    ap.add_argument("-o", "--output",
                    help="output .mp4/.mov/.mkv (default: <input stem>_x<scale>.mp4 beside the input)")
    ap.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="upscaling factor (default 4)")
    ap.add_argument("--model", default="default", help="model name (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    ap.add_argument("--encoder", default="libx265", choices=("libx265", "libx264"), help="output video encoder")
    ap.add_argument("--crf", type=int, help="encoder quality (default: 22 for libx265, 18 for libx264)")
    ap.add_argument("--preset", help="encoder preset, e.g. ultrafast, fast, medium, slow (default: encoder's)")
    ap.add_argument("--tile", type=int, default=0, metavar="PX",
                    help="process frames in tiles of PX low-resolution pixels (saves memory on large frames)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def run(args) -> int:
    from ..io.writer import StreamNote
    from ..pipeline import default_output, upscale

    dst = args.output or default_output(args.input, args.scale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StreamNote)
        try:
            out = upscale(args.input, dst, scale=args.scale, model=args.model, device=args.device,
                          encoder=args.encoder, crf=args.crf, preset=args.preset, threads=args.threads,
                          tile=args.tile, quiet=args.quiet, max_frames=args.max_frames or None)
        except KeyboardInterrupt:
            if os.path.exists(dst):
                print(f"{args.prog}: interrupted; {dst} holds the frames done so far", file=sys.stderr)
                raise SystemExit(130) from None
            raise
        finally:
            for w in caught:
                if issubclass(w.category, StreamNote):
                    print(f"{args.prog}: note: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def main(argv=None, prog: str = "bitsr upscale") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    args.prog = ap.prog
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
