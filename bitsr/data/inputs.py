"""The one place where decoded frames + bitstream priors become model inputs.

``frame_inputs(frame, prev_lr, align)`` turns one decoded :class:`bitsr.Frame` into NumPy
arrays (LR pixels, flow to the previous display frame with its confidence, partition maps);
``window_tensors`` stacks a window of them into the torch tensors the networks take. Swapping
the source of flow (bitstream motion vectors, OpenCV DIS on decoded pixels, none) or of the
maps only touches this file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import mvflow_provisional as _mv

ALIGNS = ("mv", "dis", "none")
# Channels of the ``maps`` tensor, on the 4x4 grid: log2 CU size, skip / intra / coded-residual
# masks, luma QP.
MAP_CHANNELS = ("cu_log2", "skip", "intra", "residual", "qp")
# Inverting the next picture's backward flow (x -> x + f at t+1, used as -f at t) is only
# approximately right, so it gets half the confidence of a real motion vector.
INVERTED_FLOW_CONF = 0.5


@dataclass
class FrameInputs:
    """Model inputs of one frame, NumPy, LR resolution h x w."""

    lr: np.ndarray  # uint8 [h, w, 3] decoded RGB
    flow: np.ndarray  # float32 [2, h, w] to the previous display frame (x, y), LR pixels
    conf: np.ndarray  # float32 [h, w] in [0, 1]; 0 where there is no usable motion
    maps: np.ndarray  # float32 [len(MAP_CHANNELS), ceil(h/4), ceil(w/4)]
    flow_fwd: np.ndarray  # float32 [2, h, w] this picture's own vectors to the next frame (B pictures)
    conf_fwd: np.ndarray  # float32 [h, w]


_dis = None


def dis_flow(cur: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """OpenCV DIS optical flow (medium preset) between RGB frames: cur(x) ~ ref(x + f(x)).
    float32 [2, h, w]. The no-bitstream alignment baseline."""
    global _dis
    import cv2

    if _dis is None:
        _dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    g0 = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)
    f = _dis.calc(g0, g1, None)
    return np.ascontiguousarray(f.transpose(2, 0, 1), dtype=np.float32)


def frame_inputs(frame, prev_lr: np.ndarray | None = None, align: str = "mv") -> FrameInputs:
    """Inputs of one decoded frame. ``prev_lr``: RGB of the previous display frame (None at
    the start of a clip, where the confidence is 0); ``align``: 'mv' (bitstream motion
    vectors), 'dis' (OpenCV DIS flow on the decoded frames) or 'none' (zero flow, full
    confidence: features are fused without alignment)."""
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
    lr = frame.rgb
    h, w = lr.shape[:2]
    m = _mv.maps(frame)
    maps = np.stack([m[k].astype(np.float32) for k in MAP_CHANNELS])
    zero2, zero1 = np.zeros((2, h, w), np.float32), np.zeros((h, w), np.float32)
    fwd, cfwd = zero2, zero1
    if align == "mv":
        flow, conf = _mv.flow(frame, -1)
        fwd, cfwd = _mv.flow(frame, +1)
    elif align == "dis":
        flow, conf = (dis_flow(lr, prev_lr), np.ones((h, w), np.float32)) if prev_lr is not None else (zero2, zero1)
    else:
        flow, conf = zero2, np.ones((h, w), np.float32)
    if prev_lr is None:
        conf = zero1
    if flow.shape[1:] != (h, w):
        raise ValueError(f"flow {flow.shape[1:]} and frame {(h, w)} sizes differ")
    return FrameInputs(lr, flow, conf, maps, fwd, cfwd)


def next_flow(cur: FrameInputs, nxt: FrameInputs | None, align: str = "mv") -> tuple[np.ndarray, np.ndarray]:
    """Flow from ``cur`` to the next display frame (for backward propagation): the current
    picture's own vectors where it has them (B pictures), else the next picture's flow to
    ``cur`` negated."""
    h, w = cur.lr.shape[:2]
    if nxt is None:
        return np.zeros((2, h, w), np.float32), np.zeros((h, w), np.float32)
    if align == "dis":
        return dis_flow(cur.lr, nxt.lr), np.ones((h, w), np.float32)
    if align == "none":
        return np.zeros((2, h, w), np.float32), np.ones((h, w), np.float32)
    inv, cinv = -nxt.flow, nxt.conf * INVERTED_FLOW_CONF
    use = cur.conf_fwd >= cinv
    return np.where(use[None], cur.flow_fwd, inv).astype(np.float32), np.where(use, cur.conf_fwd, cinv).astype(np.float32)


def window_arrays(window: list[FrameInputs], align: str = "mv", bidirectional: bool = False,
                  next_frame: FrameInputs | None = None) -> dict[str, np.ndarray]:
    """Stacks a window into arrays with a leading time axis: lr uint8 [T, h, w, 3], flow
    [T, 2, h, w], conf [T, 1, h, w], maps [T, K, h/4, w/4]; plus flow_next / conf_next when
    ``bidirectional`` (``next_frame``: the frame after the window, if any)."""
    out = {
        "lr": np.stack([f.lr for f in window]),
        "flow": np.stack([f.flow for f in window]),
        "conf": np.stack([f.conf for f in window])[:, None],
        "maps": np.stack([f.maps for f in window]),
    }
    if bidirectional:
        nx = [next_flow(f, window[i + 1] if i + 1 < len(window) else next_frame, align) for i, f in enumerate(window)]
        out["flow_next"] = np.stack([a for a, _ in nx])
        out["conf_next"] = np.stack([c for _, c in nx])[:, None]
    return out


def to_tensors(arrays: dict[str, np.ndarray], device="cpu") -> dict[str, torch.Tensor]:
    """Arrays (with or without a batch axis) -> float tensors; lr [.., T, 3, h, w] in [0, 1]."""
    out = {}
    for k, a in arrays.items():
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:  # memory-mapped cache
            a = a.copy()
        t = torch.from_numpy(a)
        if k in ("lr", "hr"):
            t = t.movedim(-1, -3).float().div_(255.0)
        else:
            t = t.float()
        out[k] = t.to(device)
    return out
