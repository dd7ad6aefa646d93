#!/usr/bin/env python3
"""Evaluates VSR models on Vid4 calendar + city: HR -> MATLAB bicubic x1/4 -> libx265 (low-delay
P, CRF 20/25/30) -> decode -> SR, scored by Y-PSNR / SSIM (BT.601 luma, border crop = scale).

Rows: bicubic (MATLAB imresize x4 of the decoded frames), the model as trained, the same
weights with each mechanism switched off at test time (no reuse; uniform compute = the heavy
branch everywhere; no alignment; OpenCV DIS alignment; single frame), and any separately
trained ablation checkpoints (--ablation NAME=PATH, see configs/ablations/). Columns: quality
per CRF, parameters, conv/matmul FLOPs per frame (torch.utils.flop_counter, on the first
--flops-frames frames of each clip: the counter slows every op), and time per
frame of the network and of the flow source: process CPU time with one thread by default,
which other jobs on a shared machine disturb far less than wall time (both go to the JSON).

    python tools/eval_vsr.py --weights runs/bitvsr_x4/best.pt --json eval_vsr.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bitsr._paths import shared_dir  # noqa: E402
from bitsr.data.dataset import VSRClipDataset  # noqa: E402
from bitsr.data.encode import EncodeSpec  # noqa: E402
from bitsr.data.imresize import imresize  # noqa: E402
from bitsr.data.prepare import prepare  # noqa: E402
from bitsr.train.metrics import psnr_y, ssim_y, to_uint8  # noqa: E402
from bitsr.train.validate import INPUT_KEYS  # noqa: E402
from bitsr.upscaler import load_model  # noqa: E402

# test-time switches on the trained weights: (label, model attributes, input alignment or None)
SWITCHES = [
    ("model (as trained)", {}, None),
    ("  - no reuse", {"reuse": False}, None),
    ("  - uniform compute", {"routing": False, "reuse": False}, None),
    ("  - no alignment", {"reuse": False}, "none"),
    ("  - DIS alignment", {}, "dis"),
    ("  - single frame", {"propagate": False, "reuse": False}, None),
]


def run_model(net, t: dict, scale: int, border: int, chunk: int = 8, flops: int = 0):
    """Per-frame metrics, seconds of network time, FLOPs (or None). ``flops``: count the
    FLOPs of the first ``flops`` frames instead (FlopCounterMode slows every op down)."""
    from torch.utils.flop_counter import FlopCounterMode

    n = t["lr"].shape[0] if not flops else min(flops, t["lr"].shape[0])
    hr = to_uint8(t["hr"])
    keys = [k for k in INPUT_KEYS if k in t and (net.bidirectional or not k.endswith("_next"))]
    ps, ss, secs, wall, state, total = [], [], 0.0, 0.0, None, 0
    net.reset_stats()
    for s in range(0, n, chunk):
        kw = {k: t[k][s:min(s + chunk, n)][None] for k in keys}
        with torch.inference_mode():
            if flops:
                with FlopCounterMode(display=False) as fc:
                    out, state = net(**kw, state=state)
                total += fc.get_total_flops()
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                out, state = net(**kw, state=state)
                secs += time.process_time() - c0
                wall += time.perf_counter() - t0
        if flops:
            continue
        for i, y in enumerate(to_uint8(out[0])):
            ps.append(psnr_y(y, hr[s + i], border))
            ss.append(ssim_y(y, hr[s + i], border))
    return ps, ss, secs, (total if flops else None), dict(net.stats), wall


def bicubic(t: dict, scale: int, border: int):
    lr = to_uint8(t["lr"]).numpy()
    hr = to_uint8(t["hr"])
    ps, ss, secs = [], [], 0.0
    for i in range(len(lr)):
        t0 = time.process_time()
        up = imresize(lr[i], scale)
        secs += time.process_time() - t0
        ps.append(psnr_y(up, hr[i], border))
        ss.append(ssim_y(up, hr[i], border))
    return ps, ss, secs


def flow_times(path: Path, frames: int) -> dict:
    """ms per frame of the flow + maps source (decoding excluded)."""
    import bitsr
    from bitsr.data.inputs import frame_inputs

    out = {}
    for align in ("mv", "dis"):
        secs, n, prev = 0.0, 0, None
        with bitsr.open(path) as v:
            for f in v:
                f.rgb  # decode outside the timed part
                t0 = time.process_time()
                fi = frame_inputs(f, prev, align)
                secs += time.process_time() - t0
                prev, n = fi.lr, n + 1
                if frames and n >= frames:
                    break
        out[align] = 1000 * secs / max(n, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="checkpoint of the model (best.pt); without it only bicubic is scored")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH", help="a separately trained baseline")
    ap.add_argument("--crf", type=float, nargs="+", default=[20, 25, 30])
    ap.add_argument("--clips", nargs="+", default=["calendar", "city"], choices=["calendar", "city"])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--data", default="data/val", help="prepared Vid4 folder (made here if missing)")
    ap.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see above)")
    ap.add_argument("--flops-frames", type=int, default=12,
                    help="count FLOPs on the first N frames of each clip (0: skip)")
    ap.add_argument("--json", default="eval_vsr.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sh = shared_dir()
    if sh is None:
        print("shared data not found (set BITSR_SHARED)", file=sys.stderr)
        return 2
    specs = [EncodeSpec(crf=c, gop="ldp", preset="medium") for c in args.crf]
    prepare([sh / "video" / "vid4" / f"{c}.mkv" for c in args.clips], args.data, scales=[args.scale],
            encodes=specs, progress=False)
    border = args.scale

    models = []  # (label, net, align, params)
    if args.weights:
        net, cfg = load_model(args.weights, args.scale)
        base_align = cfg["data"]["align"]
        for label, sw, align in SWITCHES:
            m = copy.deepcopy(net)
            for k, v in sw.items():
                setattr(m, k, v)
            models.append((label, m, align or base_align))
    for spec in args.ablation:
        name, _, path = spec.partition("=")
        net, cfg = load_model(path, args.scale)
        models.append((f"{name} (trained)", net, cfg["data"]["align"]))

    rows: dict = {"bicubic": {"params": 0, "crf": {}, "flops": [], "secs": 0.0, "frames": 0}}
    for label, m, _ in models:
        rows[label] = {"params": sum(p.numel() for p in m.parameters()), "crf": {}, "flops": [], "secs": 0.0,
                       "frames": 0, "tiles": [0, 0, 0, 0]}
    items = {}
    for spec in specs:
        for clip in args.clips:
            sets = {}
            for align in {a for _, _, a in models} | {"mv"}:
                ds = VSRClipDataset(args.data, scale=args.scale, align=align, include=[clip], tags=[spec.tag],
                                    max_frames=args.max_frames, progress=False,
                                    bidirectional=any(m.bidirectional for _, m, _ in models))
                sets[align] = ds[0][1]
            key = f"{clip}/crf{spec.crf:g}"
            res = {}
            ps, ss, secs = bicubic(sets["mv"], args.scale, border)
            res["bicubic"] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}
            r = rows["bicubic"]
            r["crf"].setdefault(spec.crf, []).append((np.mean(ps), np.mean(ss)))
            r["secs"] += secs
            r["frames"] += len(ps)
            for label, m, align in models:
                ps, ss, secs, _, st, wall = run_model(m, sets[align], args.scale, border)
                r = rows[label]
                r["crf"].setdefault(spec.crf, []).append((np.mean(ps), np.mean(ss)))
                r["secs"] += secs
                r["frames"] += len(ps)
                if st.get("tiles"):
                    r["tiles"] = [a + b for a, b in zip(r["tiles"], st["computed"] + [st["reused"]])]
                entry = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "ms_per_frame": 1000 * secs / len(ps),
                         "wall_ms_per_frame": 1000 * wall / len(ps), "tiles": st}
                if args.flops_frames:
                    nf = min(args.flops_frames, len(ps))
                    fl = run_model(m, sets[align], args.scale, border, flops=nf)[3]
                    r["flops"].append(fl / nf)
                    entry["gflops_per_frame"] = fl / nf / 1e9
                res[label] = entry
                print(f"{key:16s} {label:24s} {entry['psnr']:.3f} dB {entry['ssim']:.4f} "
                      f"{entry['ms_per_frame']:.0f} ms/frame", file=sys.stderr)
            items[key] = res

    ft = flow_times(Path(args.data) / args.clips[0] / f"x{args.scale}" / f"{specs[0].tag}.mkv", args.max_frames)
    crfs = [s.crf for s in specs]
    head = f"{'method':26s}" + "".join(f" {'CRF ' + format(c, 'g'):>15s}" for c in crfs) + f" {'params':>8s} {'GFLOP/fr':>9s} {'ms/fr':>7s}"
    lines = [f"Vid4 ({', '.join(args.clips)}) x{args.scale}, libx265 LDP medium; Y-PSNR (dB) / SSIM, border {border}; "
             f"ms/fr = CPU time per frame, {args.threads} thread(s)", head, "-" * len(head)]
    summary = {}
    for label, r in rows.items():
        q = {c: (float(np.mean([a for a, _ in r["crf"][c]])), float(np.mean([b for _, b in r["crf"][c]]))) for c in crfs}
        gf = float(np.mean(r["flops"])) / 1e9 if r["flops"] else None
        ms = 1000 * r["secs"] / max(r["frames"], 1)
        summary[label] = {"psnr_ssim": {format(c, "g"): q[c] for c in crfs}, "params": r["params"],
                          "gflops_per_frame": gf, "ms_per_frame": ms}
        if "tiles" in r and sum(r["tiles"]):
            tot = sum(r["tiles"])
            summary[label]["tile_share"] = {"branch": [x / tot for x in r["tiles"][:3]], "reused": r["tiles"][3] / tot}
        lines.append(f"{label:26s}" + "".join(f" {q[c][0]:7.3f}/{q[c][1]:.4f}" for c in crfs)
                     + f" {r['params']:8d} {'-' if gf is None else format(gf, '9.3f'):>9s} {ms:7.1f}")
    lines.append(f"flow source, ms/frame (LR {args.clips[0]}): bitstream MV {ft['mv']:.1f}, OpenCV DIS {ft['dis']:.1f}")
    table = "\n".join(lines)
    print(table)
    out = {"command": " ".join(sys.argv), "scale": args.scale, "crf": crfs, "clips": args.clips,
           "threads": args.threads, "weights": args.weights, "ablations": args.ablation, "summary": summary,
           "items": items, "flow_ms_per_frame": ft, "table": table}
    Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
