"""Build bitsr._core into the source tree for development and tests.

`pip install .` builds the same extension through scikit-build-core; this script only
keeps a persistent CMake build directory so that edits to csrc/ rebuild incrementally.

--sanitize builds an ASan+UBSan extension into build/asan-py/bitsr/ instead (--tsan: a
ThreadSanitizer one into build/tsan-py/bitsr/): a copy of the package made of links to
bitsr/*, with its own _core, so the normal build stays usable. Importing it needs the
sanitizer runtime preloaded; tools/test_sanitized.py sets that up and runs the test suite.
Usage: python tools/build_inplace.py [--debug] [--sanitize | --tsan] [--build-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="RelWithDebInfo instead of Release")
    ap.add_argument("--sanitize", action="store_true", help="ASan+UBSan build (needs LD_PRELOAD of libasan to import)")
    ap.add_argument("--tsan", action="store_true", help="ThreadSanitizer build (needs LD_PRELOAD of libtsan)")
    ap.add_argument("--build-dir", default=None, help="CMake build directory (default build/dev[-asan|-tsan])")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    import pybind11

    if args.sanitize and args.tsan:
        raise SystemExit("--sanitize and --tsan are separate builds")
    kind = "asan" if args.sanitize else "tsan" if args.tsan else ""
    bdir = Path(args.build_dir or ROOT / "build" / (f"dev-{kind}" if kind else "dev"))
    pkg = ROOT / "bitsr"
    if kind:
        pkg = sanitized_package(kind)
    cfg = [
        "cmake", "-S", str(ROOT), "-B", str(bdir),
        f"-DCMAKE_BUILD_TYPE={'RelWithDebInfo' if args.debug else 'Release'}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-DBITSR_SANITIZE={'ON' if args.sanitize else 'OFF'}",
        f"-DBITSR_TSAN={'ON' if args.tsan else 'OFF'}",
        f"-DBITSR_INPLACE_DIR={pkg}",
    ]
    try:
        import ninja  # noqa: F401

        if not (bdir / "CMakeCache.txt").exists():
            cfg += ["-G", "Ninja"]
    except ImportError:
        pass
    subprocess.run(cfg, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(bdir), "-j", str(args.j)], check=True)
    # Copy even when nothing was relinked: switching between a sanitizer build and a normal
    # one must leave the matching library in bitsr/.
    import shutil
    import sysconfig

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = bdir / f"_core{suffix}"
    if built.exists():
        # A new file replaces the old one: a process that has the old one loaded keeps a
        # valid mapping (writing into it in place would corrupt that process's code).
        tmp = pkg / (built.name + ".part")
        shutil.copy2(built, tmp)
        os.replace(tmp, pkg / built.name)
    return 0


def sanitized_package(kind: str = "asan") -> Path:
    """build/<kind>-py/bitsr: links to every entry of bitsr/ except the extension."""
    pkg = ROOT / "build" / f"{kind}-py" / "bitsr"
    pkg.mkdir(parents=True, exist_ok=True)
    for entry in (ROOT / "bitsr").iterdir():
        link = pkg / entry.name
        if entry.name.startswith("_core") or entry.name == "__pycache__" or link.exists() or link.is_symlink():
            continue
        link.symlink_to(entry)
    return pkg


if __name__ == "__main__":
    raise SystemExit(main())
