"""Train on a lent GPU machine in one call, with nothing spent on set-up there.

A GPU machine may be lent to a development session for a few minutes (bitsr/weights/README.md
says which stages were trained on one). It starts bare, cannot reach a package index, and
receives at most 64 MiB: the working tree plus what the call carries. This tool prepares everything here, so that the
device's time goes to training:

``pack`` (here)::

    python tools/gpu_kit.py pack [--data data/train] [--init bitsr/weights/default_x4.pt]

writes ``.gpukit/`` (git-ignored): the training manifest and its LR bitstreams as they are,
the HR frames re-encoded as 4:4:4 HEVC (libx265, ``--hr-crf``, about 38 dB or better
against the lossless frames; the lossless ones would not fit), the PyAV wheel for the
device's Python (abi3, so one wheel serves 3.11 and 3.12), and the starting weights; and
checks that the working tree and the kit fit the transfer limit.

``run`` (there, the whole device command; carry ``.gpukit``)::

    python3 tools/gpu_kit.py run --minutes 9 [--set model.channels=48 ...]

installs the wheel into /tmp/site, builds ``bitsr._core`` (CMake, all cores), decodes the
data caches on all cores, trains on CUDA (AMP, batch 64, 64x64 LR patches unless overridden)
until ``--minutes`` after the call began (less a margin for saving), and writes the weights
(``best.pt``: config + weights, no optimizer state; ``ema.pt`` too with ``--set train.ema=D``),
``train.csv``, ``config.json`` and a log to ``$OUT`` (or ``--out``), which the device tool
brings back. Continue on the CPU, or in the next GPU session, with ``--init`` those weights.

``run --device cpu --minutes 1`` checks the whole path here before a lease is spent on it
(tests/test_gpu_kit.py does so with a tiny data set).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KIT = ROOT / ".gpukit"
LIMIT_MB = 64.0  # the device tool's working-tree transfer limit (MiB)
# the device image's platform tags: manylinux wheels of any of these install there
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# GPU defaults (stage 1 and 3 of the shipped weights used the same batch and patch)
GPU_SETTINGS = ("train.device=cuda", "data.batch_size=64", "data.patch=64", "train.lr=3e-4", "val.root=null",
                "train.log_every=20", "train.ckpt_every=100000")


def _mb(n: int) -> float:
    return n / 2**20


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _repo_bytes() -> int:
    """Bytes the device tool sends of the checkout: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    total = 0
    for name in out.split(b"\0"):
        p = ROOT / os.fsdecode(name)
        if name and p.is_file():
            total += p.stat().st_size
    return total


# -- pack (here) ------------------------------------------------------------------------------
def _reencode_hr(src: Path, dst: Path, crf: int) -> tuple[int, float]:
    """Lossless HR clip -> libx265 4:4:4 at ``crf``; returns (bytes, worst frame RGB PSNR)."""
    import av
    import numpy as np

    from bitsr.data.cache import decode_rgb
    from bitsr.data.encode import _Writer

    frames = decode_rgb(str(src))
    with av.open(str(src)) as c:
        fps = c.streams.video[0].average_rate or 25
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part.mkv")
    w = _Writer(str(part), "libx265", "yuv444p", frames.shape[2], frames.shape[1], fps,
                {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error:frame-threads=1:pools=1"})
    try:
        for f in frames:
            w.write(f)
        w.close()
    except BaseException:
        w.abort()
        raise
    back = decode_rgb(str(part))
    if back.shape != frames.shape:
        raise RuntimeError(f"{src}: re-encoded HR decodes to {back.shape}, not {frames.shape}")
    worst = min(10 * np.log10(255.0**2 / max(1e-9, float(np.mean((a.astype(np.float32) - b) ** 2))))
                for a, b in zip(frames, back))
    os.replace(part, dst)
    return dst.stat().st_size, float(worst)


def _wheel(dest: Path) -> Path:
    """The PyAV wheel of the installed version for the device (downloaded once, then kept)."""
    ver = importlib.metadata.version("av")
    have = sorted(dest.glob(f"av-{ver}-*.whl"))
    if have:
        return have[0]
    dest.mkdir(parents=True, exist_ok=True)
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(dest), f"av=={ver}"],
                   check=True)
    have = sorted(dest.glob(f"av-{ver}-*.whl"))
    if not have:
        raise SystemExit(f"pip found no PyAV {ver} wheel for the device's platform")
    return have[0]


def pack(args) -> int:
    from bitsr.data.dataset import select_items
    from bitsr.data.prepare import load_manifest

    data = Path(args.data)
    m = load_manifest(data)
    try:
        items = dict(select_items(data, args.scale))
    except ValueError as e:
        raise SystemExit(f"{e} (run tools/prepare_train.py)") from None
    out = Path(args.out)
    kdata = out / "data"
    kdata.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lr_bytes = 0
    for e in items.values():
        src, dst = data / e["lr"], kdata / e["lr"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
        lr_bytes += dst.stat().st_size
    hr_bytes, worst = 0, []
    stamp = kdata / "hr_crf.json"
    done = json.loads(stamp.read_text()) if stamp.is_file() else {}
    for hr in sorted({e["hr"] for e in items.values()}):
        dst = kdata / hr
        if not (dst.is_file() and done.get(hr, {}).get("crf") == args.hr_crf):
            n, psnr = _reencode_hr(data / hr, dst, args.hr_crf)
            done[hr] = {"crf": args.hr_crf, "worst_psnr": round(psnr, 2)}
            stamp.write_text(json.dumps(done, indent=1, sort_keys=True))
            if not args.quiet:
                print(f"  {hr}: {_mb(n):.2f} MB, worst frame {psnr:.1f} dB", flush=True)
        hr_bytes += dst.stat().st_size
        worst.append(done[hr]["worst_psnr"])
    with open(kdata / "manifest.json", "w") as f:
        json.dump(dict(m, items=items), f, indent=1, sort_keys=True)
    shutil.copyfile(args.init, out / "init.pt")
    whl = None if args.no_wheel else _wheel(out / "wheels")
    kit, repo = _tree_bytes(out), _repo_bytes()
    wtxt = f"wheel {whl.name} {_mb(whl.stat().st_size):.1f} MB" if whl else "no wheel"
    print(f"kit {out}: {len(items)} encodings, LR {_mb(lr_bytes):.1f} MB, HR {_mb(hr_bytes):.1f} MB "
          f"(libx265 4:4:4 CRF {args.hr_crf}, worst frame {min(worst):.1f} dB), {wtxt}; "
          f"with the working tree ({_mb(repo):.1f} MB): "
          f"{_mb(kit + repo):.1f} of {LIMIT_MB:.0f} MB  [{time.perf_counter() - t0:.0f} s]")
    if _mb(kit + repo) > LIMIT_MB:
        print(f"too large for the device tool: raise --hr-crf (now {args.hr_crf})", file=sys.stderr)
        return 1
    print("on the device (carry .gpukit):  python3 tools/gpu_kit.py run --minutes 9")
    return 0


# -- run (there) --------------------------------------------------------------------------------
def _ensure_av(kit: Path) -> None:
    try:
        import av  # noqa: F401
        return
    except ImportError:
        pass
    site = Path("/tmp/site")
    whl = sorted((kit / "wheels").glob("av-*.whl"))
    if not whl:
        raise SystemExit(f"PyAV is not installed and {kit}/wheels holds no wheel: run 'pack' first")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), str(whl[-1])], check=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def _ensure_core() -> None:
    try:
        import bitsr._core  # noqa: F401
        return
    except ImportError:
        pass
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_inplace.py"), "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)
    import bitsr._core  # noqa: F401


def _build_caches(root: Path, scale: int, align: str, workers: int) -> None:
    from bitsr.data.cache import ensure_cached_many
    from bitsr.data.dataset import select_items

    items = [e for _, e in select_items(root, scale)]
    os.environ["OMP_NUM_THREADS"] = "1"  # one process per core
    n = ensure_cached_many(root, items, align, workers)
    print(f"caches: {n} encodings", flush=True)


def run(args) -> int:
    t0 = time.time()
    kit = Path(args.kit).resolve()
    out = Path(args.out or os.environ.get("OUT") or ROOT / "runs" / "gpu_kit")
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "gpu_kit.log", "a")

    def say(msg):
        line = f"[{time.time() - t0:6.1f} s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    os.chdir(ROOT)
    _ensure_av(kit)
    _ensure_core()
    say("PyAV and bitsr._core ready")
    import torch

    from bitsr.train import Trainer, load_config

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here (use --device cpu to check the kit)")
    say(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu'}, "
        f"{os.cpu_count()} CPUs")
    cfg_over = [s for s in GPU_SETTINGS if dev == "cuda" or not s.startswith(("train.device", "data."))]
    run_dir = Path(tempfile.mkdtemp(prefix="gpu_kit_run."))  # not in $OUT: only what is needed goes back
    cfg_over += [f"data.root={kit / 'data'}", f"data.workers={args.workers}", f"out_dir={run_dir}",
                 "train.iters=1000000"]
    cfg_over += list(args.set or ())
    cfg = load_config(args.config, cfg_over)
    _build_caches(kit / "data", int(cfg["model"]["scale"]), cfg["data"]["align"], os.cpu_count() or 2)
    say("caches built")
    tr = Trainer(cfg, init=str(args.init or kit / "init.pt"), progress=False)
    left = args.minutes - (time.time() - t0) / 60.0 - args.margin
    if left <= 0:
        raise SystemExit(f"set-up took {(time.time() - t0) / 60:.1f} min: no time left to train")
    tr.cfg["train"]["max_minutes"] = left
    say(f"training for {left:.2f} min: {json.dumps(tr.cfg['model'])}")
    try:
        res = tr.train()
    except BaseException as e:  # bring back what was learnt before the failure
        from bitsr.models.checkpoint import save_checkpoint

        save_checkpoint(out / "partial.pt", tr._payload(full=False))
        say(f"training failed at iteration {tr.iter} ({type(e).__name__}: {e}); weights so far in partial.pt")
        raise
    say(f"stopped at iteration {res['iter']}, loss {res['first_loss']:.5f} -> {res['last_loss']:.5f}")
    for name in ("best.pt", "ema.pt", "train.csv", "config.json"):  # ema.pt with --set train.ema=D
        if name != "ema.pt" or (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out / name)
    say(f"weights and log in {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="prepare .gpukit here")
    p.add_argument("--data", default=str(ROOT / "data" / "train"))
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--init", default=str(ROOT / "bitsr" / "weights" / "default_x4.pt"))
    p.add_argument("--hr-crf", type=int, default=14, help="libx265 4:4:4 CRF of the HR frames (14: >= 38 dB)")
    p.add_argument("--out", default=str(KIT))
    p.add_argument("--no-wheel", action="store_true", help="leave PyAV out (a device that has it)")
    p.add_argument("-q", "--quiet", action="store_true")
    r = sub.add_parser("run", help="train on the device (the whole command there)")
    r.add_argument("--minutes", type=float, default=9.0, help="wall time of the whole call, set-up included")
    r.add_argument("--margin", type=float, default=0.5, help="minutes kept for saving and the copy back")
    r.add_argument("--config", default=str(ROOT / "configs" / "bitvsr_x4.yaml"))
    r.add_argument("--init", default=None, help="weights to start from (default: the kit's init.pt)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    r.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    r.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="DataLoader workers")
    r.add_argument("--kit", default=str(KIT))
    r.add_argument("--out", default=None, help="default: $OUT (the device tool's), else runs/gpu_kit")
    args = ap.parse_args(argv)
    return pack(args) if args.cmd == "pack" else run(args)


if __name__ == "__main__":
    sys.exit(main())
