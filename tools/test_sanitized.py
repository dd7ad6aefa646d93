"""Runs the test suite against an ASan+UBSan build of bitsr._core.

Builds it (tools/build_inplace.py --sanitize -> build/asan-py/bitsr), preloads the
compiler's ASan runtime, and runs pytest with that package first on the path (child
processes the tests start inherit it). Extra arguments go to pytest.

Usage: python tools/test_sanitized.py [pytest args, default: -q -m "not slow" tests]
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


def preload(build_dir: Path) -> str:
    """The compiler's ASan runtime, then libstdc++: Python does not link the C++ runtime, and
    ASan must see it at start-up to intercept __cxa_throw (else the first C++ exception
    aborts with "CHECK failed: real___cxa_throw")."""
    cache = (build_dir / "CMakeCache.txt").read_text()
    cxx = re.search(r"CMAKE_CXX_COMPILER:\w+=(.*)", cache).group(1).strip()
    names = ["libclang_rt.asan-x86_64.so" if "clang" in Path(cxx).name else "libasan.so", "libstdc++.so"]
    libs = []
    for name in names:
        lib = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if not os.path.isabs(lib):
            raise SystemExit(f"cannot find {name} of {cxx}")
        libs.append(os.path.realpath(lib))
    return " ".join(libs)


def main() -> int:
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_inplace.py"), "--sanitize"], check=True)
    pkg_root = ROOT / "build" / "asan-py"
    env = dict(os.environ)
    env["LD_PRELOAD"] = preload(ROOT / "build" / "dev-asan")
    env["ASAN_OPTIONS"] = "detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:symbolize=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["PYTHONPATH"] = os.pathsep.join([str(pkg_root), str(ROOT / "tests")])
    env["BITSR_SANITIZED"] = "1"
    args = sys.argv[1:] or ["-q", "-m", "not slow", "tests"]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"pythonpath={pkg_root} tests", *args]
    check = subprocess.run([sys.executable, "-c", "import bitsr, sys; print(bitsr._core.__file__)"], env=env,
                           capture_output=True, text=True, cwd=pkg_root)
    if check.returncode or "asan-py" not in check.stdout:
        print(check.stdout, check.stderr, file=sys.stderr)
        raise SystemExit("the sanitized package does not import")
    print(f"bitsr._core: {check.stdout.strip()}\nLD_PRELOAD={env['LD_PRELOAD']}", file=sys.stderr)
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
