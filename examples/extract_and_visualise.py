"""What the bitstream knows, picture by picture: priors, motion-vector flow and coding maps.

    python examples/extract_and_visualise.py                 # on a made 2 s HEVC sample
    python examples/extract_and_visualise.py clip.mp4 --frames 60

1. ``bitsr.extract`` (no pixel decoding) prints per-picture statistics in decoding order:
   type, QP, share of skipped / intra / residual-free blocks, mean motion.
2. ``bitsr.open`` pairs each decoded frame with its priors; ``Frame.flow(-1)`` is the dense
   flow to the previous frame built from the motion vectors, ``Frame.maps()`` the coding
   structure. Warping the previous frame with that flow is compared with no motion at all
   (PSNR against the frame), which shows the flow is real motion.
3. A panel video (frame | flow | confidence / CU size | block classes | warp error) goes to
   ``build/demo/priors.mp4`` and one panel to ``build/demo/priors.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr.io.writer import VideoWriter  # noqa: E402
from bitsr.samples import make_sample  # noqa: E402

try:
    import mmcv  # flow colour wheel and image writing (mmcv-lite, the 'flow' extra)
except ImportError:  # pragma: no cover
    sys.exit("this example needs mmcv-lite and opencv: pip install 'bitsr[flow]'")


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
    """Backward warp: samples ``img`` at (x + u, y + v)."""
    h, w = flow.shape[1:]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    fx, fy = torch.from_numpy(flow)
    grid = torch.stack([(gx + fx) * 2 / (w - 1) - 1, (gy + fy) * 2 / (h - 1) - 1], -1)[None]
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def colour(m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A scalar map as an RGB heat strip (blue low, red high)."""
    t = np.clip((m.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
    return (np.stack([t, 1 - np.abs(2 * t - 1), 1 - t], -1) * 255).astype(np.uint8)


def panel(frame, prev_rgb) -> tuple[np.ndarray, float, float]:
    rgb = frame.rgb
    flow, conf = frame.flow(-1)
    m = frame.maps(("cu_log2", "skip", "intra", "residual"))
    classes = np.zeros(rgb.shape, np.uint8)
    classes[...] = (60, 60, 60)  # inter with residual: grey
    classes[(m["residual"] == 0) & (m["intra"] == 0)] = (40, 160, 40)  # no residual: green
    classes[m["skip"] == 1] = (40, 90, 220)  # skipped: blue
    classes[m["intra"] == 1] = (220, 60, 40)  # intra: red
    if prev_rgb is not None:
        warped = warp(prev_rgb, flow)
        p_warp, p_zero = psnr(warped, rgb), psnr(prev_rgb, rgb)
        err = np.abs(warped.astype(np.int16) - rgb).mean(-1)
    else:
        p_warp = p_zero = float("nan")
        err = np.zeros(rgb.shape[:2])
    flow_rgb = (mmcv.flow2rgb(flow.transpose(1, 2, 0)) * 255).astype(np.uint8)
    top = np.concatenate([rgb, flow_rgb, colour(conf, 0, 1)], 1)
    bottom = np.concatenate([colour(m["cu_log2"], 3, 6), classes, colour(err, 0, 40)], 1)
    return np.concatenate([top, bottom], 0), p_warp, p_zero


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
            img, p_warp, p_zero = panel(frame, prev)
            if writer is None:
                h, w = img.shape[0] & ~1, img.shape[1] & ~1
                writer = VideoWriter(out_dir / "priors.mp4", w, h, rate=video.fps, preset="fast",
                                     time_base=video.time_base if frame.pts is not None else None)
            writer.write(img[:h, :w], frame.pts)
            if frame.display_index == min(args.frames, 24) // 2:
                mmcv.imwrite(img[..., ::-1], str(out_dir / "priors.png"))
            if prev is not None:
                gains.append((p_warp, p_zero))
                print(f"frame {frame.display_index:3d} {frame.picture_type}  warp by MV flow {p_warp:5.2f} dB, "
                      f"no motion {p_zero:5.2f} dB")
            prev = frame.rgb
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
