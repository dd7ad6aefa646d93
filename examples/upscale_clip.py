"""Upscale a short clip end to end: the main job of bitsr (this is what `make demo` runs).

    python examples/upscale_clip.py                  # makes a 3 s HEVC sample, upscales it x4
    python examples/upscale_clip.py clip.mp4 -o out.mp4 --scale 2

It uses the shipped weights (bitsr/weights/default_x4.pt); for a scale without shipped weights
(only x4 ships) it first trains a small model for a few minutes
(examples/train_on_your_videos.py) and says so. Without an input it re-encodes the first
seconds of the shared Big Buck Bunny clip (720p H.264 with AAC audio, from $BITSR_SHARED or
../shared) to 320x180 HEVC, or makes a synthetic clip with PyAV when the shared data is absent.
The upscaled result keeps the sample's audio; with the real clip it is compared with the 720p
original (PSNR against bicubic upscaling).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr.samples import default_source, make_sample  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def compare(output: Path, reference: Path, sample: Path) -> None:
    """Mean RGB PSNR of the upscaled frames and of bicubic upscaling against the reference frames
    shown at the same times."""
    with av.open(str(output)) as o, av.open(str(reference)) as r, av.open(str(sample)) as s:
        ref = {round(float(f.pts * f.time_base), 3): f for f in r.decode(video=0)}
        ours, bicubic = [], []
        for fo, fs in zip(o.decode(video=0), s.decode(video=0)):
            fr = ref.get(round(float(fo.pts * fo.time_base), 3))
            if fr is None or (fr.width, fr.height) != (fo.width, fo.height):
                continue
            target = fr.to_ndarray(format="rgb24")
            ours.append(psnr(fo.to_ndarray(format="rgb24"), target))
            up = fs.reformat(width=fo.width, height=fo.height, format="rgb24", interpolation="BICUBIC")
            bicubic.append(psnr(up.to_ndarray(), target))
    if ours:
        print(f"PSNR vs the {fr.width}x{fr.height} original over {len(ours)} frames: "
              f"bitsr {np.mean(ours):.2f} dB, bicubic {np.mean(bicubic):.2f} dB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="HEVC clip (default: make a sample)")
    ap.add_argument("-o", "--output", help="output file (default: build/demo/<name>_x<scale>.mp4)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of the made sample")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="default", help="weights name or checkpoint path")
    ap.add_argument("--train-iters", type=int, default=100,
                    help="iterations of the demo model trained when no weights ship for --scale")
    args = ap.parse_args()

    out_dir = ROOT / "build" / "demo"
    reference = None
    if args.input:
        src = Path(args.input)
    else:
        reference = default_source()
        src = out_dir / "sample.mp4"
        print(f"making a {args.seconds:g} s HEVC sample from {reference or 'a synthetic pattern'} -> {src}")
        make_sample(src, source=reference, width=320, height=180, seconds=args.seconds)
    dst = Path(args.output) if args.output else out_dir / f"{src.stem}_x{args.scale}.mp4"
    dst.parent.mkdir(parents=True, exist_ok=True)

    model = args.model
    if model == "default":
        from bitsr.upscaler import resolve_weights

        try:
            resolve_weights(model, args.scale)
        except FileNotFoundError:
            # No weights ship for this scale: train a small model on the spot (a few minutes on
            # a CPU) so the demo still runs end to end. It is far from a trained model.
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from train_on_your_videos import default_inputs, train

            print(f"no shipped x{args.scale} weights: training a small demo model first")
            work = ROOT / "runs" / "demo"
            model = str(train(default_inputs(work), work, args.scale, iters=args.train_iters))

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as notes:  # printed as notes, as the CLI does
        warnings.simplefilter("always")
        out = bitsr.upscale(src, dst, scale=args.scale, model=model, device=args.device)
    dt = time.perf_counter() - t0
    for w in notes:
        print(f"note: {w.message}")
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        n = sum(1 for p in c.demux(v) if p.size)
        streams = ", ".join(f"{s.type} {s.codec_context.name}" for s in c.streams)
        print(f"wrote {out}: {n} frames {v.width}x{v.height} at {v.average_rate} fps ({streams}) "
              f"in {dt:.1f} s ({n / dt:.2f} frames/s)")
    if reference is not None and args.scale * 180 == 720:
        compare(out, reference, src)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
