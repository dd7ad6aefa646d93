"""HR clip sources for pair preparation: video files, frame folders, REDS and Vimeo-90K layouts.

* a video file (anything PyAV decodes: .mkv, .mp4, ...) is one clip;
* a folder of images (``frames``) is one clip, frames in natural name order;
* ``reds``: ``ROOT/<seq>/<frame>.png`` (REDS ``train_sharp``), one clip per sub-folder;
* ``vimeo``: ``ROOT/<seq>/<sub>/im1.png ...`` (Vimeo-90K ``sequences``), one clip per leaf.

``layout="auto"`` picks one of these from what is on disk.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mkv", ".mp4", ".mov", ".avi", ".webm", ".y4m", ".m4v", ".mpg", ".ts", ".hevc", ".265", ".h264", ".264"}
LAYOUTS = ("auto", "video", "frames", "reds", "vimeo")


@dataclass(frozen=True)
class ClipSource:
    """One HR clip: a video file or an ordered list of image files."""

    name: str
    path: str  # the video file or the frame folder
    files: tuple[str, ...] = ()  # image files (frame folders only)

    @property
    def is_video(self) -> bool:
        return not self.files

    def fingerprint(self) -> list:
        """Cheap identity of the source (sizes and mtimes) to notice that it changed."""
        paths = self.files or (self.path,)
        st = [os.stat(p) for p in paths]
        return [len(paths), sum(s.st_size for s in st), max(int(s.st_mtime) for s in st)]


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _images(folder: Path) -> list[str]:
    files = (str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    return sorted(files, key=_natural_key)


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "clip"


def find_clips(inputs, layout: str = "auto") -> list[ClipSource]:
    """Expands input paths (files or folders) into clips. Raises FileNotFoundError/ValueError."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    clips: list[ClipSource] = []
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            raise FileNotFoundError(2, "no such file or folder", str(p))
        if p.is_file():
            if layout not in ("auto", "video"):
                raise ValueError(f"{p}: a file, but layout {layout!r} expects a folder")
            clips.append(ClipSource(_clean(p.stem), str(p)))
            continue
        kind = layout
        if kind == "auto":
            if _images(p):
                kind = "frames"
            else:
                subs = _subdirs(p)
                videos = [f for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in VIDEO_EXTS]
                if videos and not subs:
                    kind = "video"
                elif subs and _images(subs[0]):
                    kind = "reds"
                elif subs and _subdirs(subs[0]) and _images(_subdirs(subs[0])[0]):
                    kind = "vimeo"
                elif videos:
                    kind = "video"
                else:
                    raise ValueError(f"{p}: no video files, images, or REDS/Vimeo-90K style folders found")
        if kind == "video":
            for f in sorted(p.iterdir(), key=lambda q: _natural_key(q.name)):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTS:
                    clips.append(ClipSource(_clean(f.stem), str(f)))
        elif kind == "frames":
            clips.append(ClipSource(_clean(p.name), str(p), tuple(_images(p))))
        elif kind == "reds":
            for s in _subdirs(p):
                files = _images(s)
                if files:
                    clips.append(ClipSource(_clean(f"{p.name}_{s.name}"), str(s), tuple(files)))
        elif kind == "vimeo":
            for s in _subdirs(p):
                for leaf in _subdirs(s):
                    files = _images(leaf)
                    if files:
                        clips.append(ClipSource(_clean(f"{s.name}_{leaf.name}"), str(leaf), tuple(files)))
    if not clips:
        raise ValueError("no clips found in " + ", ".join(map(str, inputs)))
    names = [c.name for c in clips]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"clip names collide: {sorted(dup)} (rename the inputs)")
    return clips


def clip_fps(clip: ClipSource, default: Fraction = Fraction(25)) -> Fraction:
    if not clip.is_video:
        return default
    with av.open(clip.path) as c:
        st = c.streams.video[0]
        rate = st.average_rate or st.guessed_rate
    return Fraction(rate) if rate else default


def iter_frames(clip: ClipSource, max_frames: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames of a clip, in display order."""
    n = 0
    if clip.is_video:
        with av.open(clip.path) as c:
            for f in c.decode(video=0):
                yield f.to_ndarray(format="rgb24")
                n += 1
                if max_frames and n >= max_frames:
                    return
        return
    for path in clip.files:
        with av.open(path) as c:
            f = next(c.decode(video=0))
            yield f.to_ndarray(format="rgb24")
        n += 1
        if max_frames and n >= max_frames:
            return
