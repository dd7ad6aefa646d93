"""Fuzz smoke run: builds the libFuzzer targets with clang (ASan+UBSan), replays the
malformed corpus through them and fuzzes each target briefly (tools/fuzz/run.py).
Skipped with a reason where no clang with libFuzzer is installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = os.environ.get("BITSR_FUZZ_SECONDS", "30")  # per target


def test_fuzz_smoke(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "fuzz" / "run.py"), "--seconds", SECONDS,
           "--artifacts", str(tmp_path / "artifacts")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1200)
    if r.returncode == 3:
        pytest.skip("no clang++ with libFuzzer (Debian: apt-get install clang-15): " + r.stderr.strip())
    logs = "".join(p.read_text()[-3000:] for p in (tmp_path / "artifacts").glob("*.log"))
    assert r.returncode == 0, r.stdout + r.stderr + logs
    print(r.stdout)
