"""``bitsr.Upscaler``: HR frames of a compressed clip, from a trained bitstream-guided VSR model.

>>> up = bitsr.Upscaler(scale=4, device="cpu", model="default")
>>> for hr in up.frames("clip.mp4"):      # uint8 [4H, 4W, 3] RGB, display order
...     ...

Frames stream through with bounded memory, however long the video. A bidirectional model
(file mode, the default for files) works on segments of ``chunk`` frames, each seen with the
``lookahead`` frames after it by the backward pass, the forward state carried from segment to
segment; ``frames(source, streaming=True)`` runs it causally (no backward pass), emitting each
frame as soon as it is decoded, as a unidirectional model always does. ``model`` is a
checkpoint path or the name of a package resource ``bitsr/weights/<name>_x<scale>.pt`` (or
``<name>.pt``); weights are never downloaded.
"""
from __future__ import annotations

import errno
import functools
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .data.inputs import frame_inputs, to_tensors, window_arrays
from .flow import warp_fold
from .models import build_model
from .models.checkpoint import load_checkpoint
from .models.precision import use_cpu_bf16
from .models.spec import FILE_CHUNK, FILE_LOOKAHEAD
from .tiling import run_tiled

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_HOW_TO_TRAIN = (
    "train them (README, 'Super-resolution models and training'): "
    "python tools/prepare_train.py; bitsr train configs/bitvsr_x{s}.yaml; "
    "then copy runs/bitvsr_x{s}/best.pt to {dst} or pass model=PATH"
)


def resolve_weights(model: str | os.PathLike, scale: int) -> Path:
    """A checkpoint path for ``model`` (a file path, or a name under ``bitsr/weights``)."""
    p = Path(model)
    if p.suffix == ".pt" or os.sep in str(model) or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such weights file", str(p))
        return p
    for cand in (WEIGHTS_DIR / f"{model}_x{scale}.pt", WEIGHTS_DIR / f"{model}.pt"):
        if cand.is_file():
            return cand
    dst = WEIGHTS_DIR / f"{model}_x{scale}.pt"
    raise FileNotFoundError(errno.ENOENT, f"no weights for model {str(model)!r} at x{scale}; "
                            + _HOW_TO_TRAIN.format(s=scale, dst=dst), str(dst))


def load_model(model: str | os.PathLike, scale: int, device="cpu", precision: str = "auto"):
    """(network in eval mode, training config) from a checkpoint written by ``bitsr train``.
    ``precision`` on the CPU: ``"auto"`` runs the convolutions in bf16 where the CPU computes
    it natively (AVX-512 BF16, AMX), ``"fp32"`` / ``"bf16"`` force one
    (:mod:`bitsr.models.precision`)."""
    bf16 = use_cpu_bf16(precision, device)
    path = resolve_weights(model, scale)
    ck = load_checkpoint(path, map_location="cpu")
    cfg = ck["config"]
    if int(cfg["model"].get("scale", 4)) != scale:
        raise ValueError(f"{path}: the weights are for x{cfg['model'].get('scale')}, not x{scale}")
    net = build_model(cfg["model"])
    net.load_state_dict(ck["model"])
    net.eval().to(device)
    if hasattr(net, "cpu_bf16"):
        net.cpu_bf16 = bf16
    if getattr(net, "hr_feedback", False):
        # the C++ warp (CPU tensors; CUDA keeps grid_sample), channels-last as the features
        net.feedback_warp = functools.partial(warp_fold, channels_last=True)
    if torch.device(device).type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net, cfg


class Upscaler:
    """Super-resolves the frames of a compressed video (see the module doc).

    ``tile``: if > 0, frames are processed in LR tiles of about ``tile`` pixels (at least 64),
    each with 2 x 16 pixels of context on every side (rounded up to the routing grid) and
    cross-faded with its neighbours over the middle half of the overlap (:mod:`bitsr.tiling`),
    each tile its own recurrent stream, to bound memory on large frames; 0 processes whole
    frames. ``chunk``: segment length of bidirectional models in file mode, and ``lookahead``
    the future frames their backward pass sees beyond it (memory holds ``chunk + lookahead``
    frames of inputs and features; the backward pass runs on ``1 + lookahead / chunk`` times
    the frames).

    ``compute``: ``"saving"`` runs the network as trained to save compute (CU-size routing of
    tiles to lighter branches, reuse of tiles the codec copied from the previous frame) on
    every frame; ``"uniform"`` runs the same weights with the full network on every pixel;
    ``"auto"`` (default) is uniform on CUDA, where gathering tiles costs more than the
    convolutions it saves, and on the CPU routes a frame only when its routing plan saves at
    least ``AUTO_MIN_SAVING`` of the network's FLOPs, running it uniform otherwise: gathering
    and scattering tiles cost about 40% of the FLOPs on this network, so a smaller saving is
    slower than uniform compute, and routing costs some quality. ``compute_mode`` says which
    policy runs; :meth:`compute_summary` what it did.

    ``precision`` (CPU): ``"auto"`` (default) runs the convolutions in bf16 where the CPU
    computes it natively, about 1.5x faster (the bicubic base, warps and output stay fp32;
    +0.002 dB against fp32 on calendar + city, x4 CRF 25), else fp32; ``"fp32"``/``"bf16"``
    force one. On CUDA, :func:`bitsr.upscale` runs fp16 autocast.
    """

    COMPUTE = ("auto", "saving", "uniform")
    AUTO_MIN_SAVING = 0.5

    def __init__(self, scale: int = 4, device: str = "cpu", model: str | os.PathLike = "default", *,
                 tile: int = 0, chunk: int = FILE_CHUNK, lookahead: int = FILE_LOOKAHEAD, compute: str = "auto",
                 precision: str = "auto"):
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if compute not in self.COMPUTE:
            raise ValueError(f"compute must be one of {', '.join(self.COMPUTE)}, got {compute!r}")
        self.scale, self.device = scale, torch.device(device)
        self.net, self.config = load_model(model, scale, self.device, precision)
        if compute == "auto" and self.device.type == "cuda":
            compute = "uniform"
        self.compute_mode = compute
        if compute == "uniform":
            self.net.routing = self.net.reuse = False
        self.net.min_saving = self.AUTO_MIN_SAVING if compute == "auto" else 0.0
        self.align = self.config["data"]["align"]
        self.bidirectional = bool(getattr(self.net, "bidirectional", False))
        self.grid = grid = int(getattr(self.net, "tile", 16))
        self.context = grid * math.ceil(16 / grid)
        self.tile = 0 if not tile else max(4 * self.context, int(tile) // grid * grid)
        if int(chunk) < 1 or int(lookahead) < 0:
            raise ValueError(f"chunk must be >= 1 and lookahead >= 0, got {chunk} and {lookahead}")
        self.chunk, self.lookahead = int(chunk), int(lookahead)

    @property
    def precision(self) -> str:
        """What the network's convolutions run in on the CPU: 'bf16' or 'fp32'."""
        return "bf16" if getattr(self.net, "cpu_bf16", False) else "fp32"

    def compute_summary(self) -> str:
        """What the compute policy did over the frames upscaled so far, in words."""
        st = self.net.stats
        n, uni = st["frames"], st["uniform"]
        if st["plain"] == n:
            return f"compute: uniform ({n} frame(s))"
        routed = n - uni - st["plain"]
        saved = self.net.saving(st["computed"], st["tiles"])
        how = "routing + reuse" if self.compute_mode == "saving" else f"{self.compute_mode}: routing + reuse"
        out = f"compute: {how} on {routed} of {n} frame(s), {100 * saved:.0f}% of the network's FLOPs saved"
        if uni:
            out += f"; {uni} frame(s) uniform (routing would save under {100 * self.net.min_saving:.0f}%)"
        return out

    def mode(self, streaming: bool = False) -> str:
        """'file' (bidirectional over segments) or 'streaming' (causal, frame by frame): what
        :meth:`frames` runs for ``streaming``."""
        return "file" if self.bidirectional and not streaming else "streaming"

    @torch.inference_mode()
    def frames(self, source, *, streaming: bool = False) -> Iterator[np.ndarray]:
        """HR RGB uint8 frames [s*H, s*W, 3] in display order. ``source``: a path, or an open
        :class:`bitsr.Reader` (or anything iterable over :class:`bitsr.Frame` that is a
        context manager). ``streaming``: causal, each frame out as soon as it is decoded (live
        use); otherwise a bidirectional model also looks ahead (see the class doc)."""
        from .io.reader import open as bitsr_open

        reader = bitsr_open(source, any_codec=True) if isinstance(source, (str, os.PathLike)) else source
        align, saving = self.align, (self.net.routing, self.net.reuse)
        self.net.reset_stats()  # compute_summary() tells of this video
        if not getattr(reader, "has_priors", True):  # another codec: optical flow, the full network
            align = self.fallback_align()
            self.net.routing = self.net.reuse = False
        try:
            yield from self._frames(reader, align, self.mode(streaming) == "streaming")
        finally:
            self.net.routing, self.net.reuse = saving

    @staticmethod
    def fallback_align() -> str:
        """Alignment for video without bitstream priors: OpenCV DIS flow when OpenCV is installed
        (``bitsr[flow]``), else none."""
        try:
            import cv2  # noqa: F401
        except ImportError:
            return "none"
        return "dis"

    def _frames(self, reader, align: str, causal: bool) -> Iterator[np.ndarray]:
        seg, ahead = (1, 0) if causal else (self.chunk, self.lookahead)
        with reader:
            window, prev_lr, states = [], None, {}
            for f in reader:
                fi = frame_inputs(f, prev_lr, align, with_next=not causal)
                if prev_lr is not None and prev_lr.shape != fi.lr.shape:  # new size: start afresh
                    yield from self._run(window, states, align, causal, 0)
                    window, states = [], {}
                    fi = frame_inputs(f, None, align, with_next=not causal)
                prev_lr = fi.lr
                window.append(fi)
                if len(window) >= seg + ahead:
                    yield from self._run(window, states, align, causal, ahead)
                    window = window[seg:]  # the lookahead frames start the next segment
            yield from self._run(window, states, align, causal, 0)

    def _run(self, window, states: dict, align: str, causal: bool, ahead: int) -> Iterator[np.ndarray]:
        if not window:
            return
        arrays = window_arrays(window, align, bidirectional=not causal)
        t = to_tensors(arrays, self.device)
        kw = {"causal": causal, "lookahead": ahead} if self.bidirectional else {}
        h, w = arrays["lr"].shape[1:3]
        s = self.scale
        if not self.tile or (h <= self.tile and w <= self.tile):
            out, states[0] = self.net(**{k: v[None] for k, v in t.items()}, state=states.get(0), **kw)
            out = out[0]
        else:
            def step(tl):  # one tile window, its own recurrent stream
                sub = {k: (v[:, :, tl.y0 // 4:-(-tl.y1 // 4), tl.x0 // 4:-(-tl.x1 // 4)] if k == "maps"
                           else v[..., tl.y0:tl.y1, tl.x0:tl.x1]) for k, v in t.items()}
                o, states[tl.index] = self.net(**{k: v[None] for k, v in sub.items()}, state=states.get(tl.index), **kw)
                return o[0]

            # Context on each side, cross-faded over half of it (bitsr.tiling).
            out = run_tiled(step, h, w, s, self.tile, 2 * self.context, align=self.grid)
        y = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        yield from y
