"""Train a bitstream-guided SR model on your own videos, then upscale with it.

    python examples/train_on_your_videos.py                       # a quick CPU demo run
    python examples/train_on_your_videos.py ~/videos/*.mp4 --iters 20000 --channels 32

1. ``bitsr.data.prepare`` makes training pairs: each HR clip is cropped, downscaled with
   MATLAB-style bicubic and encoded with libx265 (what bitsr sees at test time), the HR
   frames kept losslessly (FFV1); a manifest makes re-runs resume.
2. ``bitsr.train.Trainer`` trains BitVSR on random crops of those pairs (Charbonnier loss,
   Adam with cosine decay), validating on whole frames (here the prepared clips themselves;
   give a separate set as ``val.root`` for a real run), and writes ``best.pt``/``last.pt``.
3. ``bitsr.upscale(..., model="runs/.../best.pt")`` upscales a clip with the new weights.

Without inputs it uses two clips of the shared training set ($BITSR_SHARED or ../shared), or
the synthetic sample clip when that is absent, with a tiny model and a few hundred iterations:
enough to see the loss fall and the pipeline run end to end, not a useful model. The same
steps from the command line: ``bitsr prepare`` and ``bitsr train CONFIG``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr._paths import shared_dir  # noqa: E402
from bitsr.data.encode import EncodeSpec  # noqa: E402
from bitsr.data.prepare import prepare  # noqa: E402
from bitsr.samples import make_sample  # noqa: E402
from bitsr.train import Trainer, load_config  # noqa: E402


def default_inputs(work: Path) -> list[Path]:
    sh = shared_dir()
    clips = sorted((sh / "video" / "train").glob("*.mkv"))[:2] if sh else []
    if clips:
        return clips
    return [make_sample(work / "synthetic_hr.mkv", source=None, width=256, height=192, seconds=1.0)]


def train(inputs: list[Path], work: Path, scale: int = 4, iters: int = 300, channels: int = 16,
          max_frames: int = 20) -> Path:
    """Prepares pairs from ``inputs`` under ``work/data``, trains, returns the best checkpoint."""
    data = work / "data"
    print(f"preparing pairs from {len(inputs)} clip(s) -> {data}")
    prepare(inputs, data, scales=(scale,), encodes=[EncodeSpec(crf=25, preset="fast")], max_frames=max_frames)
    print(f"training {iters} iterations")
    cfg = load_config(None, [
        f"name=example_x{scale}", f"out_dir={work / 'model'}",
        f"data.root={data}", "data.num_frames=3", "data.patch=64", "data.batch_size=4", "data.workers=0",
        f"val.root={data}", f"val.every={max(iters // 2, 1)}", "val.max_frames=5",
        f"train.iters={iters}", "train.log_every=50", f"train.ckpt_every={iters}",
        f"model.scale={scale}", f"model.channels={channels}",
    ])
    trainer = Trainer(cfg)
    try:
        res = trainer.train()
    finally:
        trainer.close()
    print(f"loss {res['first_loss']:.4f} -> {res['last_loss']:.4f}, best validation Y-PSNR {res['best_psnr']:.2f} dB")
    return work / "model" / "best.pt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", help="HR videos or frame folders (default: a small demo set)")
    ap.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--channels", type=int, default=16, help="network width (the default model uses 32)")
    ap.add_argument("--max-frames", type=int, default=20, help="frames used per clip (0: all)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "example"), help="work folder")
    args = ap.parse_args()

    work = Path(args.out)
    inputs = [Path(v) for v in args.videos] or default_inputs(work)
    weights = train(inputs, work, args.scale, args.iters, args.channels, args.max_frames)
    sample = make_sample(work / "sample.mp4", seconds=1.0)
    out = bitsr.upscale(sample, work / f"sample_x{args.scale}.mp4", scale=args.scale, model=str(weights), device="auto")
    print(f"upscaled {sample} -> {out} with {weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
