"""Shared fixtures: the shared corpus (skipped with a reason when absent) and streams made
with PyAV's libx265 encoder."""
from __future__ import annotations

from pathlib import Path

import pytest

from bitsr._paths import shared_dir

SHARED = shared_dir()
CORPUS = SHARED / "corpus" / "hevc" if SHARED else None
HEVC_EXTS = (".h265", ".265", ".hevc")


def corpus_streams() -> list[Path]:
    """Every stream of the shared corpus that has an oracle."""
    if CORPUS is None or not CORPUS.is_dir():
        return []
    out = []
    for npz in sorted(CORPUS.glob("*.oracle.npz")):
        stem = npz.name[: -len(".oracle.npz")]
        for ext in HEVC_EXTS:
            p = CORPUS / (stem + ext)
            if p.exists():
                out.append(p)
                break
    return out


def oracle_path(stream: Path) -> Path:
    return stream.with_name(stream.name.rsplit(".", 1)[0] + ".oracle.npz")


requires_shared = pytest.mark.skipif(
    CORPUS is None or not CORPUS.is_dir(),
    reason="shared corpus not found (set BITSR_SHARED or place it at ../shared)",
)


@pytest.fixture(scope="session")
def shared():
    if SHARED is None:
        pytest.skip("shared data not found (set BITSR_SHARED or place it at ../shared)")
    return SHARED
