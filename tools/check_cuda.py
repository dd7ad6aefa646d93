"""CUDA check of the upscaler: fp16 output against the CPU's fp32 output, `bitsr.upscale` on
CUDA end to end, and network throughput with routing + reuse on and off.

    python tools/check_cuda.py [--seconds 3] [--big-seconds 2] [--json check_cuda.json]

Clips are synthetic (`bitsr.samples.make_sample`): 320x180 for the comparisons and the end
to end run (x4 to 1280x720), 640x360 for the throughput (x4 to 2560x1440). Needs a CUDA
build of PyTorch (README, "GPU"). Run with DEVICE=cpu to try the script without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bitsr  # noqa: E402
from bitsr.samples import make_sample  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    m = np.mean((a.astype(np.float64) - b) ** 2)
    return 99.0 if m == 0 else float(10 * np.log10(255 ** 2 / m))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--big-seconds", type=float, default=2.0)
    ap.add_argument("--work", default="build/check_cuda")
    ap.add_argument("--json", default="build/check_cuda/check_cuda.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    dev = os.environ.get("DEVICE", "cuda")
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (PyTorch CPU build?); DEVICE=cpu runs the script on the CPU", file=sys.stderr)
        return 2
    cuda = dev == "cuda"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu"}
    src = make_sample(work / "small.mp4", synthetic=True, width=320, height=180, seconds=args.seconds)

    ref = list(bitsr.Upscaler(scale=4, device="cpu").frames(src))
    up = bitsr.Upscaler(scale=4, device=dev)
    with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        got = list(up.frames(src))
    res["frames_cpu_gpu"] = [len(ref), len(got)]
    res["fp16_vs_fp32_psnr_min"] = min(psnr(a, b) for a, b in zip(got, ref))
    res["fp16_vs_fp32_max_abs"] = int(max(np.abs(a.astype(int) - b).max() for a, b in zip(got, ref)))

    t = time.perf_counter()
    out = bitsr.upscale(src, work / "small_x4.mp4", scale=4, device=dev, quiet=True)
    res["upscale_s"] = time.perf_counter() - t
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        res["upscale_output"] = {"frames": sum(1 for p in c.demux(v) if p.size), "size": [v.width, v.height],
                                 "rate": str(v.average_rate), "streams": [s.type for s in c.streams]}

    big = make_sample(work / "big.mp4", synthetic=True, width=640, height=360, seconds=args.big_seconds)
    for name, routing, reuse in (("routing+reuse", True, True), ("uniform", False, False)):
        up.net.routing, up.net.reuse = routing, reuse
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            for _ in up.frames(big):  # warm-up
                pass
            if cuda:
                torch.cuda.synchronize()
            t, k = time.perf_counter(), 0
            for _ in up.frames(big):
                k += 1
            if cuda:
                torch.cuda.synchronize()
        res[f"fps_360p_to_1440p_{name}"] = k / (time.perf_counter() - t)
    print(json.dumps(res, indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
