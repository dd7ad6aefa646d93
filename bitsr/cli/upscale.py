"""bitsr upscale: compressed video in, upscaled video out.

Decodes an HEVC or H.264 file (raw, MP4, MOV or MKV), upscales every frame with the bitstream-guided
network and encodes the result with libx265 or libx264, keeping the source's timestamps and
copying its audio and subtitle streams. Ctrl-C stops cleanly and leaves a playable file.

Several inputs (files, quoted globs, folders) make a batch: outputs go beside each input, or into
the folder given with -o; one failure does not stop the rest; a summary closes the run (exit
code 1 if any input failed). An input that ends early or has damage is upscaled as far as it
goes and reported on stderr (--strict: exit code 2 instead).

Examples:
  bitsr upscale clip.mp4                          # -> clip_x4.mp4 beside it
  bitsr upscale clip.mkv -o out.mkv --scale 2 -y  # overwrite out.mkv if it exists
  bitsr upscale videos/ "more/*.mp4" -o upscaled/ -n   # a batch; keep outputs already made
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .common import add_overwrite, add_version, cli_errors, expand_inputs, may_write, run_batch


def shipped_scales() -> list[int]:
    """Scales with shipped weights (bitsr/weights/<name>_x<s>.pt), without importing torch."""
    folder = Path(__file__).resolve().parent.parent / "weights"
    scales = sorted({int(p.stem.rsplit("_x", 1)[1]) for p in folder.glob("*_x*.pt")
                     if p.stem.rsplit("_x", 1)[1].isdigit()})
    return scales or [4]


def build_parser(prog: str = "bitsr upscale") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="+",
                    help="HEVC or H.264 video (raw Annex B .hevc/.265/.h264, MP4/MOV/MKV), a folder of them "
                         "or a quoted glob; several make a batch")
    ap.add_argument("-o", "--output",
                    help="output .mp4/.mov/.mkv (default: <input stem>_x<scale>.mp4 beside the input), or a frame "
                         "pattern such as frames/%%06d.png (one PNG per frame); for a batch (or an existing "
                         "folder) the folder to write into")
    scales = shipped_scales()
    ap.add_argument("--scale", type=int, default=4 if 4 in scales else scales[-1],
                    help=f"upscaling factor: {', '.join(map(str, scales))} have shipped weights; another needs "
                         "--model PATH trained for it (default: %(default)s)")
    ap.add_argument("--model", default="default", help="model name or checkpoint path (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    ap.add_argument("--encoder", default="libx265", choices=("libx265", "libx264"), help="output video encoder")
    ap.add_argument("--crf", type=int, help="encoder quality (default: 22 for libx265, 18 for libx264)")
    ap.add_argument("--preset", help="encoder preset, e.g. ultrafast, fast, medium, slow (default: encoder's)")
    ap.add_argument("--tile", type=int, default=0, metavar="PX",
                    help="process frames in tiles of PX low-resolution pixels (saves memory on large frames)")
    ap.add_argument("--compute", default="auto", choices=("auto", "saving", "uniform"),
                    help="saving: route tiles by CU size and reuse what the codec copied, on every frame; uniform: "
                         "the full network everywhere; auto (default): on the CPU, saving on the frames where it "
                         "saves at least half the FLOPs and uniform on the others; uniform on CUDA")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="CPU arithmetic of the network: auto (default) is bf16 where the CPU computes it natively "
                         "(AVX-512 BF16, AMX; about 1.5x faster), else fp32")
    ap.add_argument("--streaming", action="store_true",
                    help="causal mode: each frame from the frames before it only, written as soon as it is decoded "
                         "(live input); by default a bidirectional model also looks ahead (file mode)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames")
    ap.add_argument("--strict", action="store_true",
                    help="fail (exit code 2) on damaged or truncated input instead of upscaling what can be read")
    add_overwrite(ap)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_version(ap)
    return ap


def _one(args, src: Path, dst: Path) -> str | None:
    from ..io.paths import check_output
    from ..io.writer import StreamNote
    from ..pipeline import IncompleteInput, upscale

    if not src.exists():
        raise FileNotFoundError(2, "no such file", str(src))
    check_output(dst, inputs=[src])  # folder, permissions, input == output: before asking anything
    if not may_write(dst, args.overwrite, args.prog):
        print(f"{args.prog}: {dst} exists; not overwritten", file=sys.stderr)
        return "skipped"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StreamNote)
        warnings.simplefilter("always", IncompleteInput)
        try:
            out = upscale(src, dst, scale=args.scale, model=args.model, device=args.device,
                          encoder=args.encoder, crf=args.crf, preset=args.preset, threads=args.threads,
                          tile=args.tile, quiet=args.quiet, max_frames=args.max_frames or None, strict=args.strict,
                          compute=args.compute, streaming=args.streaming, precision=args.precision)
        except KeyboardInterrupt:
            if os.path.exists(dst):
                print(f"{args.prog}: interrupted; {dst} holds the frames done so far", file=sys.stderr)
                raise SystemExit(130) from None
            raise
        finally:
            for w in caught:
                if issubclass(w.category, StreamNote):
                    print(f"{args.prog}: note: {w.message}", file=sys.stderr)
                elif issubclass(w.category, IncompleteInput):
                    print(f"{args.prog}: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return None


def run(args) -> int:
    from ..pipeline import default_output

    if args.model == "default" and args.scale not in shipped_scales():
        raise ValueError(f"no shipped weights for x{args.scale} (shipped: "
                         f"{', '.join(map(str, shipped_scales()))}); give --model PATH trained for x{args.scale}")
    inputs = expand_inputs(args.input)
    out = Path(args.output) if args.output else None
    batch = len(inputs) > 1 or len(args.input) > 1 or any(Path(i).is_dir() for i in args.input)
    if batch and out is not None and not out.is_dir():
        raise FileNotFoundError(2, "output folder does not exist (a batch writes into a folder)", str(out))

    def dst_of(src: Path) -> Path:
        d = default_output(src, args.scale)
        if out is None:
            return d
        return out / d.name if out.is_dir() else out

    if batch:
        return run_batch(inputs, lambda src: _one(args, src, dst_of(src)), args.prog)
    return 1 if _one(args, inputs[0], dst_of(inputs[0])) == "skipped" else 0  # -n: as ffmpeg, exit code 1


def main(argv=None, prog: str = "bitsr upscale") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    args.prog = ap.prog
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
