"""The priors data type: what the bitstream says about one picture (docs/schema.md).

:class:`PicturePriors` wraps a parsed picture (the C++ parser's, or the H.264 path's, which
fills the same schema); :class:`Window` holds the priors of a picture's display-order
neighbours, which the flow rasterizer reads. The readers of :mod:`bitsr.io` make both; this
module depends on the extension only, so every layer above can use the type.
"""
from __future__ import annotations

import collections
import heapq
from typing import Callable, Iterable, Iterator, Mapping, Optional, TypeVar

import numpy as np

from . import _core

# Per-4x4 arrays, in the order of docs/schema.md.
BLOCK_ARRAYS = (
    "pred_mode",
    "cu_log2",
    "part_mode",
    "merge_flag",
    "inter_dir",
    "mv",
    "ref_idx",
    "ref_poc",
    "qp_y",
    "tu_log2",
    "residual",
    "intra_mode",
    "pcm_flag",
    "transquant_bypass",
)

SLICE_TYPES = {0: "B", 1: "P", 2: "I"}


def referenced_pocs(slices) -> "list[int] | None":
    """Sorted POCs that any of the slices references (any list), or None without slices."""
    return sorted({r for s in slices for lst in s["ref_poc"] for r in lst}) if slices else None


class PicturePriors:
    """What the bitstream says about one picture.

    Attributes mirror the schema: ``poc``, ``nal_type``, ``slice_type`` (0 B, 1 P, 2 I),
    ``temporal_id``, ``decode_index``, coded ``width``/``height``, ``conf_win`` (left, right,
    top, bottom), ``bit_depth``, ``chroma_format``. Per-4x4 arrays (``pred_mode``, ``mv``,
    ...) are read-only NumPy views of the parser's memory, shaped ``[Gh, Gw, ...]`` over the
    coded picture.
    """

    __slots__ = ("_pic", "_arrays", "_valid", "_refs")

    def __init__(self, pic: "_core.Picture"):
        self._pic = pic
        self._arrays = None
        self._valid = None
        self._refs = False  # not computed yet (None: unknown)

    # picture level
    poc = property(lambda self: self._pic.poc)
    nal_type = property(lambda self: self._pic.nal_type)
    slice_type = property(lambda self: self._pic.slice_type)
    temporal_id = property(lambda self: self._pic.temporal_id)
    decode_index = property(lambda self: self._pic.decode_index)
    cvs_index = property(lambda self: self._pic.cvs_index)
    output_flag = property(lambda self: self._pic.pic_output_flag)
    width = property(lambda self: self._pic.width)
    height = property(lambda self: self._pic.height)
    conf_win = property(lambda self: self._pic.conf_win)
    bit_depth = property(lambda self: self._pic.bit_depth)
    bit_depth_chroma = property(lambda self: self._pic.bit_depth_chroma)
    chroma_format = property(lambda self: self._pic.chroma_format)
    ctb_size = property(lambda self: self._pic.ctb_size)
    num_slice_segments = property(lambda self: self._pic.num_slice_segments)
    errors = property(lambda self: list(self._pic.errors))
    slices = property(lambda self: self._pic.slices)

    @property
    def referenced_pocs(self):
        """Sorted POCs that any slice of the picture references (any list), or None when the
        picture has no slice data; cached (the rasterizer asks for it on every flow)."""
        if self._refs is False:
            self._refs = referenced_pocs(self._pic.slices)
        return self._refs

    @property
    def picture_type(self) -> str:
        """'I', 'P' or 'B' from the first slice."""
        return SLICE_TYPES[self._pic.slice_type]

    @property
    def cropped_size(self) -> tuple[int, int]:
        """(width, height) after the conformance window."""
        l, r, t, b = self.conf_win
        return self.width - l - r, self.height - t - b

    @property
    def ctb_decoded(self) -> np.ndarray:
        """uint8 [H_ctb, W_ctb]: 1 where the CTB's slice data was decoded without error."""
        return self._pic.ctb_decoded

    @property
    def complete(self) -> bool:
        """True if every CTB was decoded without error (nothing concealed)."""
        return self._pic.num_ctb_decoded == self.ctb_decoded.size

    @property
    def valid(self) -> np.ndarray:
        """bool [Gh, Gw] on the 4x4 grid of the arrays: True where the priors were decoded.

        False marks blocks of CTBs that were concealed (damaged or missing slice data): there
        the arrays hold the placeholder "intra, no motion, picture QP, one CTB-sized CU", which
        says nothing about the content. Consumers should give such blocks no confidence (the
        flow rasterizer does not read this mask: it treats them as the intra blocks they claim
        to be, filled from their surroundings with low confidence). Read-only; all True for a
        complete picture.
        """
        if self._valid is None:
            c = self.ctb_size // 4
            ctb = self.ctb_decoded.astype(bool)
            gh, gw = (self.height + 3) // 4, (self.width + 3) // 4
            v = np.ascontiguousarray(np.repeat(np.repeat(ctb, c, axis=0), c, axis=1)[:gh, :gw])
            v.flags.writeable = False
            self._valid = v
        return self._valid

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._pic.arrays()
        return self._arrays

    def __getattr__(self, name):
        if name in BLOCK_ARRAYS:
            return self.arrays[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (
            f"<PicturePriors decode_index={self.decode_index} poc={self.poc} "
            f"type={self.picture_type} nal_type={self.nal_type} {self.width}x{self.height}>"
        )


class Window:
    """The priors of a frame's display-order neighbours: ``window[k]`` is the picture ``k``
    frames away (``window[0]`` the frame's own), or None beyond the start or end of the video.
    ``size`` is the reader's lookahead: offsets with ``|k| <= size`` were kept."""

    __slots__ = ("size", "_pictures")

    def __init__(self, size: int, pictures: Mapping[int, PicturePriors]):
        self.size = int(size)
        self._pictures = dict(pictures)

    def __getitem__(self, k: int) -> Optional[PicturePriors]:
        k = int(k)
        if abs(k) > self.size:
            raise ValueError(f"flow offset {k} is outside the reader's window (open with lookahead >= {abs(k)})")
        return self._pictures.get(k)

    def offsets(self) -> list[int]:
        """Offsets of the pictures present, ascending."""
        return sorted(self._pictures)

    def others(self, *exclude: int) -> list[PicturePriors]:
        """The pictures at every offset but ``exclude``: the frame's own, then earlier ones
        nearest first, then later ones nearest first (the order the rasterizer gets them)."""
        return [p for k, p in self._pictures.items() if k not in exclude]

    def __repr__(self) -> str:
        return f"<bitsr.priors.Window size={self.size} offsets={self.offsets()}>"


F = TypeVar("F")


def windowed(frames: Iterable[F], size: int, peek: Optional[Callable[[int], Optional[PicturePriors]]] = None
             ) -> Iterator[F]:
    """Delays frames (objects with ``priors`` and a ``window`` slot) by ``size`` so each one
    carries the :class:`Window` of the ``size`` frames before and after it in display order.
    Holds at most ``size`` frames ahead and ``size`` earlier priors. ``peek(k)``, where the
    source knows it, gives the priors of the k-th frame after the last one ``frames`` gave
    (None while unknown): a frame then goes as soon as its window is known, without waiting
    for the later frames themselves (for bitsr.open: their pixels, which FFmpeg decodes later
    than the parser reads their priors)."""
    history: collections.deque = collections.deque(maxlen=size)
    pending: collections.deque = collections.deque()

    def release(later=()):
        fr = pending.popleft()
        win = {0: fr.priors}
        for j, p in enumerate(reversed(history)):
            win[-1 - j] = p
        for j, nxt in enumerate(pending):
            win[1 + j] = nxt.priors
        for j, p in enumerate(later, start=len(pending)):
            win[1 + j] = p
        fr.window = Window(size, win)
        if size:
            history.append(fr.priors)
        return fr

    def known_later():
        """Priors of the frames after those pending that the head's window needs, or None."""
        out = []
        for k in range(1, size - len(pending) + 2):
            p = peek(k)
            if p is None:
                return None
            out.append(p)
        return out

    for fr in frames:
        pending.append(fr)
        while len(pending) > size:
            yield release()
        while pending and peek is not None:
            later = known_later()
            if later is None:
                break
            yield release(later)
    while pending:
        yield release()


def display_order(pictures: Iterable[PicturePriors], depth: int = 16) -> Iterator[PicturePriors]:
    """Decoding-order priors -> output (display) order: POC order within each coded video
    sequence. HEVC reorders by fewer than 16 pictures (the largest DPB), so a buffer of
    `depth` pictures suffices. Pictures not meant for output are dropped."""
    heap: list = []
    cvs = None
    for p in pictures:
        if not p.output_flag:
            continue
        if cvs is not None and p.cvs_index != cvs:
            while heap:
                yield heapq.heappop(heap)[2]
        cvs = p.cvs_index
        heapq.heappush(heap, (p.poc, p.decode_index, p))
        if len(heap) > depth:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]
