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
    ``state`` keep their initialisation, and a parameter whose shape grew gets the old values
    in its leading slice. Of the rest, weights from new input channels (a convolution with
    inputs appended: the backward features of a bidirectional model; a wider network) are zero
    and weights into new output channels (a wider network) keep their initialisation - so, with
    heads that start at zero, the grown network computes what the old one did (new channels
    never reach the old ones), and the new channels carry signal for training to use.
    Returns {"grown": [...], "missing": [...]}; unexpected keys or shrunk parameters raise
    ValueError."""
    own = model.state_dict()
    state = dict(state)
    widened = []
    if hasattr(model, "widen_state"):  # a wider network: channels keep their place per group
        state, widened = model.widen_state(state)
    rescaled = _rescale_upsampler(own, state)
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
            if t.dim() >= 2:
                t[:, v.shape[1]:] = 0  # from new input channels
            t[tuple(slice(0, n) for n in v.shape)] = v
            grown.append(k)
    if hasattr(model, "after_grow"):  # new parts that must not start at random
        model.after_grow(missing)
    return {"grown": sorted(set(grown) | set(widened)), "missing": missing, "rescaled": rescaled}


def _rescale_upsampler(own: dict, state: dict) -> list:
    """Turns the sub-pixel head of weights trained for scale s (``*upsample.conv``: 3*s^2
    output channels before a pixel shuffle) into one for a scale t dividing s, in place: each
    output pixel of the t-head is the mean of the (s/t)^2 s-head pixels it covers, so an x2
    model starts from the x4 model's output box-downscaled. Returns the keys changed."""
    done = []
    for k in [k for k in state if k.endswith("upsample.conv.weight")]:
        b = k[: -len("weight")] + "bias"
        v, t = state[k], own.get(k)
        if t is None or t.shape == v.shape or t.shape[1:] != v.shape[1:] or b not in state:
            continue
        s, r = round((v.shape[0] / 3) ** 0.5), round((t.shape[0] / 3) ** 0.5)
        if 3 * s * s != v.shape[0] or 3 * r * r != t.shape[0] or s % r:
            continue
        f = s // r

        def shrink(x, f=f, s=s, r=r):  # [3*s*s, ...] -> [3*r*r, ...]: mean over f x f sub-pixels
            x = x.reshape(3, r, f, r, f, *x.shape[1:])
            return x.mean(dim=(2, 4)).reshape(3 * r * r, *x.shape[5:])

        state[k], state[b] = shrink(v), shrink(state[b])
        done += [k, b]
    return done
