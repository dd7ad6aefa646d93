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


def load_grown(model: torch.nn.Module, state: dict) -> dict:
    """Loads ``state`` into ``model`` where the model has grown since: parameters missing from
    ``state`` keep their initialisation, and a parameter whose shape grew (a convolution with
    more input channels appended, e.g. the backward features of a bidirectional model) gets
    the old values in its leading slice and zeros in the rest - so, with heads that start at
    zero, the grown network computes what the old one did. Returns {"grown": [...],
    "missing": [...]}; unexpected keys or shrunk parameters raise ValueError."""
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise ValueError(f"weights hold parameters the model does not have: {', '.join(extra[:5])}")
    grown, missing = [], sorted(set(own) - set(state))
    with torch.no_grad():
        for k, v in state.items():
            t = own[k]
            if t.shape == v.shape:
                t.copy_(v)
                continue
            if t.dim() != v.dim() or any(a < b for a, b in zip(t.shape, v.shape)):
                raise ValueError(f"{k}: cannot grow {tuple(v.shape)} into {tuple(t.shape)}")
            t.zero_()
            t[tuple(slice(0, n) for n in v.shape)] = v
            grown.append(k)
    return {"grown": grown, "missing": missing}
