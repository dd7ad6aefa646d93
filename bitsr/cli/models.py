"""bitsr models: list the shipped weights.

One row per file of bitsr/weights: name (for --model), scale, mode (file: bidirectional over
segments; streaming: causal), parameters, GFLOP per LR pixel (counted on a 64x64 clip with
uniform compute, the most the network spends), and, where the weights' card
(<name>_x<s>.card.json) records them, the measured Y-PSNR gain over bicubic at CRF 25 (x265
default GOP, Vid4) and CPU frames/s at 320x180.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_version, cli_errors


def build_parser(prog: str = "bitsr models") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_version(ap)
    return ap


def describe(path) -> dict:
    """What ``bitsr models`` shows for one weights file."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models import build_model
    from ..models.checkpoint import load_checkpoint
    from ..models.spec import MAP_CHANNELS

    ck = load_checkpoint(path)
    mc = dict(ck["config"]["model"])
    net = build_model(mc).eval()
    net.load_state_dict(ck["model"])
    net.routing, net.reuse = False, False
    t, h, w = 3, 64, 64
    x = {"lr": torch.rand(1, t, 3, h, w), "flow": torch.zeros(1, t, 2, h, w), "conf": torch.ones(1, t, 1, h, w),
         "maps": torch.zeros(1, t, len(MAP_CHANNELS), h // 4, w // 4)}
    if net.bidirectional:
        x["flow_next"], x["conf_next"] = x["flow"], x["conf"]
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        net(**x)
    stem = path.name[:-3]
    name, _, scale = stem.rpartition("_x")
    row = {"name": name, "scale": int(mc.get("scale", scale or 4)),
           "mode": "file" if net.bidirectional else "streaming",
           "params": sum(p.numel() for p in net.parameters()),
           "gflop_per_lr_pixel": fc.get_total_flops() / (t * h * w) / 1e9,
           "gain_db_crf25": None, "cpu_fps_320x180": None}
    card = path.with_name(stem + ".card.json")
    if card.is_file():
        row.update({k: v for k, v in json.loads(card.read_text()).items() if k in row})
    return row


def run(args) -> int:
    from ..upscaler import WEIGHTS_DIR

    rows = [describe(p) for p in sorted(WEIGHTS_DIR.glob("*.pt"))]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    fmt = "{:<10} {:>5} {:<10} {:>9} {:>12} {:>14} {:>14}"
    print(fmt.format("name", "scale", "mode", "params", "GFLOP/LR px", "gain CRF 25", "CPU fps 180p"))
    for r in rows:
        g = "-" if r["gain_db_crf25"] is None else f"{r['gain_db_crf25']:+.2f} dB"
        f = "-" if r["cpu_fps_320x180"] is None else f"{r['cpu_fps_320x180']:.1f}"
        print(fmt.format(r["name"], f"x{r['scale']}", r["mode"], f"{r['params']:,}",
                         f"{r['gflop_per_lr_pixel']:.5f}", g, f))
    if not rows:
        print("(no weights shipped)", file=sys.stderr)
    return 0


def main(argv=None, prog: str = "bitsr models") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
