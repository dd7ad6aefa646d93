"""What the bitstream knows, picture by picture: priors, motion-vector flow and coding maps.

    python examples/extract_and_visualise.py                 # on a made 2 s HEVC sample
    python examples/extract_and_visualise.py clip.mp4 --frames 60

1. ``bitsr.extract`` (no pixel decoding) prints per-picture statistics in decoding order:
   type, QP, share of skipped / intra / residual-free blocks, mean motion.
2. ``bitsr.open`` pairs each decoded frame with its priors; ``Frame.flow(-1)`` is the dense
   flow to the previous frame built from the motion vectors (``bitsr.flow``). Warping the
   previous frame with it is compared with no motion at all (PSNR against the frame): the
   flow is real motion.
3. ``bitsr.viz.render`` draws partitions, prediction modes, vector arrows and the flow over
   each frame: ``build/demo/priors.mp4`` (all frames) and ``build/demo/priors.png`` (one).
   ``bitsr extract clip.mp4 --viz DIR`` writes the same pictures from the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr import viz  # noqa: E402
from bitsr.io.writer import VideoWriter  # noqa: E402
from bitsr.models.warp import flow_warp  # noqa: E402
from bitsr.samples import make_sample  # noqa: E402


def picture_table(path: Path, limit: int) -> None:
    print(f"{'dec':>4} {'poc':>4} type  qp  skip% intra% nores% |mv|px")
    for i, p in enumerate(bitsr.extract(path)):
        if i == limit:
            print("...")
            break
        pm, res = p.pred_mode, p.residual
        mv = p.mv[..., 0, :].astype(np.float32) / 4  # list 0, quarter-pel -> pixels
        inter = pm != 1
        mag = float(np.hypot(mv[..., 0], mv[..., 1])[inter].mean()) if inter.any() else 0.0
        print(f"{p.decode_index:>4} {p.poc:>4} {p.picture_type:^4} {p.qp_y.mean():5.1f} {100 * (pm == 2).mean():5.1f} "
              f"{100 * (pm == 1).mean():6.1f} {100 * (inter & (res == 0)).mean():6.1f} {mag:6.2f}")


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``img`` sampled at (x + u, y + v)."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    y = flow_warp(x, torch.from_numpy(flow)[None])
    return y[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="HEVC or H.264 clip (default: make a sample)")
    ap.add_argument("--frames", type=int, default=48, help="frames to visualise")
    ap.add_argument("-o", "--output-dir", default=str(ROOT / "build" / "demo"))
    args = ap.parse_args()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = Path(args.input) if args.input else make_sample(out_dir / "sample_priors.mp4", seconds=2.0,
                                                          x265_params="bframes=4:b-pyramid=1")

    print(f"== priors of {src} (decoding order)")
    picture_table(src, 16)

    print(f"\n== flow and maps, display order (first {args.frames} frames)")
    gains, writer, prev = [], None, None
    with bitsr.open(src, lookahead=1) as video:
        for frame in video:
            if frame.display_index == args.frames:
                break
            rgb = frame.rgb
            flow, conf = frame.flow(-1)
            img = viz.render(rgb, frame.priors, flow, conf,
                             title=f"frame {frame.display_index} {frame.picture_type} POC {frame.poc}")
            if writer is None:
                h, w = img.shape[0] & ~1, img.shape[1] & ~1
                writer = VideoWriter(out_dir / "priors.mp4", w, h, rate=video.fps, preset="fast",
                                     time_base=video.time_base if frame.pts is not None else None)
            writer.write(img[:h, :w], frame.pts)
            if frame.display_index == min(args.frames, 24) // 2:
                cv2.imwrite(str(out_dir / "priors.png"), img[..., ::-1])
            if prev is not None:
                p_warp, p_zero = psnr(warp(prev, flow), rgb), psnr(prev, rgb)
                gains.append((p_warp, p_zero))
                print(f"frame {frame.display_index:3d} {frame.picture_type}  previous frame warped by MV flow "
                      f"{p_warp:5.2f} dB, unwarped {p_zero:5.2f} dB")
            prev = rgb
    if writer is not None:
        writer.close()
    if gains:
        g = np.array(gains)
        print(f"\nmean PSNR of the previous frame warped by MV flow: {g[:, 0].mean():.2f} dB, "
              f"unwarped: {g[:, 1].mean():.2f} dB")
    print(f"wrote {out_dir / 'priors.mp4'} and {out_dir / 'priors.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
