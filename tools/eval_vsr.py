#!/usr/bin/env python3
"""Evaluation matrix of VSR models on compressed video: clips x encodings x CRFs, at x2 and x4.

Clips: Vid4 calendar and city (never trained on) and the two shared clips held out of training
by tools/prepare_train.py (HOLDOUT: sam2_bedroom, intel_car-detection; note that the shipped
default_x4.pt was trained before they were held out, so its numbers on them are optimistic).
Each clip: HR -> MATLAB bicubic 1/s -> one of the encodings, at CRF 20 / 25 / 30 / 35, preset
medium, -> decoded -> SR, scored by Y-PSNR / SSIM (BT.601 luma, border crop = scale):

  x265-default  x265 with its own GOP (adaptive B-pyramid, keyint 250, scene cuts), .mkv
  x265-ldp      x265 low-delay P, keyint 32 (the degradation of the earlier tables), .mkv
  x264-default  x264 defaults (High profile, adaptive B-frames), .mp4: the H.264 priors path

Rows: bicubic (MATLAB imresize of the decoded frames), the model as trained, the same weights
with each mechanism switched off at test time (no reuse; uniform compute = the heavy branch
everywhere, no reuse; auto compute = bitsr.Upscaler's default on the CPU, routing only the
frames whose plan saves enough; no alignment; OpenCV DIS alignment; single frame), and separately
trained ablations (--ablation NAME=PATH, see configs/ablations/). Per cell (encoding, CRF),
mean over the clips: Y-PSNR / SSIM and their gain over bicubic (the key number), conv/matmul
GFLOPs per frame (torch.utils.flop_counter on the first --flops-frames frames of each clip:
the counter slows every op) and network CPU ms per frame (process CPU time, one thread by
default, which other jobs on a shared machine disturb far less than wall time; wall time goes
to the JSON too); for the model and auto rows, the FLOPs and CPU time they save against
uniform compute, and what they cost in Y-PSNR.

Prints, per scale, tables of rows x cells (Y-PSNR and SSIM: bicubic absolute, other rows as
gains; the savings of routing + reuse), writes everything to --json and, when matplotlib is
installed, a plot of the gains over bicubic per CRF and encoding to --plot. The eval data is
prepared into --data (default data/val, idempotent, shared with tools/prepare_train.py).

    python tools/eval_vsr.py --weights bitsr/weights/default_x4.pt --scale 4           # the x4 matrix
    python tools/eval_vsr.py --weights 4=runs/x4/best.pt --weights 2=runs/x2/best.pt  # x2 and x4
    python tools/eval_vsr.py --weights default --scale 4 --clips calendar --crf 25 \\
        --encodings x265-default --max-frames 8                                       # a quick look

--weights takes a checkpoint path or a name under bitsr/weights (resolved per scale), or
S=PATH for one scale; a scale without weights gets bicubic (and ablations) only.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS.parent))
sys.path.insert(0, str(TOOLS))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from prepare_train import HOLDOUT, VAL_CLIPS, holdout_sources  # noqa: E402

from bitsr._paths import shared_dir  # noqa: E402
from bitsr.data.cache import decode_inputs, decode_rgb  # noqa: E402
from bitsr.data.encode import EncodeSpec  # noqa: E402
from bitsr.data.imresize import imresize  # noqa: E402
from bitsr.data.inputs import to_tensors  # noqa: E402
from bitsr.data.prepare import item_key, prepare  # noqa: E402
from bitsr.models.precision import PRECISIONS  # noqa: E402
from bitsr.models.spec import FILE_CHUNK, clip_windows  # noqa: E402
from bitsr.train.metrics import psnr_y, ssim_y, to_uint8  # noqa: E402
from bitsr.upscaler import Upscaler, load_model  # noqa: E402

CLIPS = VAL_CLIPS + HOLDOUT
CRFS = (20, 25, 30, 35)
# encoding name -> EncodeSpec at a CRF
ENCODINGS = {
    "x265-default": lambda crf: EncodeSpec(crf=crf, gop="default", codec="x265", preset="medium"),
    "x265-ldp": lambda crf: EncodeSpec(crf=crf, gop="ldp", keyint=32, codec="x265", preset="medium"),
    "x264-default": lambda crf: EncodeSpec(crf=crf, gop="default", codec="x264", preset="medium"),
}
MODEL = "model (as trained)"
UNIFORM = "  - uniform compute"
AUTO = "  - auto compute (Upscaler default)"
SAVERS = (MODEL, AUTO)  # rows compared with uniform compute
# test-time switches on the trained weights: (label, model attributes, input alignment or None)
SWITCHES = [
    (MODEL, {}, None),
    ("  - no reuse", {"reuse": False}, None),
    (UNIFORM, {"routing": False, "reuse": False}, None),
    (AUTO, {"min_saving": Upscaler.AUTO_MIN_SAVING}, None),
    ("  - no alignment", {"reuse": False}, "none"),
    ("  - DIS alignment", {}, "dis"),
    ("  - single frame", {"propagate": False, "reuse": False}, None),
    ("  - auto compute, fp32", {"min_saving": Upscaler.AUTO_MIN_SAVING, "cpu_bf16": False}, None),
]
# and on bidirectional weights: the same run causally, as Upscaler.frames(..., streaming=True)
STREAMING = ("  - streaming (causal)", {"eval_streaming": True}, None)
# --rows names of the switch rows
ROW_NAMES = dict(zip(("model", "no-reuse", "uniform", "auto", "no-align", "dis", "single", "auto-fp32", "streaming"),
                     [label for label, _, _ in SWITCHES] + [STREAMING[0]]))


def run_model(net, t: dict, scale: int, border: int, chunk: int = FILE_CHUNK, flops: int = 0):
    """Per-frame metrics, seconds of network time, FLOPs (or None). ``flops``: count the
    FLOPs of the first ``flops`` frames instead (FlopCounterMode slows every op down). Runs
    as ``bitsr.Upscaler`` does: a bidirectional model in file mode (chunks with lookahead), or
    causally where the STREAMING switch set ``eval_streaming`` on it."""
    from torch.utils.flop_counter import FlopCounterMode

    n = t["lr"].shape[0] if not flops else min(flops, t["lr"].shape[0])
    hr = to_uint8(t["hr"])
    ps, ss, secs, wall, state, total = [], [], 0.0, 0.0, None, 0
    net.reset_stats()
    for s, kw in clip_windows(net, t, n, chunk, causal=getattr(net, "eval_streaming", False)):
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
    return ps, ss, secs, (total if flops else None), copy.deepcopy(net.stats), wall


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


def clip_sources(shared: Path, clips) -> list[Path]:
    hold = {p.stem: p for p in holdout_sources(shared)}
    return [hold[c] if c in hold else shared / "video" / "vid4" / f"{c}.mkv" for c in clips]


def parse_weights(items) -> tuple[dict, list]:
    """--weights values -> ({scale: path}, [paths or names for any scale])."""
    per_scale, anyscale = {}, []
    for w in items:
        s, sep, path = w.partition("=")
        if sep and s.isdigit():
            per_scale[int(s)] = path
        else:
            anyscale.append(w)
    return per_scale, anyscale


def models_for_scale(scale: int, per_scale: dict, anyscale: list, ablations: list,
                     rows: list | None = None, precision: str = "auto") -> tuple[list, dict, list]:
    """[(label, net, align)], {label: params}, [notes] of one scale. ``rows``: the names
    (ROW_NAMES) of the test-time rows of the model to score (None: all); ``precision``: as
    :func:`bitsr.upscaler.load_model` (the 'auto-fp32' row forces fp32)."""
    keep = None if rows is None else {ROW_NAMES[r] for r in rows}
    models, notes, loaded = [], [], None
    cands = [per_scale[scale]] if scale in per_scale else anyscale
    for w in cands:
        try:
            loaded = (w, *load_model(w, scale, precision=precision))
            break
        except (ValueError, FileNotFoundError) as e:
            notes.append(f"x{scale}: {w} skipped ({' '.join(str(e).split())[:160]})")
    if loaded:
        w, net, cfg = loaded
        base_align = cfg["data"]["align"]
        for label, sw, align in SWITCHES + ([STREAMING] if net.bidirectional else []):
            if keep is not None and label not in keep:
                continue
            m = copy.deepcopy(net)
            for k, v in sw.items():
                setattr(m, k, v)
            models.append((label, m, align or base_align))
        notes.append(f"x{scale}: model {w}")
    elif cands or scale in per_scale:
        notes.append(f"x{scale}: no model weights for this scale: bicubic and ablations only")
    for spec in ablations:
        name, _, path = spec.partition("=")
        try:
            net, cfg = load_model(path, scale, precision=precision)
        except (ValueError, FileNotFoundError) as e:
            notes.append(f"x{scale}: ablation {name} skipped ({' '.join(str(e).split())[:160]})")
            continue
        models.append((f"{name} (trained)", net, cfg["data"]["align"]))
    params = {label: sum(p.numel() for p in m.parameters()) for label, m, _ in models}
    return models, params, notes


def _tile_share(stats) -> dict | None:
    """Shares of the routed tiles computed by each branch and reused, over model stats."""
    stats = [t for t in stats if t and t.get("tiles")]
    if not stats:
        return None
    tot = sum(t["tiles"] for t in stats)
    comp = np.sum([t["computed"] for t in stats], axis=0)
    frames = sum(t.get("frames", 0) for t in stats)
    routed = frames - sum(t.get("uniform", 0) + t.get("plain", 0) for t in stats)
    return {"branch": [float(x) / tot for x in comp], "reused": sum(t["reused"] for t in stats) / tot,
            "routed_frames": routed / max(frames, 1)}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def evaluate_scale(scale: int, args, shared: Path, models, params) -> dict:
    """Scores every row on every (encoding, CRF, clip) of one scale; returns the JSON part."""
    border = scale
    specs = {(enc, crf): ENCODINGS[enc](crf) for enc in args.encodings for crf in args.crf}
    srcs = clip_sources(shared, args.clips)
    manifest = prepare(srcs, args.data, scales=[scale], encodes=list(specs.values()), progress=False)
    root = Path(args.data)
    aligns = {a for _, _, a in models} | {"mv"}
    bidir = any(getattr(m, "bidirectional", False) for _, m, _ in models)
    labels = ["bicubic"] + [label for label, _, _ in models]
    cells, flow_ms, warm = {}, {}, set()
    for (enc, crf), spec in specs.items():
        cell = f"{enc}/crf{crf:g}"
        per_clip = {label: {} for label in labels}
        for clip in args.clips:
            e = manifest["items"][item_key(clip, scale, spec)]
            hr = decode_rgb(str(root / e["hr"]), args.max_frames)
            sets = {}
            for align in sorted(aligns):
                a = decode_inputs(str(root / e["lr"]), align, args.max_frames)
                if not bidir:
                    a.pop("flow_next"), a.pop("conf_next")
                a["hr"] = hr[: len(a["lr"])]
                sets[align] = to_tensors(a)
            if clip not in warm:  # first frames at this size: one-off allocations, not timed
                warm.add(clip)
                bicubic({k: v[:2] for k, v in sets["mv"].items()}, scale, border)
                for _, m, align in models:
                    run_model(m, {k: v[:2] for k, v in sets[align].items()}, scale, border)
            ps, ss, secs = bicubic(sets["mv"], scale, border)
            per_clip["bicubic"][clip] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
                                         "ms_per_frame": 1000 * secs / len(ps), "frames": len(ps)}
            for label, m, align in models:
                ps, ss, secs, _, st, wall = run_model(m, sets[align], scale, border)
                r = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "ms_per_frame": 1000 * secs / len(ps),
                     "wall_ms_per_frame": 1000 * wall / len(ps), "frames": len(ps), "tiles": st}
                if args.flops_frames:
                    nf = min(args.flops_frames, len(ps))
                    r["gflops_per_frame"] = run_model(m, sets[align], scale, border, flops=nf)[3] / nf / 1e9
                per_clip[label][clip] = r
                b = per_clip["bicubic"][clip]
                print(f"x{scale} {cell:18s} {clip:20s} {label:24s} {r['psnr']:.3f} dB ({r['psnr'] - b['psnr']:+.3f}) "
                      f"{r['ssim']:.4f} {r['ms_per_frame']:.0f} ms/frame", file=sys.stderr, flush=True)
            if not models:
                b = per_clip["bicubic"][clip]
                print(f"x{scale} {cell:18s} {clip:20s} bicubic {b['psnr']:.3f} dB {b['ssim']:.4f}", file=sys.stderr,
                      flush=True)
            if crf == args.crf[0] and clip == args.clips[0]:
                flow_ms[enc] = flow_times(root / e["lr"], args.max_frames)
        res = {}
        for label in labels:
            pc = per_clip[label]
            r = {k: _mean([pc[c].get(k) for c in args.clips]) for k in ("psnr", "ssim", "ms_per_frame",
                                                                      "wall_ms_per_frame", "gflops_per_frame")}
            r["gain_psnr"] = r["psnr"] - _mean([per_clip["bicubic"][c]["psnr"] for c in args.clips])
            r["gain_ssim"] = r["ssim"] - _mean([per_clip["bicubic"][c]["ssim"] for c in args.clips])
            r["per_clip"] = pc
            r["tile_share"] = _tile_share([pc[c].get("tiles") for c in args.clips])
            res[label] = {k: v for k, v in r.items() if v is not None}
        for saver in SAVERS:
            if saver in res and UNIFORM in res:
                m, u = res[saver], res[UNIFORM]
                res[saver]["vs_uniform"] = {
                    "flops_saved": (1 - m["gflops_per_frame"] / u["gflops_per_frame"]) if "gflops_per_frame" in m
                    else None,
                    "cpu_saved": 1 - m["ms_per_frame"] / u["ms_per_frame"],
                    "psnr_change": m["psnr"] - u["psnr"], "ssim_change": m["ssim"] - u["ssim"]}
        cells[cell] = res
    summary = {}
    for label in labels:
        rs = [cells[c][label] for c in cells]
        summary[label] = {"params": params.get(label, 0),
                          **{f"mean_{k}": _mean([r.get(k) for r in rs]) for k in
                             ("psnr", "ssim", "gain_psnr", "gain_ssim", "gflops_per_frame", "ms_per_frame")}}
        share = _tile_share([r["per_clip"][c].get("tiles") for r in rs for c in args.clips])
        if share:
            summary[label]["tile_share"] = share
    out = {"scale": scale, "rows": labels, "cells": cells, "summary": summary, "flow_ms_per_frame": flow_ms,
           "encodings": {enc: ENCODINGS[enc](args.crf[0]).to_dict() | {"params": ENCODINGS[enc](args.crf[0]).params()}
                         for enc in args.encodings}}
    out["table"] = format_tables(out, args)
    return out


def format_tables(res: dict, args) -> str:
    """Tables of one scale: Y-PSNR, SSIM (bicubic absolute, rows as gains), savings."""
    cells = list(res["cells"])
    encs = list(dict.fromkeys(c.split("/")[0] for c in cells))
    lw = 24
    groups = [(e, len([c for c in cells if c.startswith(e + "/")])) for e in encs]
    w = max([8] + [-(-(len(e) + 2) // k) for e, k in groups])  # columns wide enough for the group names
    clips = ", ".join(args.clips)

    def header(extra: str = "", first: str = "method") -> list[str]:
        h1 = " " * lw + "".join(f"{e:^{w * k - 1}.{w * k - 1}s}|" for e, k in groups)
        h2 = f"{first:{lw}s}" + "".join(f"{'CRF' + c.split('/crf')[1]:>{w}s}" for c in cells)
        return [h1, h2 + extra]

    out = []
    for metric, unit, fmt, gfmt in (("psnr", "Y-PSNR (dB)", "{:{w}.2f}", "{:+{w}.2f}"),
                                    ("ssim", "SSIM", "{:{w}.4f}", "{:+{w}.4f}")):
        extra = f"{'mean':>9s}" + (f"{'GFLOP/fr':>10s}{'ms/fr':>8s}{'params':>9s}" if metric == "psnr" else "")
        out.append(f"x{res['scale']}: {unit} of bicubic and gain over it of every other row; mean over {clips}; "
                   f"border {res['scale']}; ms/fr = CPU ms per frame, {args.threads} thread(s)")
        out += header(extra)
        out.append("-" * len(out[-1]))
        for label in res["rows"]:
            key = metric if label == "bicubic" else f"gain_{metric}"
            f = fmt if label == "bicubic" else gfmt
            line = f"{label:{lw}s}" + "".join(f.format(res["cells"][c][label][key], w=w) for c in cells)
            s = res["summary"][label]
            line += f" {f.format(s['mean_' + key], w=8)}"
            if metric == "psnr":
                gf = s.get("mean_gflops_per_frame")
                line += f"{'-' if gf is None else format(gf, '.2f'):>10s}{s['mean_ms_per_frame']:8.1f}{s['params']:9d}"
            out.append(line)
        out.append("")
    for saver in SAVERS:
        if not cells or not all("vs_uniform" in res["cells"][c].get(saver, {}) for c in cells):
            continue
        what = "routing + reuse" if saver == MODEL else "auto compute"
        out.append(f"x{res['scale']}: {what} against uniform compute (the '{saver.strip()}' row against "
                   f"'{UNIFORM.strip()}'), per cell")
        out += header(first=what)
        out.append("-" * len(out[-1]))
        rows = (("FLOPs saved %", "flops_saved", 100, "{:{w}.1f}"), ("CPU time saved %", "cpu_saved", 100, "{:{w}.1f}"),
                ("Y-PSNR change dB", "psnr_change", 1, "{:+{w}.3f}"))
        for name, k, mul, f in rows:
            vals = [res["cells"][c][saver]["vs_uniform"][k] for c in cells]
            out.append(f"{name:{lw}s}" + "".join(f"{'-':>{w}s}" if v is None else f.format(mul * v, w=w) for v in vals))
        shares = [res["cells"][c][saver].get("tile_share") for c in cells]
        if all(shares):
            out.append(f"{'tiles reused %':{lw}s}" + "".join(f"{100 * t['reused']:{w}.1f}" for t in shares))
            out.append(f"{'tiles cheapest branch %':{lw}s}" + "".join(f"{100 * t['branch'][0]:{w}.1f}" for t in shares))
            if saver == AUTO:
                out.append(f"{'frames routed %':{lw}s}" + "".join(f"{100 * t['routed_frames']:{w}.1f}" for t in shares))
        out.append("")
    ft = res["flow_ms_per_frame"]
    if ft:
        out.append(f"flow source, ms/frame (LR {args.clips[0]}, CRF {args.crf[0]:g}): " + "; ".join(
            f"{enc}: bitstream MV {v['mv']:.1f}, OpenCV DIS {v['dis']:.1f}" for enc, v in ft.items()))
    return "\n".join(out)


def plot(results: dict, path: str) -> str | None:
    """Gain over bicubic per CRF: one panel per (scale, encoding), one line per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib to get one)"
    scales = sorted(results, key=int)
    encs = list(dict.fromkeys(c.split("/")[0] for s in scales for c in results[s]["cells"]))
    legend_w = 2.0
    width = 4.2 * len(encs) + legend_w
    fig, axes = plt.subplots(len(scales), len(encs), figsize=(width, 3.4 * len(scales)), squeeze=False,
                             sharey="row")
    for i, s in enumerate(scales):
        res = results[s]
        for j, enc in enumerate(encs):
            ax = axes[i][j]
            cs = [c for c in res["cells"] if c.startswith(enc + "/")]
            crfs = [float(c.split("/crf")[1]) for c in cs]
            for label in res["rows"][1:]:
                ys = [res["cells"][c][label]["gain_psnr"] for c in cs]
                ax.plot(crfs, ys, marker="o", lw=2.2 if label == MODEL else 1.2,
                        ls="-" if label == MODEL or "trained" in label else "--", label=label.strip().lstrip("- "))
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(crfs)
            ax.set_title(f"x{s}, {enc}")
            ax.set_xlabel("CRF")
            if j == 0:
                ax.set_ylabel("Y-PSNR gain over bicubic (dB)")
            ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - legend_w / width, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", default=[], metavar="[S=]PATH",
                    help="model checkpoint or bitsr/weights name, or S=PATH for scale S (repeatable); "
                         "without it only bicubic (and ablations) are scored")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=PATH",
                    help="a separately trained baseline (repeatable; used at the scale of its weights)")
    ap.add_argument("--scale", type=int, nargs="+", action="extend", choices=(2, 4), metavar="S",
                    help="2 and/or 4 (repeatable or a list; default 2 4)")
    ap.add_argument("--crf", type=float, nargs="+", default=list(CRFS), help="default 20 25 30 35")
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), choices=CLIPS,
                    help=f"default all: {' '.join(CLIPS)}")
    ap.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS),
                    help=f"default all: {' '.join(ENCODINGS)}")
    ap.add_argument("--data", default="data/val", help="prepared eval folder (made here if missing; default data/val)")
    ap.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    ap.add_argument("--rows", nargs="+", choices=list(ROW_NAMES), default=None,
                    help="test-time rows of the model to score (default all; streaming only for bidirectional weights)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="CPU arithmetic of the networks, as bitsr.Upscaler's (default auto: bf16 where the "
                         "CPU computes it natively)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see above)")
    ap.add_argument("--flops-frames", type=int, default=12,
                    help="count FLOPs on the first N frames of each clip (0: skip)")
    ap.add_argument("--json", default="eval_vsr.json")
    ap.add_argument("--plot", default=None, help="PNG of the gains (default: the --json path with .png)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.scale = sorted(set(args.scale or [2, 4]))
    args.crf = list(dict.fromkeys(args.crf))
    torch.set_num_threads(args.threads)
    try:  # OpenCV DIS (the 'dis' rows' inputs)
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    sh = shared_dir()
    if sh is None:
        print("shared data not found (set BITSR_SHARED)", file=sys.stderr)
        return 2
    per_scale, anyscale = parse_weights(args.weights)
    results, notes = {}, []
    t0 = time.time()
    for scale in args.scale:
        models, params, n = models_for_scale(scale, per_scale, anyscale, args.ablation, args.rows,
                                                 args.precision)
        notes += n
        for line in n:
            print(line, file=sys.stderr)
        results[str(scale)] = evaluate_scale(scale, args, sh, models, params)
        print(results[str(scale)]["table"] + "\n", flush=True)
    out = {"command": " ".join(sys.argv), "scales": args.scale, "crf": args.crf, "clips": args.clips,
           "encodings": args.encodings, "threads": args.threads, "precision": args.precision,
           "max_frames": args.max_frames,
           "weights": args.weights, "ablations": args.ablation, "notes": notes, "seconds": time.time() - t0,
           "results": results}
    Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {args.json}", file=sys.stderr)
    png = args.plot or str(Path(args.json).with_suffix(".png"))
    msg = plot(results, png)
    print(msg or f"wrote {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
