"""Locations of shared ground-truth data (tests, benchmarks, training)."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path | None:
    """The shared data folder: $BITSR_SHARED, else ../shared beside the checkout."""
    env = os.environ.get("BITSR_SHARED")
    if env:
        p = Path(env).expanduser().resolve()  # absolute: subprocesses run in other folders
        return p if p.is_dir() else None
    p = Path(__file__).resolve().parent.parent.parent / "shared"
    return p if p.is_dir() else None
