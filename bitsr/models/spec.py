"""What the networks take: the contract between the inputs layer (:mod:`bitsr.data.inputs`,
which builds the tensors from frames and priors) and the archs (which read channels by name).

Defined here, beside the archs, so that the models depend on torch and each other only.
"""
from __future__ import annotations

# Channels of the ``maps`` tensor, on the 4x4 grid (``bitsr.maps`` names): log2 CU size,
# skip / intra / coded-residual masks, luma QP, and ``from_prev``: 1 where the block is
# predicted from the previous display frame alone without residual (bitsr.maps.predicted_from),
# the only blocks whose output may be copied from that frame's.
# Then what conditions the restoration (constant over the picture where picture-level):
# transform size, picture type (slice_type: 0 B, 1 P, 2 I) and temporal layer.
MAP_CHANNELS = ("cu_log2", "skip", "intra", "residual", "qp", "from_prev", "tu_log2", "slice_type", "temporal_id")

# Keyword inputs of a network's forward, in the order runners pass them.
INPUT_KEYS = ("lr", "flow", "conf", "maps", "flow_next", "conf_next")

# File mode of bidirectional models: segments of FILE_CHUNK frames, each run with the
# FILE_LOOKAHEAD frames after it feeding the backward pass only (bitsr.Upscaler's defaults; the
# evaluation runs the same, so its numbers are what users get).
FILE_CHUNK = 16
FILE_LOOKAHEAD = 4


def segments(n: int, chunk: int = FILE_CHUNK, lookahead: int = FILE_LOOKAHEAD):
    """Windows over ``n`` frames: (start, stop, ahead) with frames start..stop-1 run and the
    last ``ahead`` of them only looked at, so the emitted ranges tile 0..n-1 in order."""
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        stop = min(e + lookahead, n)
        yield s, stop, stop - e


def clip_windows(net, tensors: dict, n: int | None = None, chunk: int = FILE_CHUNK,
                 lookahead: int = FILE_LOOKAHEAD, causal: bool = False):
    """(start, keyword inputs of ``net``'s forward) per window of a clip given as tensors
    [T, ...] with no batch axis (its first ``n`` frames), as :class:`bitsr.Upscaler` runs a
    file: a bidirectional model in file mode (``segments`` with ``lookahead``), or causally
    with ``causal``. The caller carries ``state`` from one window to the next."""
    bidir = bool(getattr(net, "bidirectional", False))
    file_mode = bidir and not causal
    keys = [k for k in INPUT_KEYS if k in tensors and (file_mode or not k.endswith("_next"))]
    total = tensors["lr"].shape[0] if n is None else n
    for s, e, ahead in segments(total, chunk, lookahead if file_mode else 0):
        kw = {k: tensors[k][s:e][None] for k in keys}
        if bidir:
            kw.update(causal=causal, lookahead=ahead)
        yield s, kw
