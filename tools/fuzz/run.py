"""Builds the libFuzzer targets (clang, ASan+UBSan) and fuzzes each for a while.

Seeds are written to a temporary directory by make_seeds.py (streams encoded at run time
plus the small shared-corpus streams); the malformed corpus files are replayed first as
regression inputs. Prints executions, exec/s, coverage and findings per target; crash,
timeout and leak reproducers land in --artifacts. Exit status: 0 clean, 1 a finding,
3 no clang with libFuzzer (nothing run).

Usage: python tools/fuzz/run.py [--seconds 30] [--targets annexb nal] [--corpus DIR]
       [--build-dir build/fuzz] [--artifacts DIR] [--json out.json] [-- extra libFuzzer flags]
Long run (BENCHMARKS.md): nice -n 19 python tools/fuzz/run.py --seconds 3600 --corpus /tmp/bitsr-corpus
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_CLANG = 3


# Child processes must not inherit a preloaded sanitizer runtime (tools/test_sanitized.py):
# clang's fuzz binaries bring their own.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def find_clang() -> str | None:
    """clang++ able to link -fsanitize=fuzzer (Debian: clang-15, or clang-14 + libclang-rt-14-dev)."""
    names = [os.environ.get("BITSR_CLANGXX", "")] + ["clang++"] + [f"clang++-{v}" for v in range(19, 13, -1)]
    for name in filter(None, names):
        exe = shutil.which(name)
        if not exe:
            continue
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "t.cc"
            src.write_text('extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n')
            r = subprocess.run([exe, "-fsanitize=fuzzer,address,undefined", str(src), "-o", str(Path(d) / "t")],
                               capture_output=True, env=CLEAN_ENV)
            if r.returncode == 0:
                return exe
    return None


def build(clang: str, build_dir: Path) -> None:
    cfg = ["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DCMAKE_CXX_COMPILER={clang}",
           "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DBITSR_FUZZ=ON", "-DBITSR_PYTHON=OFF"]
    if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
        cfg += ["-G", "Ninja"]
    subprocess.run(cfg, check=True, stdout=subprocess.DEVNULL, env=CLEAN_ENV)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 2)], check=True,
                   stdout=subprocess.DEVNULL, env=CLEAN_ENV)


def malformed_files() -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from bitsr._paths import shared_dir

    sh = shared_dir()
    d = sh / "corpus" / "hevc" / "malformed" if sh else None
    return sorted(d.iterdir()) if d and d.is_dir() else []


def parse_stats(log: str) -> dict:
    st = {}
    for key in ("number_of_executed_units", "average_exec_per_sec", "peak_rss_mb", "new_units_added"):
        m = re.search(rf"stat::{key}:\s*(\d+)", log)
        if m:
            st[key] = int(m.group(1))
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    if cov:
        st["coverage_edges"], st["features"], st["corpus_units"] = map(int, cov[-1])
    st["findings"] = sorted(set(re.findall(r"(?:Test unit written to|artifact_prefix.*?) (\S+)", log)))
    for kind, pat in (("crash", "ERROR: AddressSanitizer|runtime error:|deadly signal"),
                      ("timeout", "ERROR: libFuzzer: timeout"),
                      ("leak", "ERROR: LeakSanitizer"), ("oom", "out-of-memory")):
        st[kind] = len(re.findall(pat, log))
    return st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30, help="fuzzing time per target")
    ap.add_argument("--targets", nargs="+", default=["annexb", "nal"])
    ap.add_argument("--build-dir", type=Path, default=ROOT / "build" / "fuzz")
    ap.add_argument("--corpus", type=Path, help="keep the evolving corpus here (default: a temporary dir)")
    ap.add_argument("--artifacts", type=Path, default=ROOT / "build" / "fuzz-artifacts")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-encode", action="store_true", help="seeds from the shared corpus only")
    ap.add_argument("extra", nargs="*", help="more libFuzzer flags (after --)")
    args = ap.parse_args()

    clang = find_clang()
    if clang is None:
        print("fuzz: no clang++ with libFuzzer (Debian: apt-get install clang-15); nothing run", file=sys.stderr)
        return NO_CLANG
    t0 = time.perf_counter()
    build(clang, args.build_dir)
    build_s = time.perf_counter() - t0
    args.artifacts.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bitsr-fuzz-"))
    results = {}
    try:
        seeds = tmp / "seeds"
        mk = [sys.executable, str(ROOT / "tools" / "fuzz" / "make_seeds.py"), str(seeds)]
        subprocess.run(mk + (["--no-encode"] if args.no_encode else []), check=True, stderr=subprocess.DEVNULL,
                       env=CLEAN_ENV)
        for t in args.targets:
            exe = args.build_dir / f"fuzz_{t}"
            corpus = (args.corpus / t) if args.corpus else (tmp / f"corpus-{t}")
            corpus.mkdir(parents=True, exist_ok=True)
            common = [f"-artifact_prefix={args.artifacts}/{t}-", "-timeout=10", "-rss_limit_mb=2048",
                      "-malloc_limit_mb=2048", "-print_final_stats=1"]
            # replay the known-bad streams; without any (no ../shared) there is nothing to replay,
            # and libFuzzer given no input files would fuzz with no time limit
            bad_files = malformed_files() if t == "annexb" else []
            replay = subprocess.run([str(exe), *common, *map(str, bad_files)] if bad_files else ["true"],
                                    capture_output=True, text=True, env=CLEAN_ENV)
            r = subprocess.run([str(exe), *common, f"-max_total_time={args.seconds}", *args.extra, str(corpus),
                                str(seeds / t)], capture_output=True, text=True, env=CLEAN_ENV)
            st = parse_stats(r.stderr)
            st["exit_code"] = r.returncode
            st["replay_exit_code"] = replay.returncode
            st["seconds"] = args.seconds
            results[t] = st
            (args.artifacts / f"{t}.log").write_text(replay.stderr + r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"clang: {clang}; build {build_s:.0f} s; logs and reproducers in {args.artifacts}")
    print(f"{'target':<8} {'seconds':>8} {'execs':>10} {'exec/s':>7} {'edges':>6} {'corpus':>7} "
          f"{'crash':>6} {'timeout':>8} {'leak':>5} {'oom':>4}")
    bad = False
    for t, st in results.items():
        print(f"{t:<8} {st['seconds']:>8} {st.get('number_of_executed_units', 0):>10} "
              f"{st.get('average_exec_per_sec', 0):>7} {st.get('coverage_edges', 0):>6} {st.get('corpus_units', 0):>7} "
              f"{st['crash']:>6} {st['timeout']:>8} {st['leak']:>5} {st['oom']:>4}")
        bad |= st["exit_code"] != 0 or st["replay_exit_code"] != 0
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
