"""Datasets over a prepared folder (see :mod:`bitsr.data.prepare`).

``VSRTrainDataset``: random windows of ``num_frames`` consecutive frames, a random LR crop of
``patch`` pixels whose offset is a multiple of ``grid`` (the coding-block / routing tile grid,
so the crop's tiles are the codec's), the matching HR crop, and a random flip/transpose that
keeps flows and maps consistent. Randomness is a pure function of ``(seed, index)``: a run
resumed at iteration i sees exactly the samples it would have seen.

Which item a sample comes from is balanced (``balance``): 'encoding' (default) draws a clip
uniformly, then one of that clip's encoding families (codec-gop: x265-default, x265-ldp,
x264-default, ...) uniformly, then one of the clip's items of that family; 'clip' draws a clip,
then one of its items; 'item' draws an item (clips with more encodings weigh more);
``crf_boost`` (min_crf, factor) then draws high-CRF items more often. On a set
where all three agree (every clip has the same items, as the fixed-encoding sets of earlier
versions), every mode draws exactly the samples that earlier versions drew.

``VSRClipDataset``: whole clips (validation/evaluation), one item per manifest entry.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import random_dihedral
from .cache import ARRAYS, ensure_cached
from .inputs import to_tensors
from .prepare import encoding_family, load_manifest

BALANCES = ("encoding", "clip", "item")


def select_items(root: str | Path, scale: int, include=None, exclude=None, tags=None) -> list[tuple[str, dict]]:
    """Manifest items of one scale, filtered by clip name lists and encoding tags."""
    m = load_manifest(root)
    out = []
    for key, e in sorted(m["items"].items()):
        if e["scale"] != scale:
            continue
        if include and e["clip"] not in include:
            continue
        if exclude and e["clip"] in exclude:
            continue
        if tags and Path(e["lr"]).stem not in tags:
            continue
        out.append((key, e))
    if not out:
        raise ValueError(f"{root}: no prepared items for x{scale} with the requested clips/encodings")
    return out


def _build_caches(root: Path, items, align: str, progress: bool):
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="cache", unit="clip", file=sys.stderr, dynamic_ncols=True, leave=False)
    return [ensure_cached(root, e, align) for _, e in it]


def _rate(entry: dict):
    """The CRF (or constant QP) an item was encoded at, or None."""
    e = entry.get("encode", {})
    return e.get("crf") if e.get("crf") is not None else e.get("qp")


def item_weights(items, balance: str = "encoding", crf_boost=None) -> np.ndarray:
    """Sampling probability of each (key, entry) item under ``balance`` (see the module doc).
    ``crf_boost`` (min_crf, factor): items encoded at that CRF (or QP) or above are drawn
    ``factor`` times as often as ``balance`` alone would draw them (then renormalised)."""
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, got {balance!r}")
    w = _balanced(items, balance)
    if crf_boost:
        lo, f = float(crf_boost[0]), float(crf_boost[1])
        if not f > 0:
            raise ValueError(f"crf_boost factor must be positive, got {f}")
        rates = [_rate(e) for _, e in items]
        w = w * np.array([f if (r is not None and r >= lo) else 1.0 for r in rates])
        w /= w.sum()
    return w


def _balanced(items, balance: str) -> np.ndarray:
    n = len(items)
    if balance == "item":
        return np.full(n, 1.0 / n)
    groups: dict = {}
    for i, (_, e) in enumerate(items):
        fam = encoding_family(e) if balance == "encoding" else ""
        groups.setdefault(e["clip"], {}).setdefault(fam, []).append(i)
    w = np.zeros(n)
    for fams in groups.values():
        for idx in fams.values():
            w[idx] = 1.0 / (len(groups) * len(fams) * len(idx))
    return w


class _Mapped:
    """Lazily opened memory maps (per process: DataLoader workers open their own)."""

    def __init__(self, paths):
        self._paths = paths
        self._maps = None

    def get(self, i: int):
        if self._maps is None:
            self._maps = [None] * len(self._paths)
        if self._maps[i] is None:
            d, hp = self._paths[i]
            arr = {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
            arr["hr"] = np.load(hp, mmap_mode="r")
            self._maps[i] = arr
        return self._maps[i]

    def __getstate__(self):
        return {"_paths": self._paths, "_maps": None}


class VSRTrainDataset(Dataset):
    def __init__(self, root, scale: int = 4, num_frames: int = 7, patch: int = 64, grid: int = 16,
                 align: str = "mv", augment: bool = True, include=None, exclude=None, tags=None,
                 seed: int = 0, length: int = 10 ** 9, progress: bool = True, bidirectional: bool = False,
                 balance: str = "encoding", crf_boost=None, pixels_uint8: bool = False):
        if patch % grid:
            raise ValueError(f"patch {patch} must be a multiple of the grid {grid}")
        self.root, self.scale, self.num_frames, self.patch, self.grid = Path(root), scale, num_frames, patch, grid
        self.align, self.augment, self.seed, self.length = align, augment, seed, length
        self.bidirectional = bidirectional
        # lr and hr as uint8 [T, 3, h, w] (the trainer scales them on the GPU): a quarter of the
        # bytes through the workers' shared memory, pinning and the copy to the device
        self.pixels_uint8 = bool(pixels_uint8)
        items = select_items(root, scale, include, exclude, tags)
        usable = []
        for key, e in items:
            w, h = e["lr_size"]
            if e["frames"] < num_frames or w < patch or h < patch:
                warnings.warn(f"{key}: {e['frames']} frames of {w}x{h} is smaller than a "
                              f"{num_frames}-frame {patch}x{patch} sample; skipped", stacklevel=2)
                continue
            usable.append((key, e))
        if not usable:
            raise ValueError(f"{root}: no item is large enough for {num_frames} frames of {patch}x{patch}")
        self.items = usable
        self.weights = item_weights(usable, balance, crf_boost)
        # uniform weights: the integer draw of earlier versions (same samples on old sets)
        self._cum = None if np.ptp(self.weights) <= 1e-12 * self.weights.max() else np.cumsum(self.weights)
        self._data = _Mapped(_build_caches(self.root, usable, align, progress))

    def __len__(self) -> int:
        return self.length

    def _draw_item(self, rng: np.random.Generator) -> int:
        if self._cum is None:
            return int(rng.integers(len(self.items)))
        return min(int(np.searchsorted(self._cum, rng.random() * self._cum[-1], side="right")), len(self.items) - 1)

    def _pick(self, index: int) -> int:
        """The item sample ``index`` comes from."""
        return self._draw_item(np.random.default_rng([self.seed, index]))

    def sample(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        i = self._draw_item(rng)
        e = self.items[i][1]
        a = self._data.get(i)
        t0 = int(rng.integers(e["frames"] - self.num_frames + 1))
        w, h = e["lr_size"]
        p, g, s = self.patch, self.grid, self.scale
        y = int(rng.integers((h - p) // g + 1)) * g
        x = int(rng.integers((w - p) // g + 1)) * g
        ts = slice(t0, t0 + self.num_frames)
        out = {
            "lr": a["lr"][ts, y:y + p, x:x + p],
            "hr": a["hr"][ts, y * s:(y + p) * s, x * s:(x + p) * s],
            "flow": a["flow"][ts, :, y:y + p, x:x + p].astype(np.float32),
            "conf": a["conf"][ts, :, y:y + p, x:x + p].astype(np.float32),
            "maps": a["maps"][ts, :, y // 4:(y + p) // 4, x // 4:(x + p) // 4].astype(np.float32),
        }
        if self.bidirectional:
            out["flow_next"] = a["flow_next"][ts, :, y:y + p, x:x + p].astype(np.float32)
            out["conf_next"] = a["conf_next"][ts, :, y:y + p, x:x + p].astype(np.float32)
        if self.augment:
            out = random_dihedral(out, rng)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a = self.sample(int(index))
        if not self.pixels_uint8:
            return to_tensors(a)
        px = {k: torch.from_numpy(np.ascontiguousarray(a.pop(k))).movedim(-1, -3).contiguous() for k in ("lr", "hr")}
        return {**to_tensors(a), **px}


def pixels_to_float(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """uint8 lr / hr of a batch (``pixels_uint8``) -> float in [0, 1], where they are."""
    return {k: v.float().div_(255.0) if k in ("lr", "hr") and v.dtype == torch.uint8 else v
            for k, v in batch.items()}


class VSRClipDataset(Dataset):
    """Whole clips for validation: item i is (key, tensors with lr [T, 3, h, w], hr, flow, ...)."""

    def __init__(self, root, scale: int = 4, align: str = "mv", include=None, exclude=None, tags=None,
                 max_frames: int = 0, progress: bool = True, bidirectional: bool = False):
        self.root, self.scale, self.align, self.max_frames = Path(root), scale, align, max_frames
        self.bidirectional = bidirectional
        self.items = select_items(root, scale, include, exclude, tags)
        self._data = _Mapped(_build_caches(self.root, self.items, align, progress))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        a = self._data.get(i)
        n = self.items[i][1]["frames"]
        if self.max_frames:
            n = min(n, self.max_frames)
        keys = ["lr", "hr", "flow", "conf", "maps"] + (["flow_next", "conf_next"] if self.bidirectional else [])
        return self.items[i][0], to_tensors({k: np.asarray(a[k][:n]) for k in keys})
