"""Throughput of bitsr.open (FFmpeg pixels + parsed priors, paired) against its parts run
alone: PyAV decoding the same file with the same threads, and bitsr.extract (parser only).

    python tools/bench_reader.py [--json bench_reader.json] [--repeat 3] [--threads 0] [FILE ...]

Prints a table (best of --repeat runs, frames per second) and writes it as JSON with CPU
time per frame too. bitsr.open runs the parser and FFmpeg one after the other per packet,
so its cost is about the sum of the two parts: "open/(pyav+extract) CPU" near 1 means the
pairing itself costs nothing measurable (CPU time is also the fair measure on a loaded
machine, where wall time is noisy).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bitsr  # noqa: E402
from bitsr._paths import shared_dir  # noqa: E402

DEFAULT = ["bbb1080_50f.265", "big_buck_bunny_360p24.h265", "city_q2_ra_b4_pyramid_opengop.hevc"]


def pyav_decode(path, threads):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        return sum(1 for _ in c.decode(s))


def bitsr_extract(path, threads):
    return sum(1 for _ in bitsr.extract(path))


def bitsr_open(path, threads):
    with bitsr.open(path, threads=threads) as video:
        return sum(1 for _ in video)


def bitsr_open_arrays(path, threads):
    """As a user would: the luma plane and the motion vectors of every frame."""
    n = 0
    with bitsr.open(path, threads=threads) as video:
        for f in video:
            f.yuv()[0], f.priors.mv
            n += 1
    return n


RUNS = {"pyav_decode": pyav_decode, "bitsr_extract": bitsr_extract, "bitsr_open": bitsr_open,
        "bitsr_open+yuv+mv": bitsr_open_arrays}


def best(fn, path, threads, repeat):
    """(frames, best wall seconds, best CPU seconds of the whole process incl. FFmpeg threads)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        n = fn(path, threads)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return n, min(wall), min(cpu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--json", default="bench_reader.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    files = [Path(f) for f in args.files]
    if not files:
        sh = shared_dir()
        if sh is None:
            ap.error("no files given and no shared corpus found")
        files = [sh / "corpus" / "hevc" / n for n in DEFAULT]
    rows = []
    print(f"{'file':36s} {'frames':>6s} " + " ".join(f"{k:>18s}" for k in RUNS)
          + "   open/pyav wall   open/(pyav+extract) CPU")
    for path in files:
        res = {k: best(fn, path, args.threads, args.repeat) for k, fn in RUNS.items()}
        n = res["bitsr_open"][0]
        fps = {k: v[0] / v[1] for k, v in res.items()}
        cpu_ms = {k: 1000 * v[2] / v[0] for k, v in res.items()}
        wall_ratio = res["bitsr_open"][1] / res["pyav_decode"][1]
        cpu_ratio = res["bitsr_open"][2] / (res["pyav_decode"][2] + res["bitsr_extract"][2])
        rows.append({"file": path.name, "frames": n, "fps": fps, "cpu_ms_per_frame": cpu_ms,
                     "open_over_pyav_wall": wall_ratio, "open_over_parts_cpu": cpu_ratio,
                     "threads": args.threads, "cpus": os.cpu_count(), "load": os.getloadavg()[0]})
        print(f"{path.name:36s} {n:6d} " + " ".join(f"{fps[k]:14.1f} fps" for k in RUNS)
              + f"   {wall_ratio:13.2f}x   {cpu_ratio:20.2f}x")
    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
