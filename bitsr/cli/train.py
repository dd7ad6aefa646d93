"""bitsr-train: train a video SR model from a YAML config.

Examples:
  bitsr train configs/bitvsr_x4.yaml
  bitsr train configs/bitvsr_x4.yaml --set train.iters=200 --set data.batch_size=4
  bitsr train configs/bitvsr_x4.yaml --resume auto          # continue runs/<name>/last.pt
  bitsr train configs/bitvsr_x4.yaml --init bitsr/weights/default_x4.pt --set train.lr=2e-4   # fine-tune
  torchrun --nproc_per_node=2 -m bitsr.cli.train configs/bitvsr_x4.yaml   # DDP
"""
from __future__ import annotations

import argparse
import sys

from .common import cli_errors


def build_parser(prog: str = "bitsr-train") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML config (see configs/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. train.iters=100 (repeatable)")
    ap.add_argument("--resume", metavar="CKPT", help="checkpoint to resume (last.pt), or 'auto' for OUT_DIR/last.pt")
    ap.add_argument("--init", metavar="CKPT",
                    help="start from these weights (best.pt, last.pt or shipped weights) "
                         "with a fresh optimizer and schedule")
    ap.add_argument("--out", help="output folder (default: the config's out_dir, else runs/<name>)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return ap


def run(args) -> int:
    from ..train import Trainer, load_config

    over = list(args.overrides)
    if args.out:
        over.append(f"out_dir={args.out}")
    cfg = load_config(args.config, over)
    tr = Trainer(cfg, resume=args.resume, progress=not args.quiet, init=args.init)
    try:
        res = tr.train()
    finally:
        tr.close()
    if tr.main:
        best = f", best val Y-PSNR {res['best_psnr']:.3f} dB" if res["best_psnr"] > float("-inf") else ""
        print(f"{cfg['name']}: {res['iter']} iterations, last loss {res['last_loss']}{best}; "
              f"checkpoints in {cfg['out_dir']}", file=sys.stderr)
    return 0


def main(argv=None, prog: str = "bitsr-train") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    with cli_errors(ap.prog):
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
