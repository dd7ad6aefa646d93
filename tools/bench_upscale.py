"""Benchmark: bitsr.upscale end to end, 360p -> 1440p (x4) on real content.

    python tools/bench_upscale.py [--frames 16] [--long-frames 320] [--preset ultrafast]
                                  [--json build/bench/bench_upscale.json]

Input: the shared Big Buck Bunny clip (720p H.264 with AAC) re-encoded here to 640x360 HEVC
(x265 defaults, audio copied); without the shared data, a synthetic clip. Rows:

  bicubic + x265          the alternative without a network: FFmpeg decode, swscale bicubic
                          x4, the same x265 settings, audio copied
  mv, routing + reuse     bitsr with motion-vector alignment and partition-guided compute
  mv, routing             reuse of residual-free tiles off
  mv, uniform             routing and reuse off: the deepest branch everywhere
  mv, uniform, fp32       the same in fp32 (the rows above run bf16 convolutions where the
                          CPU computes bf16 natively: bitsr.Upscaler's precision="auto")
  dis, routing + reuse    OpenCV DIS optical flow instead of the bitstream's motion vectors

Per row: end-to-end frames/s of ``bitsr.upscale`` (decode + priors + flow + network + encode +
remux) with CPU seconds per frame (the fair measure on a shared machine), the same without
encoding ("Up": ``bitsr.Upscaler.frames``: decode, priors, flow, network), GFLOPs per frame
counted by ``torch.utils.flop_counter`` (convolutions and matmuls of the network; DIS flow
runs in OpenCV and shows in the CPU time only), and the share of 16x16 tiles computed per
branch and reused. The ratios compare with the uniform row.

Memory: ``bitsr.upscale`` in a fresh process over a long clip (``--long-frames``, made here,
320x180 -> 1280x720), resident size sampled every 20 frames: peak, and the fitted growth per
100 frames over the second half of the run, after allocator pools have settled (flat means
bounded memory whatever the length).

Weights: the shipped ``default`` x4 weights when present, else the default architecture
with random weights (speed and FLOPs do not depend on the weights; routing and reuse depend
on the bitstream only).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr.io.writer import StreamNote  # noqa: E402
from bitsr.samples import default_source, make_sample  # noqa: E402

OUT = ROOT / "build" / "bench"
VARIANTS = [  # name, model overrides, alignment, CPU precision (bitsr.Upscaler)
    ("mv, routing + reuse", {"routing": True, "reuse": True}, "mv", "auto"),
    ("mv, routing", {"routing": True, "reuse": False}, "mv", "auto"),
    ("mv, uniform", {"routing": False, "reuse": False}, "mv", "auto"),
    ("mv, uniform, fp32", {"routing": False, "reuse": False}, "mv", "fp32"),
    ("dis, routing + reuse", {"routing": True, "reuse": True}, "dis", "auto"),
]


def checkpoints(scale: int) -> tuple[dict, str]:
    """Checkpoint path per variant (same weights, switches changed) and where the weights came from."""
    import torch

    from bitsr.models import build_model
    from bitsr.models.checkpoint import CKPT_FORMAT, load_checkpoint, save_checkpoint
    from bitsr.upscaler import resolve_weights

    try:
        ck = load_checkpoint(resolve_weights("default", scale))
        origin = "shipped default weights"
    except FileNotFoundError:
        torch.manual_seed(0)
        cfg = {"model": {"type": "BitVSR", "scale": scale}, "data": {"align": "mv"}}
        ck = {"format": CKPT_FORMAT, "config": cfg, "model": build_model(cfg["model"]).state_dict()}
        origin = "default architecture, random weights (no shipped weights found)"
    out = {}
    for name, over, align, _ in VARIANTS:
        cfg = json.loads(json.dumps(ck["config"]))
        cfg["model"].update(over)
        cfg["data"]["align"] = align
        p = OUT / f"ckpt-x{scale}-{name.replace(' ', '').replace(',', '_').replace('+', '')}.pt"
        save_checkpoint(p, {"format": CKPT_FORMAT, "config": cfg, "model": ck["model"]})
        out[name] = p
    return out, origin


def bicubic_x265(src: Path, dst: Path, scale: int, frames: int, preset: str) -> float:
    """Decode, swscale bicubic, x265 with the writer bitsr uses (same settings and remux)."""
    from bitsr.io.writer import VideoWriter

    with av.open(str(src)) as c, warnings.catch_warnings():
        warnings.simplefilter("ignore", StreamNote)
        s = c.streams.video[0]
        w = VideoWriter(dst, s.width * scale, s.height * scale, rate=s.average_rate, time_base=s.time_base,
                        preset=preset, source=src, source_video=s.index)
        n = 0
        for f in c.decode(s):
            up = f.reformat(width=s.width * scale, height=s.height * scale, format="rgb24", interpolation="BICUBIC")
            w.write(up.to_ndarray(), f.pts)
            n += 1
            if n == frames:
                break
        w.close(complete=False)
    return n


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return n, time.perf_counter() - w0, time.process_time() - c0


def sr_only(src: Path, ckpt: Path, scale: int, frames: int, count_flops: bool, precision: str = "auto"):
    """(frames, wall, cpu, flops per frame or None, routing stats) of the network alone."""
    from torch.utils.flop_counter import FlopCounterMode

    up = bitsr.Upscaler(scale=scale, device="cpu", model=str(ckpt), precision=precision)
    up.net.reset_stats()

    def run():
        n = 0
        for _ in up.frames(src):
            n += 1
            if n == frames:
                break
        return n

    if count_flops:
        fc = FlopCounterMode(display=False)
        with fc:
            n = run()
        return n, None, None, fc.get_total_flops() / n, dict(up.net.stats)
    n, wall, cpu = timed(run)
    return n, wall, cpu, None, dict(up.net.stats)


_MEMORY = """
import json, sys, warnings
sys.path.insert(0, sys.argv[4])
import bitsr
rss = []
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20
def sample(i, hr):
    if i % 20 == 0:
        rss.append((i, rss_mb()))
warnings.simplefilter("ignore")
bitsr.upscale(sys.argv[1], sys.argv[2], scale=4, model=sys.argv[3], device="cpu", preset=sys.argv[5], quiet=True,
              on_frame=sample)
# VmHWM: this process image's peak (ru_maxrss would include the parent's, kept across exec)
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print(json.dumps({"rss": rss, "peak_mb": peak}))
"""


def memory_run(frames: int, ckpt: Path, preset: str) -> dict:
    src = OUT / f"long_{frames}.mp4"
    if not src.exists():
        make_sample(src, synthetic=True, width=320, height=180, seconds=frames / 25, preset="ultrafast")
    r = subprocess.run([sys.executable, "-c", _MEMORY, str(src), str(OUT / "long_x4.mp4"), str(ckpt), str(ROOT),
                        preset],
                       capture_output=True, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    xs, ys = np.array([p[0] for p in res["rss"]], float), np.array([p[1] for p in res["rss"]])
    late = xs >= xs[-1] / 2  # allocator pools settle over the first few hundred frames
    res["growth_mb_per_100_frames"] = float(np.polyfit(xs[late], ys[late], 1)[0] * 100) if late.sum() > 2 else None
    res["frames"] = frames
    res["rss_first_mb"], res["rss_last_mb"] = float(ys[0]), float(ys[-1])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16, help="frames per speed run")
    ap.add_argument("--long-frames", type=int, default=400, help="length of the memory run (0: skip)")
    ap.add_argument("--preset", default="ultrafast", help="x265 preset of every run")
    ap.add_argument("--threads", type=int, default=0, help="torch/FFmpeg threads (0: defaults)")
    ap.add_argument("--memory-only", action="store_true", help="only the memory run")
    ap.add_argument("--json", default=str(OUT / "bench_upscale.json"))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    scale = 4
    src = OUT / f"bbb_360p_{args.frames}f.mp4"
    if not src.exists():
        make_sample(src, source=default_source(), width=640, height=360, seconds=args.frames / 25 + 0.5)
    ckpts, origin = checkpoints(scale)
    print(f"input {src.name}: 640x360 HEVC from {default_source() or 'a synthetic pattern'} -> 2560x1440 x265 "
          f"{args.preset}; {args.frames} frames; torch threads {torch.get_num_threads()}; weights: {origin}",
          flush=True)

    rows = []
    if not args.memory_only:
        n, wall, cpu = timed(lambda: bicubic_x265(src, OUT / "bicubic.mp4", scale, args.frames, args.preset))
        rows.append({"name": "bicubic + x265", "e2e_fps": n / wall, "e2e_cpu_s_per_frame": cpu / n})
    for name, _, _, prec in [] if args.memory_only else VARIANTS:
        ck = ckpts[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StreamNote)
            n, wall, cpu = timed(lambda: (bitsr.upscale(src, OUT / "bitsr.mp4", scale, str(ck), "cpu",
                                                        preset=args.preset, quiet=True, max_frames=args.frames,
                                                        threads=args.threads, precision=prec), args.frames)[1])
        n_sr, w_sr, c_sr, _, stats = sr_only(src, ck, scale, args.frames, False, prec)
        _, _, _, flops, _ = sr_only(src, ck, scale, args.frames, True, prec)
        tiles = max(stats["tiles"], 1)
        rows.append({"name": name, "e2e_fps": n / wall, "e2e_cpu_s_per_frame": cpu / n, "sr_fps": n_sr / w_sr,
                     "sr_cpu_s_per_frame": c_sr / n_sr, "gflops_per_frame": flops / 1e9,
                     "tiles_per_branch": [c / tiles for c in stats["computed"]],
                     "tiles_reused": stats["reused"] / tiles})
        print(f"  {name}: done", flush=True)
    uni = next((r for r in rows if r["name"] == "mv, uniform"), None)
    for r in rows:
        if "gflops_per_frame" in r and uni is not None:
            r["flops_vs_uniform"] = r["gflops_per_frame"] / uni["gflops_per_frame"]
            r["sr_speed_vs_uniform"] = uni["sr_cpu_s_per_frame"] / r["sr_cpu_s_per_frame"]

    hdr = f"{'pipeline':<22} {'e2e fps':>8} {'e2e cpu s/f':>11} {'Up fps':>7} {'Up cpu s/f':>10} {'GFLOP/f':>8} " \
          f"{'FLOPs/uni':>9} {'Up speed/uni':>12} {'branch 0/1/2 %':>15} {'reused %':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in rows:
        if "sr_fps" in r:
            br = "/".join(f"{100 * x:.0f}" for x in r["tiles_per_branch"])
            print(f"{r['name']:<22} {r['e2e_fps']:8.2f} {r['e2e_cpu_s_per_frame']:11.2f} {r['sr_fps']:7.2f} "
                  f"{r['sr_cpu_s_per_frame']:10.2f} {r['gflops_per_frame']:8.1f} {r['flops_vs_uniform']:9.2f} "
                  f"{r['sr_speed_vs_uniform']:12.2f} {br:>15} {100 * r['tiles_reused']:8.1f}")
        else:
            print(f"{r['name']:<22} {r['e2e_fps']:8.2f} {r['e2e_cpu_s_per_frame']:11.2f}")

    mem = None
    if args.long_frames:
        mem = memory_run(args.long_frames, ckpts["mv, routing + reuse"], args.preset)
        print(f"\nmemory, {mem['frames']} frames 320x180 -> 1280x720 (mv, routing + reuse): "
              f"peak RSS {mem['peak_mb']:.0f} MB; "
              f"RSS {mem['rss_first_mb']:.0f} MB at frame 0, {mem['rss_last_mb']:.0f} MB at frame {mem['rss'][-1][0]}; "
              f"fitted growth over the second half: {mem['growth_mb_per_100_frames']:+.2f} MB per 100 frames")
    res = {"input": str(src), "frames": args.frames, "preset": args.preset, "weights": origin,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "rows": rows, "memory": mem}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
