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

from ..maps import predicted_from
from ..models.spec import MAP_CHANNELS

ALIGNS = ("mv", "dis", "none")


@dataclass
class FrameInputs:
    """Model inputs of one frame, NumPy, LR resolution h x w."""

    lr: np.ndarray  # uint8 [h, w, 3] decoded RGB
    flow: np.ndarray  # float32 [2, h, w] to the previous display frame (x, y), LR pixels
    conf: np.ndarray  # float32 [h, w] in [0, 1]; 0 where there is no usable motion
    maps: np.ndarray  # float32 [len(MAP_CHANNELS), ceil(h/4), ceil(w/4)]
    flow_next: np.ndarray | None = None  # float32 [2, h, w] to the next display frame
    conf_next: np.ndarray | None = None  # float32 [h, w]


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


def frame_inputs(frame, prev_lr: np.ndarray | None = None, align: str = "mv", with_next: bool = False) -> FrameInputs:
    """Inputs of one decoded :class:`bitsr.Frame`.

    ``prev_lr``: RGB of the previous display frame (None at the start of a clip: confidence 0).
    ``align``: 'mv' (bitstream motion vectors, :meth:`bitsr.Frame.flow`), 'dis' (OpenCV DIS
    flow on the decoded frames) or 'none' (zero flow, full confidence: features are fused
    without alignment). ``with_next``: also the flow to the next frame, for bidirectional
    models ('mv' needs a reader opened with ``lookahead >= 1``; 'dis' is filled in by
    :func:`window_arrays`, which sees the next frame's pixels).
    """
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
    lr = frame.rgb
    h, w = lr.shape[:2]
    m = frame.maps(("cu_log2", "skip", "intra", "residual", "qp", "tu_log2"), factor=4)
    win = frame.window
    prev = win[-1] if win is not None and win.size >= 1 else None
    m["from_prev"] = predicted_from(frame.priors, prev, factor=4)
    grid = m["qp"].shape
    m["slice_type"] = np.full(grid, frame.priors.slice_type, np.float32)
    m["temporal_id"] = np.full(grid, frame.priors.temporal_id, np.float32)
    maps = np.stack([m[k].astype(np.float32) for k in MAP_CHANNELS])
    zero2, zero1, one1 = np.zeros((2, h, w), np.float32), np.zeros((h, w), np.float32), np.ones((h, w), np.float32)
    fn = cn = None
    if align == "mv":
        flow, conf = frame.flow(-1)
        if with_next:
            fn, cn = frame.flow(+1)
    elif align == "dis":
        flow, conf = (dis_flow(lr, prev_lr), one1) if prev_lr is not None else (zero2, zero1)
    else:
        flow, conf = zero2, one1
        if with_next:
            fn, cn = zero2, one1
    if prev_lr is None:
        conf = zero1
    if flow.shape[1:] != (h, w):
        raise ValueError(f"flow {flow.shape[1:]} and frame {(h, w)} sizes differ")
    return FrameInputs(lr, flow, conf, maps, fn, cn)


def window_arrays(window: list[FrameInputs], align: str = "mv", bidirectional: bool = False,
                  next_lr: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Stacks a window into arrays with a leading time axis: lr uint8 [T, h, w, 3], flow
    [T, 2, h, w], conf [T, 1, h, w], maps [T, K, h/4, w/4]; plus flow_next / conf_next when
    ``bidirectional`` (``next_lr``: pixels of the frame after the window, for 'dis')."""
    out = {
        "lr": np.stack([f.lr for f in window]),
        "flow": np.stack([f.flow for f in window]),
        "conf": np.stack([f.conf for f in window])[:, None],
        "maps": np.stack([f.maps for f in window]),
    }
    if bidirectional:
        fl, cf = [], []
        for i, f in enumerate(window):
            fn, cn = f.flow_next, f.conf_next
            if align == "dis" and fn is None:
                nxt = window[i + 1].lr if i + 1 < len(window) else next_lr
                h, w = f.lr.shape[:2]
                if nxt is not None:  # kept: a frame seen again in the next window has it
                    f.flow_next, f.conf_next = fn, cn = dis_flow(f.lr, nxt), np.ones((h, w), np.float32)
                else:  # not kept: the next window may see the next frame
                    fn, cn = np.zeros((2, h, w), np.float32), np.zeros((h, w), np.float32)
            if fn is None:
                raise ValueError("bidirectional inputs need frame_inputs(..., with_next=True)")
            fl.append(fn)
            cf.append(cn)
        out["flow_next"] = np.stack(fl)
        out["conf_next"] = np.stack(cf)[:, None]
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
