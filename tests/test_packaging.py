"""`pip wheel` builds in a temporary folder: a clean clone is left exactly as it was, and the
wheel holds the extension and the shipped weights."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pip_wheel_leaves_the_tree_clean(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    out = tmp_path / "wheels"
    # no build isolation: the build requirements are those of requirements-dev.txt, installed
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", ".",
                        "-w", str(out)], cwd=clone, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    status = subprocess.run(["git", "status", "--ignored", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status
    (wheel,) = out.glob("bitsr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("bitsr/_core") for n in names) and "bitsr/weights/default_x4.pt" in names
