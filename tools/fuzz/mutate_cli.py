"""Runs bitsr-extract on randomly damaged streams, each in a child process with a memory
cap (RLIMIT_AS) and a timeout, and checks that it never dies by a signal, never hangs,
never runs out of the cap and never prints a traceback: exit code 0 (concealed result) or
2 with exactly one line on stderr.

Seeds are made at run time: streams encoded with PyAV's libx265 (raw, MP4 and MKV) and the
small streams of the shared corpus when it is present. Failing inputs are kept in
--keep DIR for replay (`bitsr-extract -q FILE`).

Usage: python tools/fuzz/mutate_cli.py [-n 300] [-j 2] [--seed 1] [--timeout 60]
                                        [--mem-gb 4] [--keep DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile import child_env, mutate  # noqa: E402

# (name, frames, width, height, x265 params, container)
ENCODED = [
    ("ipb", 8, 128, 96, "bframes=3:ref=3:keyint=4", "hevc"),
    ("slices", 6, 176, 144, "slices=3:bframes=2", "mp4"),
    ("wpp", 6, 128, 64, "wpp=1:ctu=16:bframes=1:weightb=1", "mkv"),
    ("amp", 5, 96, 64, "amp=1:rect=1:lossless=0:bframes=2:open-gop=1:keyint=3", "hevc"),
]


def seed_streams(max_bytes: int = 60000) -> list[tuple[str, bytes]]:
    from streams import make_hevc

    from bitsr._paths import shared_dir

    out = []
    for name, frames, w, h, params, container in ENCODED:
        p = make_hevc(f"mut-{name}", frames=frames, width=w, height=h, x265_params=params, container=container)
        out.append((f"{name}.{container}", p.read_bytes()))
    sh = shared_dir()
    if sh is not None and (sh / "corpus" / "hevc").is_dir():
        for p in sorted((sh / "corpus" / "hevc").iterdir()):
            if p.suffix in (".h265", ".265") and p.stat().st_size <= max_bytes:
                out.append((p.name, p.read_bytes()))
    return out


# Under ASan (tools/test_sanitized.py) the shadow memory needs terabytes of address space:
# the cap is then ASan's own RSS limit instead of RLIMIT_AS.
SANITIZED = "asan" in os.environ.get("LD_PRELOAD", "")


def _limit_memory(mem_bytes: int):
    def apply():
        if not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_one(path: Path, timeout: float = 60, mem_gb: float = 4) -> dict:
    """bitsr-extract on one file in a capped child; returns what happened and whether it is ok."""
    out = path.with_suffix(".npz")
    cmd = [sys.executable, "-m", "bitsr.cli.extract", "-q", "--no-compress", str(path), "-o", str(out)]
    env, cwd = child_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if SANITIZED:
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + f":hard_rss_limit_mb={int(mem_gb * 1024)}"
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
                           preexec_fn=_limit_memory(int(mem_gb * (1 << 30))))
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes)
                              else (e.stderr or ""))
    dt = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    lines = err.strip().splitlines()
    problems = []
    if rc == "timeout":
        problems.append("hang")
    elif rc < 0:
        problems.append(f"signal {-rc}")
    elif rc not in (0, 2):
        problems.append(f"exit code {rc}")
    if "Traceback" in err:
        problems.append("traceback")
    if len(lines) > 1:
        problems.append(f"{len(lines)} lines on stderr")
    if "out of memory" in err or "MemoryError" in err:
        problems.append("memory cap reached")
    return {"file": path.name, "rc": rc, "seconds": round(dt, 3), "stderr": lines[-1] if lines else "",
            "problems": problems}


def campaign(n: int, seed: int = 1, jobs: int = 2, timeout: float = 60, mem_gb: float = 4,
             keep: Path | None = None, workdir: Path | None = None) -> list[dict]:
    rng = random.Random(seed)
    seeds = seed_streams()
    tmp = Path(tempfile.mkdtemp(prefix="bitsr-mutate-", dir=workdir))
    jobs_list = []
    for i in range(n):
        name, data = seeds[rng.randrange(len(seeds))]
        data2, kind = mutate(data, rng)
        if rng.random() < 0.3:  # some streams get several kinds of damage
            data2, kind2 = mutate(data2, rng)
            kind += "+" + kind2
        stem, ext = os.path.splitext(name)
        p = tmp / f"{i:04d}-{stem}-{kind}{ext}"
        p.write_bytes(data2)
        jobs_list.append(p)
    try:
        with ThreadPoolExecutor(max(1, jobs)) as ex:
            results = list(ex.map(lambda p: run_one(p, timeout, mem_gb), jobs_list))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for p, r in zip(jobs_list, results):
                if r["problems"]:
                    shutil.copy(p, keep / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="number of mutated streams")
    ap.add_argument("-j", type=int, default=2, help="parallel children")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60, help="seconds per run")
    ap.add_argument("--mem-gb", type=float, default=4, help="RLIMIT_AS of each child")
    ap.add_argument("--keep", type=Path, help="copy failing inputs here")
    ap.add_argument("--json", type=Path, help="write all results here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = campaign(args.n, args.seed, args.j, args.timeout, args.mem_gb, args.keep)
    wall = time.perf_counter() - t0
    bad = [r for r in res if r["problems"]]
    ok0 = sum(r["rc"] == 0 for r in res)
    ok2 = sum(r["rc"] == 2 for r in res)
    secs = sorted(r["seconds"] for r in res)
    print(f"{'runs':>8} {'exit 0':>8} {'exit 2':>8} {'failures':>9} {'median s':>9} {'max s':>7} {'wall s':>7}")
    print(f"{len(res):>8} {ok0:>8} {ok2:>8} {len(bad):>9} {secs[len(secs) // 2]:>9.2f} {secs[-1]:>7.2f} {wall:>7.1f}")
    for r in bad:
        print(f"FAIL {r['file']}: {', '.join(r['problems'])}: {r['stderr'][:200]}")
    if args.json:
        args.json.write_text(json.dumps({"results": res, "wall_s": wall}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
