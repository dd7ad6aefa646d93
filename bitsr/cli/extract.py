"""bitsr-extract: dump the bitstream priors of an HEVC file.

Writes the arrays of ../shared/corpus/SCHEMA.md, in decoding order, to an .npz file:
picture level (width, height, conf_win, bit_depth, chroma_format, poc, nal_type,
slice_type, temporal_id) and per 4x4 block (pred_mode, cu_log2, part_mode, merge_flag,
inter_dir, mv, ref_idx, ref_poc, qp_y, tu_log2, residual, intra_mode, pcm_flag,
transquant_bypass).
"""
from __future__ import annotations

import argparse
import os
import sys

from .common import cli_errors


def build_parser(prog: str = "bitsr-extract") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="HEVC file: raw Annex B (.hevc/.265/.h265) or MP4/MOV/MKV")
    ap.add_argument("-o", "--output", help="output .npz (default: <input stem>.priors.npz beside the input)")
    ap.add_argument("--picture-level", action="store_true",
                    help="write only the picture-level arrays (skips the per-4x4 arrays, much smaller)")
    ap.add_argument("--no-compress", action="store_true", help="store arrays uncompressed (faster, larger)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N pictures (decoding order)")
    ap.add_argument("--strict", action="store_true",
                    help="fail on the first damaged NAL unit instead of concealing it")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap


def run(args) -> int:
    from .. import extract
    from ..io.npz import NpzStreamWriter
    from ..priors import BLOCK_ARRAYS

    if not os.path.isfile(args.input):
        raise FileNotFoundError(2, "no such file", args.input)
    out = args.output or os.path.splitext(args.input)[0] + ".priors.npz"
    writer = NpzStreamWriter(out, compress=not args.no_compress)
    total = os.path.getsize(args.input)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="pic", desc=os.path.basename(args.input), file=sys.stderr, dynamic_ncols=True)
    n = 0
    try:
        for p in extract(args.input, strict=args.strict):
            if n == 0:
                writer.set("width", p.width)
                writer.set("height", p.height)
                writer.set("conf_win", list(p.conf_win))
                writer.set("bit_depth", p.bit_depth)
                writer.set("bit_depth_chroma", p.bit_depth_chroma)
                writer.set("chroma_format", p.chroma_format)
                writer.set("ctb_size", p.ctb_size)
            writer.append_value("poc", p.poc, "int32")
            writer.append_value("nal_type", p.nal_type, "uint8")
            writer.append_value("slice_type", p.slice_type, "uint8")
            writer.append_value("temporal_id", p.temporal_id, "uint8")
            writer.append_value("num_slice_segments", p.num_slice_segments, "int32")
            if not args.picture_level:
                arrays = p.arrays
                for k in BLOCK_ARRAYS:
                    writer.append_array(k, arrays[k])
            n += 1
            if bar is not None:
                bar.update(1)
            if args.max_frames and n >= args.max_frames:
                break
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        writer.abort()
        raise ValueError(f"{args.input}: no decodable HEVC picture found")
    writer.close()
    if not args.quiet:
        print(f"wrote {n} pictures to {out} ({total} input bytes)", file=sys.stderr)
    return 0


def main(argv=None, prog: str = "bitsr-extract") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
