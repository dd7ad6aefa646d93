"""Runs the test suite against an ASan+UBSan (or ThreadSanitizer) build of bitsr._core.

Builds it (tools/build_inplace.py --sanitize -> build/asan-py/bitsr; --tsan ->
build/tsan-py/bitsr), preloads the compiler's sanitizer runtime, and runs pytest with that
package first on the path (child processes the tests start inherit it). Extra arguments go
to pytest.

Usage: python tools/test_sanitized.py [--tsan] [pytest args, default: -q -m "not slow" tests;
       with --tsan: the oracle, threads and hostile-input tests]
With --tsan, TSAN_OPTIONS=halt_on_error=1 makes the first data race fail the run; races
inside CPython itself (not instrumented) are not reported, only those in bitsr's C++ code.
LD_PRELOAD holds the ASan runtime and libstdc++. Options: ASAN_OPTIONS=detect_leaks=0 (CPython
does not free everything at exit), allocator_may_return_null=1 (a huge allocation becomes
MemoryError, as in normal builds);
UBSan stops at the first finding with a stack trace.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


TSAN_TESTS = ["tests/test_threads.py", "tests/test_oracle.py", "tests/test_malformed.py",
              "tests/test_robustness.py", "tests/test_io_reader.py"]


def preload(build_dir: Path, runtime: str = "asan") -> str:
    """The compiler's ASan runtime, then libstdc++: Python does not link the C++ runtime, and
    ASan must see it at start-up to intercept __cxa_throw (else the first C++ exception
    aborts with "CHECK failed: real___cxa_throw")."""
    cache = (build_dir / "CMakeCache.txt").read_text()
    cxx = re.search(r"CMAKE_CXX_COMPILER:\w+=(.*)", cache).group(1).strip()
    names = [f"libclang_rt.{runtime}-x86_64.so" if "clang" in Path(cxx).name else f"lib{runtime}.so", "libstdc++.so"]
    libs = []
    for name in names:
        lib = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if not os.path.isabs(lib):
            raise SystemExit(f"cannot find {name} of {cxx}")
        libs.append(os.path.realpath(lib))
    return " ".join(libs)


def main() -> int:
    argv = sys.argv[1:]
    tsan = "--tsan" in argv
    argv = [a for a in argv if a != "--tsan"]
    kind = "tsan" if tsan else "asan"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_inplace.py"), "--tsan" if tsan else "--sanitize"],
                   check=True)
    pkg_root = ROOT / "build" / f"{kind}-py"
    env = dict(os.environ)
    env["LD_PRELOAD"] = preload(ROOT / "build" / f"dev-{kind}", kind)
    if tsan:
        # exitcode: a report fails the run even where the race does not stop the process
        # tools/tsan.supp: FFmpeg's own threads only (PyAV's libraries are not instrumented)
        env["TSAN_OPTIONS"] = (f"halt_on_error=1:exitcode=66:second_deadlock_stack=1:"
                               f"suppressions={ROOT / 'tools' / 'tsan.supp'}")
    else:
        env["ASAN_OPTIONS"] = "detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:symbolize=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["PYTHONPATH"] = os.pathsep.join([str(pkg_root), str(ROOT / "tests")])
    env["BITSR_SANITIZED"] = kind
    # -s with --tsan: a report goes to stderr as the process stops, which pytest's capture would swallow
    args = argv or (["-q", "-s", "-m", "not slow", *TSAN_TESTS] if tsan else ["-q", "-m", "not slow", "tests"])
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"pythonpath={pkg_root} tests", *args]
    check = subprocess.run([sys.executable, "-c", "import bitsr, sys; print(bitsr._core.__file__)"], env=env,
                           capture_output=True, text=True, cwd=pkg_root)
    if check.returncode or f"{kind}-py" not in check.stdout:
        print(check.stdout, check.stderr, file=sys.stderr)
        raise SystemExit("the sanitized package does not import")
    print(f"bitsr._core: {check.stdout.strip()}\nLD_PRELOAD={env['LD_PRELOAD']}", file=sys.stderr)
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
