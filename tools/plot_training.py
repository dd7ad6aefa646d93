"""Training curves of the shipped weights: bitsr/weights/<name>.train.csv -> one PNG.

Each CSV has the columns stage, iter, loss, lr, sec_per_iter (one row per logged step; the
iteration count restarts at every stage, which continued from the previous stage's weights).
The plot puts the stages one after another on the x axis (cumulative iterations), the
training loss (Charbonnier, a moving average over 5 logged steps) on a log scale, one panel
per weights file, and marks the stage boundaries. Validation is not run during training (Vid4
is the evaluation set, see bitsr/weights/README.md), so the curves are training losses;
the evaluation is BENCHMARKS.md's matrix.

    python tools/plot_training.py [--out docs/weights_training.png]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{"stage": r["stage"], "iter": int(r["iter"]), "loss": float(r["loss"])} for r in csv.DictReader(f)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / "bitsr" / "weights")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "weights_training.png")
    args = ap.parse_args(argv)
    files = sorted(args.weights.glob("*.train.csv"))
    if not files:
        print(f"no *.train.csv in {args.weights}", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(files), figsize=(6.5 * len(files), 4), squeeze=False)
    for ax, path in zip(axes[0], files):
        rows = read(path)
        xs, ys, offset, last_stage, prev_iter, bounds = [], [], 0, None, 0, []
        for r in rows:
            if r["stage"] != last_stage:
                if last_stage is not None:
                    offset += prev_iter
                bounds.append((offset, r["stage"]))
                last_stage = r["stage"]
            prev_iter = r["iter"]
            xs.append(offset + r["iter"])
            ys.append(r["loss"])
        smooth = [sum(ys[max(0, i - 4):i + 1]) / len(ys[max(0, i - 4):i + 1]) for i in range(len(ys))]
        ax.plot(xs, ys, color="0.8", lw=0.8, label="loss")
        ax.plot(xs, smooth, color="C0", lw=1.5, label="moving average (5)")
        for x, name in bounds:
            ax.axvline(x, color="C3", lw=0.8, ls="--")
            ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="C3")
        ax.set_yscale("log")
        ax.set_xlabel("iteration (stages in sequence)")
        ax.set_ylabel("training loss (Charbonnier)")
        ax.set_title(path.name.replace(".train.csv", ""))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
