"""Checkpoint files: what ``bitsr train`` writes and what inference loads.

Checkpoints hold only tensors and plain Python values (``torch.load(weights_only=True)`` reads
them): ``format``, ``config`` (the training config, whose ``model`` section builds the network),
``model`` (the state dict); training checkpoints add optimizer and schedule state.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CKPT_FORMAT = "bitsr-vsr-1"


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Writes atomically (a killed run never leaves a half-written file under the final name)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    ck = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a bitsr model checkpoint")
    return ck
