"""Per-clip cache of decoded frames and model inputs, as memory-mappable .npy files.

Decoding a bitstream and rasterising its priors for every training sample would dominate a CPU
training run, so each prepared item is decoded once::

    ROOT/.cache/<version>/<clip>/x<s>/hr.npy                 uint8 [T, H, W, 3]
    ROOT/.cache/<version>/<clip>/x<s>/<tag>/<align>/lr.npy   uint8 [T, h, w, 3]
                                         flow.npy, flow_next.npy   float16 [T, 2, h, w]
                                         conf.npy, conf_next.npy   float16 [T, 1, h, w]
                                         maps.npy  float16 [T, K, h/4, w/4]

Folders are written under a temporary name and renamed, so concurrent or interrupted builds
never leave a half-written cache. ``CACHE_VERSION`` is part of the path: bump it when the
inputs change meaning (or delete ``ROOT/.cache`` after changing ``bitsr.flow``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np

from ..io.reader import open as open_video
from .inputs import frame_inputs, window_arrays

ARRAYS = ("lr", "flow", "conf", "flow_next", "conf_next", "maps")
CACHE_VERSION = "v2"  # v2: maps gained the from_prev channel


def item_cache_dir(root: Path, entry: dict, align: str) -> Path:
    tag = Path(entry["lr"]).stem
    return root / ".cache" / CACHE_VERSION / entry["clip"] / f"x{entry['scale']}" / tag / align


def hr_cache_path(root: Path, entry: dict) -> Path:
    return root / ".cache" / CACHE_VERSION / entry["clip"] / f"x{entry['scale']}" / "hr.npy"


def _atomic_dir(final: Path, write) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".part.", dir=final.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # someone else finished first
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def decode_inputs(lr_path: str, align: str, max_frames: int = 0):
    """Full-clip model inputs of an LR bitstream: dict of stacked arrays (see module doc)."""
    fis = []
    prev = None
    with open_video(lr_path) as video:
        for fr in video:
            fi = frame_inputs(fr, prev, align, with_next=True)
            prev = fi.lr
            fis.append(fi)
            if max_frames and len(fis) >= max_frames:
                break
    if not fis:
        raise ValueError(f"{lr_path}: no frames decoded")
    a = window_arrays(fis, align, bidirectional=True)
    for k in ("flow", "conf", "flow_next", "conf_next", "maps"):
        a[k] = a[k].astype(np.float16)
    return a


def decode_rgb(path: str, max_frames: int = 0) -> np.ndarray:
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if max_frames and len(out) >= max_frames:
                break
    return np.stack(out)


def ensure_cached(root: Path, entry: dict, align: str) -> tuple[Path, Path]:
    """Builds the cache of one manifest item if missing; returns (inputs dir, hr.npy path)."""
    d = item_cache_dir(root, entry, align)
    if not all((d / f"{k}.npy").is_file() for k in ARRAYS):
        arrays = decode_inputs(str(root / entry["lr"]), align)
        if len(arrays["lr"]) != entry["frames"]:
            raise ValueError(f"{entry['lr']}: decoded {len(arrays['lr'])} frames, manifest says {entry['frames']}")

        def write(tmp: Path):
            for k in ARRAYS:
                np.save(tmp / f"{k}.npy", arrays[k])

        if d.exists():
            shutil.rmtree(d)
        _atomic_dir(d, write)
    hp = hr_cache_path(root, entry)
    if not hp.is_file():
        hr = decode_rgb(str(root / entry["hr"]))
        hp.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy", dir=hp.parent)
        os.close(fd)
        np.save(tmp, hr)
        os.replace(tmp, hp)
    return d, hp


def _cache_group(job) -> int:
    root, entries, align = job
    for e in entries:
        ensure_cached(Path(root), e, align)
    return len(entries)


def ensure_cached_many(root: Path, entries, align: str, workers: int) -> int:
    """Builds the caches of many items on ``workers`` processes, the items of one clip in one
    process (they share its hr.npy), the largest clips first; returns how many items."""
    from concurrent.futures import ProcessPoolExecutor

    by_clip: dict[tuple, list] = {}
    for e in entries:
        by_clip.setdefault((e["clip"], e["scale"]), []).append(e)
    jobs = sorted(((str(root), v, align) for v in by_clip.values()),
                  key=lambda j: -sum(e["frames"] * e["lr_size"][0] * e["lr_size"][1] for e in j[1]))
    if workers <= 1 or len(jobs) <= 1:
        return sum(map(_cache_group, jobs))
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as ex:
        return sum(ex.map(_cache_group, jobs))
