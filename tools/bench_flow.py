"""Motion-vector flow against optical flow: warp quality and time per frame.

    python tools/bench_flow.py [--clips city,calendar,bmx-trees,juggle] [--crfs 22,28,34]
                               [--frames 12] [--repeat 3] [--out build/bench/bench_flow.json] [--quick]

For every clip (lossless sources from the shared folder) and CRF, the clip is encoded with
libx265 (preset medium) and decoded with bitsr.open. For every frame t with a frame t-1
in the same coded video sequence, frame t-1's luma is warped to t (bilinear remap) with:

  mv            bitsr MV flow, Frame.flow(-1) (own vectors, POC scaling, bi fusion,
                neighbours' projections, hole filling), nearest per 4x4 block
  mv-bilinear   the same, bilinear between block centres
  mv-own        own vectors only (no projections from neighbours), holes filled
  dis-*         OpenCV DIS optical flow, presets ultrafast / fast / medium
  farneback     OpenCV Farneback (pyr 0.5, 3 levels, window 15, 3 iterations, poly 5/1.2)
  zero          no motion

and Y-PSNR against frame t is measured over all pixels and over the pixels where the MV
confidence is >= 0.5 (the same mask for every method). Time per frame is the median over
--repeat runs of one flow computation on one core (cv2.setNumThreads(1),
torch.set_num_threads(1)); for bitsr it is the rasterization from already parsed priors
(parsing time per frame is reported apart). Every method first runs untimed on the clip's
first pair, as often as the timing loop keeps results alive, so that the steady state of a
video is measured: buffers (DIS's internal ones, bitsr's recycled output arrays) are set
up once per video, not once per frame. Wall and CPU (thread) time are both recorded;
the table shows CPU time, the fairer measure on a shared machine.

Then the rasterizer alone is timed on a 1080p clip (vspw 1920x1080, CRF 28): flow(-1) and
flow(+1) at full resolution (fresh output arrays, and reused ones via out=), at a quarter
of the size, bilinear, and the coding-structure maps.

Prints tables and writes everything as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bitsr  # noqa: E402
from bitsr._paths import shared_dir  # noqa: E402

CLIPS = {
    "city": "video/vid4/city.mkv",
    "calendar": "video/vid4/calendar.mkv",
    "bmx-trees": "video/train/davis16_bmx-trees.mkv",
    "juggle": "video/train/sam2_juggle.mkv",
    "vspw1080": "video/train/vspw_1001_3iEIq5HBY1s.mkv",
}
DIS_PRESETS = {"dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
CONF_THRESHOLD = 0.5


def encode(src: Path, dst: Path, crf: int, frames: int, preset: str = "medium") -> Path:
    """Encodes up to `frames` frames of a lossless clip with libx265 (raw Annex B)."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".part")
    with av.open(str(src)) as c, av.open(str(tmp), "w", format="hevc") as out:
        vs = c.streams.video[0]
        st = out.add_stream("libx265", rate=25)
        st.width, st.height, st.pix_fmt = vs.width & ~1, vs.height & ~1, "yuv420p"
        st.options = {"x265-params": f"log-level=error:crf={crf}", "preset": preset}
        for i, f in enumerate(c.decode(vs)):
            if i == frames:
                break
            # through NumPy: a decoded frame carries pict_type I, which libx265 would obey
            yuv = f.reformat(width=st.width, height=st.height, format="yuv420p").to_ndarray()
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    os.replace(tmp, dst)
    return dst


def warp(img: np.ndarray, flow: np.ndarray, grid) -> np.ndarray:
    return cv2.remap(img, grid[1] + flow[0], grid[0] + flow[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def psnr(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    d = (a.astype(np.float32) - b.astype(np.float32)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    return float(10 * np.log10(255.0**2 / max(float(d.mean()), 1e-10)))


def timed(fn, repeat: int):
    """(result, median wall s, median CPU s) over `repeat` runs."""
    walls, cpus, res = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.thread_time()
        res = fn()
        cpus.append(time.thread_time() - c)
        walls.append(time.perf_counter() - t)
    return res, statistics.median(walls), statistics.median(cpus)


def flow_methods():
    dis = {k: cv2.DISOpticalFlow_create(p) for k, p in DIS_PRESETS.items()}

    def cv_flow(fn):
        return lambda fr, y, y_prev: np.ascontiguousarray(np.moveaxis(fn(y, y_prev), -1, 0))

    m = {
        "mv": lambda fr, y, y_prev: fr.flow(-1)[0],
        "mv-bilinear": lambda fr, y, y_prev: fr.flow(-1, interp="bilinear")[0],
        "mv-own": lambda fr, y, y_prev: fr.flow(-1, project=False)[0],
    }
    for k, d in dis.items():
        m[k] = cv_flow(lambda a, b, d=d: d.calc(a, b, None))
    m["farneback"] = cv_flow(lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0))
    m["zero"] = lambda fr, y, y_prev: np.zeros((2,) + y.shape, np.float32)
    return m


def bench_clip(path: Path, repeat: int) -> dict:
    # parsing cost per frame (the priors a flow needs), apart from the rasterization
    t, c = time.perf_counter(), time.process_time()
    n_pics = sum(1 for _ in bitsr.extract(path))
    parse_wall, parse_cpu = (time.perf_counter() - t) / n_pics, (time.process_time() - c) / n_pics
    with bitsr.open(path, lookahead=2, threads=1) as video:
        frames = [(f, f.yuv()[0]) for f in video]
    for f, _ in frames:
        f.priors.arrays  # materialise the arrays once (cached), as any use of the priors does
    methods = flow_methods()
    h, w = frames[0][1].shape
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    per = {k: {"psnr": [], "psnr_conf": [], "wall": [], "cpu": []} for k in methods}
    conf_share, types = [], []
    # warm-up: as many live results as the loop below holds (the mask call's, the previous
    # and the current run's)
    (_, y0), (f1, y1) = frames[0], frames[1]
    hold = f1.flow(-1)
    for fn in methods.values():
        keep = [fn(f1, y1, y0) for _ in range(3)]
    del keep, hold
    for (pf, y_prev), (f, y) in zip(frames, frames[1:]):
        if pf.priors.cvs_index != f.priors.cvs_index:
            continue
        _, conf = f.flow(-1)
        mask = conf >= CONF_THRESHOLD
        conf_share.append(float(mask.mean()))
        types.append(f.picture_type)
        for k, fn in methods.items():
            flow, wall, cpu = timed(lambda: fn(f, y, y_prev), repeat)
            wy = warp(y_prev, flow, grid)
            r = per[k]
            r["psnr"].append(psnr(wy, y))
            r["psnr_conf"].append(psnr(wy, y, mask))
            r["wall"].append(wall)
            r["cpu"].append(cpu)
    summary = {k: {"psnr": float(np.mean(v["psnr"])), "psnr_conf": float(np.nanmean(v["psnr_conf"])),
                   "ms_wall": 1e3 * float(np.mean(v["wall"])), "ms_cpu": 1e3 * float(np.mean(v["cpu"]))}
               for k, v in per.items()}
    return {"frames": len(frames), "pairs": len(types), "size": [w, h], "types": "".join(types),
            "confident_share": float(np.mean(conf_share)), "parse_ms_wall": 1e3 * parse_wall,
            "parse_ms_cpu": 1e3 * parse_cpu, "methods": summary, "per_frame": per}


def bench_raster(path: Path, repeat: int) -> dict:
    with bitsr.open(path, lookahead=2, threads=1) as video:
        frames = list(video)
    for f in frames:
        f.priors.arrays
    h, w = frames[0].height, frames[0].width
    out = (np.empty((2, h, w), np.float32), np.empty((h, w), np.float32))
    cases = {
        "flow(-1) full, new arrays": lambda f: f.flow(-1),
        "flow(-1) full, out=": lambda f: f.flow(-1, out=out),
        "flow(+1) full, out=": lambda f: f.flow(1, out=out),
        "flow(-1) full bilinear, out=": lambda f: f.flow(-1, interp="bilinear", out=out),
        "flow(-1) 1/4 size": lambda f: f.flow(-1, factor=4),
        "maps default full": lambda f: f.maps(),
        "maps all 4x4 grid": lambda f: f.maps("all", factor=4),
    }
    res = {}
    for name, fn in cases.items():
        walls, cpus = [], []
        keep = [fn(frames[1]) for _ in range(2)]  # warm-up, as in bench_clip
        del keep
        for f in frames[1:-1]:
            _, wall, cpu = timed(lambda: fn(f), repeat)
            walls.append(wall)
            cpus.append(cpu)
        res[name] = {"ms_wall_mean": 1e3 * float(np.mean(walls)), "ms_cpu_mean": 1e3 * float(np.mean(cpus)),
                     "ms_cpu_max": 1e3 * float(np.max(cpus)), "ms_wall_min": 1e3 * float(np.min(walls))}
    return {"size": [w, h], "frames": len(frames) - 2, "types": "".join(f.picture_type for f in frames[1:-1]),
            "cases": res}


def print_tables(results: dict) -> None:
    by_crf: dict = {}
    for r in results["clips"]:
        by_crf.setdefault(r["crf"], []).append(r)
    names = list(results["clips"][0]["methods"])
    for crf, rs in sorted(by_crf.items()):
        print(f"\nCRF {crf}: {', '.join(r['clip'] for r in rs)} "
              f"({sum(r['pairs'] for r in rs)} frame pairs; MV-confident pixels "
              f"{100 * np.mean([r['confident_share'] for r in rs]):.0f}%)")
        print(f"{'method':<14} {'Y-PSNR all':>10} {'Y-PSNR conf':>11} {'ms/frame CPU':>13} {'ms wall':>8} "
              f"{'dB vs DIS-med':>13} {'x faster than DIS-med':>21}")
        ref = {k: np.mean([r["methods"]["dis-medium"][k] for r in rs]) for k in ("psnr", "ms_cpu")}
        for k in names:
            p = np.mean([r["methods"][k]["psnr"] for r in rs])
            pc = np.mean([r["methods"][k]["psnr_conf"] for r in rs])
            cpu = np.mean([r["methods"][k]["ms_cpu"] for r in rs])
            wall = np.mean([r["methods"][k]["ms_wall"] for r in rs])
            speed = ref["ms_cpu"] / cpu if cpu > 0 and k != "zero" else float("nan")
            print(f"{k:<14} {p:>10.2f} {pc:>11.2f} {cpu:>13.2f} {wall:>8.2f} {p - ref['psnr']:>+13.2f} {speed:>21.1f}")
    print("\nper clip (Y-PSNR all pixels, dB):")
    print(f"{'clip':<11} {'crf':>3} {'size':>9} {'pairs':>5} " + " ".join(f"{k:>13}" for k in names))
    for r in results["clips"]:
        print(f"{r['clip']:<11} {r['crf']:>3} {r['size'][0]:>4}x{r['size'][1]:<4} {r['pairs']:>5} "
              + " ".join(f"{r['methods'][k]['psnr']:>13.2f}" for k in names))
    pm = np.mean([r["parse_ms_cpu"] for r in results["clips"]])
    print(f"\nparsing (bitsr.extract, CPU ms per picture, mean over clips): {pm:.2f}")
    ras = results.get("raster_1080p")
    if ras:
        print(f"\nrasterization at {ras['size'][0]}x{ras['size'][1]} ({ras['frames']} frames {ras['types']}), "
              "one core:")
        print(f"{'case':<30} {'CPU ms mean':>11} {'CPU ms max':>10} {'wall ms min':>11}")
        for k, v in ras["cases"].items():
            print(f"{k:<30} {v['ms_cpu_mean']:>11.2f} {v['ms_cpu_max']:>10.2f} {v['ms_wall_min']:>11.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="city,calendar,bmx-trees,juggle", help=f"comma list of {sorted(CLIPS)}")
    ap.add_argument("--crfs", default="22,28,34")
    ap.add_argument("--frames", type=int, default=12, help="frames per clip (clips may be shorter)")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per flow (median)")
    ap.add_argument("--raster-clip", default="vspw1080", help="clip for the 1080p rasterization timing ('' to skip)")
    ap.add_argument("--out", default="build/bench/bench_flow.json")
    ap.add_argument("--work", default=None, help="folder for the encoded clips (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="one clip, one CRF, 6 frames, no 1080p timing")
    args = ap.parse_args(argv)
    if args.quick:
        args.clips, args.crfs, args.frames, args.raster_clip, args.repeat = "city", "28", 6, "", 1
    sh = shared_dir()
    if sh is None:
        print("bench_flow: shared video folder not found (set BITSR_SHARED)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    work = Path(args.work or tempfile.mkdtemp(prefix="bitsr-bench-flow-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "opencv": cv2.__version__, "loadavg": os.getloadavg()},
               "conf_threshold": CONF_THRESHOLD, "clips": []}
    for clip in args.clips.split(","):
        for crf in (int(c) for c in args.crfs.split(",")):
            src = sh / CLIPS[clip]
            if not src.exists():
                print(f"skip {clip}: {src} missing", file=sys.stderr)
                continue
            path = encode(src, work / f"{clip}-crf{crf}-{args.frames}.hevc", crf, args.frames)
            print(f"{clip} crf {crf} ...", file=sys.stderr, flush=True)
            r = bench_clip(path, args.repeat)
            r.update(clip=clip, crf=crf)
            results["clips"].append(r)
    if args.raster_clip:
        src = sh / CLIPS[args.raster_clip]
        path = encode(src, work / f"{args.raster_clip}-crf28-{args.frames}.hevc", 28, args.frames)
        print("1080p rasterization ...", file=sys.stderr, flush=True)
        results["raster_1080p"] = bench_raster(path, max(args.repeat, 5))
    results["machine"]["loadavg_end"] = os.getloadavg()
    print_tables(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
