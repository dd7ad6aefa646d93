"""bitsr-extract on randomly damaged streams (a CI-sized run of tools/fuzz/mutate_cli.py):
never killed by a signal, never hangs, stays under a memory cap, never prints a traceback."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BITSR_MUTATIONS", "40"))


def load_tool():
    spec = importlib.util.spec_from_file_location("mutate_cli", ROOT / "tools" / "fuzz" / "mutate_cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_on_damaged_streams(tmp_path):
    tool = load_tool()
    results = tool.campaign(N, seed=20260, jobs=2, timeout=60, mem_gb=3, keep=tmp_path / "failing", workdir=tmp_path)
    assert len(results) == N
    bad = [r for r in results if r["problems"]]
    assert not bad, "\n".join(f"{r['file']}: {r['problems']} {r['stderr']}" for r in bad)
    assert any(r["rc"] == 0 for r in results) and any(r["rc"] == 2 for r in results)


@pytest.mark.slow
def test_cli_on_hundreds_of_damaged_streams(tmp_path):
    tool = load_tool()
    results = tool.campaign(300, seed=7, jobs=2, timeout=60, mem_gb=3, keep=tmp_path / "failing", workdir=tmp_path)
    bad = [r for r in results if r["problems"]]
    assert not bad, "\n".join(f"{r['file']}: {r['problems']} {r['stderr']}" for r in bad)
