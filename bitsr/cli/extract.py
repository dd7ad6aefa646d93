"""bitsr-extract: dump the bitstream priors of an HEVC file.

Writes the arrays of docs/schema.md, in decoding order, to an .npz file:
picture level (width, height, conf_win, bit_depth, chroma_format, poc, nal_type,
slice_type, temporal_id) and per 4x4 block (pred_mode, cu_log2, part_mode, merge_flag,
inter_dir, mv, ref_idx, ref_poc, qp_y, tu_log2, residual, intra_mode, pcm_flag,
transquant_bypass).

With --flow, --json or --viz a second pass goes through the pictures in display order:
  --flow   motion-vector flow (bitsr.flow) to the frames --flow-offsets away, added to the
           .npz (flow [N, K, 2, H, W], flow_confidence [N, K, H, W], flow_offsets,
           flow_factor, flow_display_index, flow_poc, flow_decode_index; display order) and
           written as Middlebury .flo files (<display index>_<offset>.flo, via mmcv).
  --json   a per-frame summary: type, POC, QP statistics, block-mode and CU-size shares,
           mean motion vector length (and flow statistics with --flow).
  --viz    PNG pictures and an MP4 of the decoded frames with CU/PU/TU boundaries,
           prediction modes, motion-vector arrows and colour-coded flow (bitsr.viz).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import add_overwrite, add_version, cli_errors, expand_inputs, may_write, run_batch


def build_parser(prog: str = "bitsr-extract") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="+",
                    help="HEVC or H.264 file (raw Annex B .hevc/.265/.h264, MP4/MOV/MKV), a folder of them or a "
                         "quoted glob; several make a batch")
    ap.add_argument("-o", "--output", help="output .npz (default: <input stem>.priors.npz beside the input); for a "
                                           "batch (or an existing folder) the folder to write into")
    ap.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                    help="files extracted in parallel in a batch (0: one per CPU core; default 1)")
    ap.add_argument("-t", "--threads", type=int, default=1, metavar="N",
                    help="threads parsing one HEVC file (0: one per CPU core; default 1); the output is the same")
    ap.add_argument("--picture-level", action="store_true",
                    help="write only the picture-level arrays (skips the per-4x4 arrays, much smaller)")
    ap.add_argument("--no-compress", action="store_true", help="store arrays uncompressed (faster, larger)")
    ap.add_argument("--max-frames", type=int, default=0, metavar="N",
                    help="stop after N pictures (decoding order; display order in the --flow/--json/--viz pass)")
    ap.add_argument("--strict", action="store_true",
                    help="fail on the first damaged NAL unit instead of concealing it")
    add_overwrite(ap)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_version(ap)
    g = ap.add_argument_group("flow, summary and pictures (display order)")
    g.add_argument("--flow", action="store_true",
                   help="compute motion-vector flow; stored in the .npz and as .flo files (see --flo-dir)")
    g.add_argument("--flow-offsets", default="-1,1", metavar="K,...",
                   help="display offsets to compute the flow towards (default: -1,1; |k| <= 16; "
                        "write --flow-offsets=-1,2 when the list starts with a minus)")
    g.add_argument("--flow-factor", type=int, default=1, metavar="F",
                   help="flow at the cropped size divided by F, values in those pixels (default: 1)")
    g.add_argument("--flo-dir", metavar="DIR",
                   help="folder for the .flo files (default: <output without .npz>.flo/; 'none' to skip)")
    g.add_argument("--json", nargs="?", const="", metavar="PATH",
                   help="write a per-frame summary as JSON to PATH ('-' for stdout; default <input stem>.json)")
    g.add_argument("--viz", metavar="DIR",
                   help="write PNG pictures and an MP4 with the coding structure drawn over the frames into DIR")
    g.add_argument("--viz-scale", type=int, default=0, metavar="S",
                   help="enlarge the --viz pictures S times (default: enough for small videos, 1 from about 400 rows)")
    g.add_argument("--no-npz", action="store_true",
                   help="do not write the .npz (with --flow, --json or --viz only)")
    return ap


def _offsets(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--flow-offsets: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k == 0 or abs(k) > 16 for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"--flow-offsets: need distinct non-zero offsets with |k| <= 16, got {text!r}")
    return ks


def default_output(src) -> str:
    return os.path.splitext(os.fspath(src))[0] + ".priors.npz"


def run(args) -> int:
    display_pass = args.flow or args.json is not None or args.viz
    if args.no_npz and not display_pass:
        raise ValueError("--no-npz leaves nothing to do without --flow, --json or --viz")
    if args.flow:
        _offsets(args.flow_offsets)  # option errors before any work
    if args.flow_factor < 1:
        raise ValueError("--flow-factor must be >= 1")
    if args.viz_scale < 0 or args.viz_scale > 16:
        raise ValueError("--viz-scale must be in 0..16")
    if args.jobs < 0:
        raise ValueError("--jobs must be >= 0")
    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if (args.flow and (args.flo_dir or "").lower() != "none") or args.viz:
        try:  # said now, not after a whole first pass
            import mmcv  # noqa: F401
        except ImportError:
            raise ValueError("--flow .flo files and --viz need mmcv-lite (pip install 'bitsr[flow]')") from None
    inputs = expand_inputs(args.input)
    out = args.output
    batch = len(inputs) > 1 or len(args.input) > 1 or any(os.path.isdir(i) for i in args.input)
    if batch and out is not None and not os.path.isdir(out):
        raise FileNotFoundError(2, "output folder does not exist (a batch writes into a folder)", out)
    if batch and (args.json not in (None, "") or args.viz or args.flo_dir not in (None, "none")):
        raise ValueError("--json PATH, --viz and --flo-dir name one file's outputs: give one input")

    def dst_of(src) -> str:
        d = default_output(src)
        return d if out is None else (os.path.join(out, os.path.basename(d)) if os.path.isdir(out) else out)

    if not batch:
        return 1 if _one(args, inputs[0], dst_of(inputs[0])) == "skipped" else 0  # -n: exit code 1, as ffmpeg
    jobs = args.jobs or os.cpu_count() or 1
    if jobs == 1 or len(inputs) == 1:
        return run_batch(inputs, lambda src: _one(args, src, dst_of(src)), args.prog)
    from concurrent.futures import ProcessPoolExecutor

    args.quiet = True  # progress bars of parallel jobs would garble each other
    with ProcessPoolExecutor(min(jobs, len(inputs))) as pool:
        results = list(pool.map(_job, [(args, src, dst_of(src)) for src in inputs]))
    return run_batch(list(range(len(inputs))), lambda i: _replay(results[i]), args.prog)


def _job(a):
    """One file of a parallel batch, in a worker process: its messages go to stderr as they come."""
    args, src, dst = a
    try:
        with cli_errors(args.prog):
            return _one(args, src, dst) or "done"
    except SystemExit:
        return "failed"


def _replay(result: str):
    if result == "failed":
        raise SystemExit(2)
    return result


def _one(args, src, out: str):
    """Extracts one file (``args`` as parsed; ``src`` and ``out`` its paths)."""
    from ..io.paths import check_output

    args = argparse.Namespace(**{**vars(args), "input": os.fspath(src), "output": out})
    if not os.path.isfile(args.input):
        raise FileNotFoundError(2, "no such file", args.input)
    if not args.no_npz:
        check_output(out, inputs=[args.input])
        if not may_write(Path(out), args.overwrite, args.prog):
            print(f"{args.prog}: {out} exists; not overwritten", file=sys.stderr)
            return "skipped"
    return _extract(args, out)


def _extract(args, out: str):
    from .. import extract
    from ..io.npz import NpzStreamWriter, write_priors

    display_pass = args.flow or args.json is not None or args.viz
    offsets = _offsets(args.flow_offsets) if args.flow else []
    if args.no_npz:
        return run_display(args, None, out, offsets)
    writer = NpzStreamWriter(out, compress=not args.no_compress)
    total = os.path.getsize(args.input)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="pic", desc=os.path.basename(args.input), file=sys.stderr, dynamic_ncols=True)
    try:
        n, concealed = write_priors(writer, extract(args.input, strict=args.strict, threads=args.threads),
                                    picture_level=args.picture_level, max_frames=args.max_frames,
                                    on_picture=None if bar is None else lambda _: bar.update(1))
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        writer.abort()
        raise ValueError(f"{args.input}: no decodable picture found")
    if display_pass:
        try:
            run_display(args, writer, out, offsets)
        except BaseException:
            writer.abort()
            raise
    writer.close()
    if not args.quiet:
        print(f"wrote {n} pictures to {out} ({total} input bytes)", file=sys.stderr)
    if concealed:  # said even with -q: the arrays of those pictures are partly placeholders
        print(f"{args.prog}: warning: {args.input}: {n} picture(s) written to {out}, {concealed} with damaged slice "
              "data concealed (their 'valid' blocks are False; --strict fails instead)", file=sys.stderr)
    return 0


def run_display(args, writer, out: str, offsets: list[int]) -> int:
    """The display-order pass: flow, JSON summary, pictures."""
    from .display_pass import DisplayOutputs

    outputs = DisplayOutputs(args, writer, out, offsets)
    try:
        outputs.run()
    finally:
        outputs.close()
    return 0


def main(argv=None, prog: str = "bitsr-extract") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    args.prog = ap.prog
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
