"""Paired training/evaluation data: HR frames -> MATLAB-bicubic LR -> x265 / x264 bitstreams.

Output folder::

    OUT/manifest.json
    OUT/<clip>/x<s>/hr.mkv           HR frames cropped to a multiple of 2*s (FFV1, lossless)
    OUT/<clip>/x<s>/<tag>.mkv        LR frames encoded with libx265 (one file per EncodeSpec)
    OUT/<clip>/x<s>/<tag>.mp4        LR frames encoded with libx264

Each manifest item records its encoding: ``encode`` (the :class:`EncodeSpec` fields: codec,
gop, crf/qp, preset, keyint, bframes), ``family`` (codec-gop, e.g. 'x265-default'),
``encoder`` and ``params`` (the FFmpeg encoder and its x265-params / x264-params string;
x265 items also keep ``x265_params``, as manifests written before x264 did).

``prepare`` is idempotent and resumable: an item already in the manifest whose files exist and
whose source did not change is skipped; files are written under a ``.part`` name and renamed
when complete, and the manifest is rewritten atomically after every clip, so an interrupted
run picks up at the first unfinished clip.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

from .encode import EncodeSpec, lossless_writer, lr_writer
from .imresize import imresize
from .sources import ClipSource, clip_fps, find_clips, iter_frames

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# The encodings of every clip, or a function of the clip's name giving them (a per-clip mix).
Encodes = Union[Sequence[EncodeSpec], Callable[[str], Sequence[EncodeSpec]]]
# How much the source frames are shrunk before they become the HR target, per clip: a factor
# >= 1, or a function of (clip name, scale) giving it.
Shrink = Union[float, Callable[[str, int], float]]
DEFAULT_ENCODES = (EncodeSpec(),)  # x265 low-delay P, CRF 25, keyint 32, medium


def load_manifest(out_dir: str | os.PathLike) -> dict:
    p = Path(out_dir) / MANIFEST
    if not p.exists():
        return {"version": MANIFEST_VERSION, "items": {}}
    with open(p) as f:
        m = json.load(f)
    if m.get("version") != MANIFEST_VERSION or not isinstance(m.get("items"), dict):
        raise ValueError(f"{p}: not a bitsr manifest (version {m.get('version')!r})")
    return m


def _save_manifest(out_dir: Path, m: dict) -> None:
    tmp = out_dir / (MANIFEST + ".part")
    with open(tmp, "w") as f:
        json.dump(m, f, indent=1, sort_keys=True)
    os.replace(tmp, out_dir / MANIFEST)


def item_key(clip: str, scale: int, spec: EncodeSpec) -> str:
    return f"{clip}/x{scale}/{spec.tag}"


def _part(path: Path) -> str:
    """Name an output is written under until complete: ``x.mkv`` -> ``x.mkv.part.mkv`` (the
    extension kept, so that FFmpeg picks the same muxer)."""
    return f"{path}.part{path.suffix}"


def _unpart(part: str) -> str:
    base, sep, ext = part.rpartition(".part.")
    assert sep and base.endswith("." + ext), part
    return base


def encoding_family(entry: dict) -> str:
    """'codec-gop' of a manifest item (items written before x264 existed are x265)."""
    e = entry.get("encode", {})
    return entry.get("family") or f"{e.get('codec', 'x265')}-{e.get('gop', 'ldp')}"


def _same_source(entry: dict, fingerprint: list, max_frames: int, shrink: float) -> bool:
    return (entry.get("source_fingerprint") == fingerprint and entry.get("max_frames", 0) == max_frames
            and entry.get("hr_shrink", 1.0) == shrink)


def _done(out_dir: Path, entry: dict | None, fingerprint: list, max_frames: int, shrink: float) -> bool:
    return (entry is not None and _same_source(entry, fingerprint, max_frames, shrink)
            and (out_dir / entry["hr"]).is_file() and (out_dir / entry["lr"]).is_file())


def _prepare_clip(clip: ClipSource, out_dir: Path, scale: int, specs: Sequence[EncodeSpec], manifest: dict,
                  max_frames: int, shrink: float, fps_default, bar) -> int:
    fp = clip.fingerprint()
    items = manifest["items"]
    todo = [s for s in specs if not _done(out_dir, items.get(item_key(clip.name, scale, s)), fp, max_frames, shrink)]
    if not todo:
        return 0
    rel = Path(clip.name) / f"x{scale}"
    (out_dir / rel).mkdir(parents=True, exist_ok=True)
    hr_rel = rel / "hr.mkv"
    same_hr = [e for e in manifest["items"].values() if e["hr"] == str(hr_rel)]
    hr_ok = ((out_dir / hr_rel).is_file() and bool(same_hr)
             and all(_same_source(e, fp, max_frames, shrink) for e in same_hr))
    fps = clip_fps(clip, fps_default)
    writers, n = [], 0
    size = None
    try:
        for rgb in iter_frames(clip, max_frames):
            if shrink != 1.0:
                rgb = imresize(rgb, 1.0 / shrink)
            if size is None:
                m = 2 * scale  # LR stays even for 4:2:0
                H, W = rgb.shape[0] // m * m, rgb.shape[1] // m * m
                if H == 0 or W == 0:
                    raise ValueError(f"{clip.path}: {rgb.shape[1]}x{rgb.shape[0]} is too small for x{scale}")
                size = (W, H)
                h, w = H // scale, W // scale
                if not hr_ok:
                    writers.append(("hr", None, lossless_writer(_part(out_dir / hr_rel), W, H, fps)))
                for s in todo:
                    writers.append(("lr", s, lr_writer(_part(out_dir / rel / s.filename), s, w, h, fps)))
            hr = rgb[: size[1], : size[0]]
            if hr.shape[:2] != (size[1], size[0]):
                raise ValueError(f"{clip.path}: frame {n} has size {rgb.shape[1]}x{rgb.shape[0]}, "
                                 "earlier ones were larger")
            lr = imresize(hr, 1.0 / scale)
            for kind, _, wr in writers:
                wr.write(hr if kind == "hr" else lr)
            n += 1
            if bar is not None:
                bar.update(1)
        if n == 0:
            raise ValueError(f"{clip.path}: no frames")
        for _, _, wr in writers:
            wr.close()
    except BaseException:
        for _, _, wr in writers:
            wr.abort()
        raise
    for _, _, wr in writers:
        os.replace(wr.path, _unpart(wr.path))
    W, H = size
    if not hr_ok:  # entries made from an older HR file are stale now
        stale = [k for k, e in items.items() if e["hr"] == str(hr_rel) and not _same_source(e, fp, max_frames, shrink)]
        for k in stale:
            del items[k]
    for s in todo:
        entry = {
            "clip": clip.name,
            "source": os.path.abspath(clip.path),
            "source_fingerprint": fp,
            "max_frames": max_frames,
            "scale": scale,
            "frames": n,
            "fps": str(fps),
            "hr": str(hr_rel),
            "lr": str(rel / s.filename),
            "hr_size": [W, H],
            "lr_size": [W // scale, H // scale],
            "encode": s.to_dict(),
            "family": s.family,
            "encoder": s.encoder,
            "params": s.params(),
            "downscale": "matlab_bicubic_antialias",
        }
        if shrink != 1.0:
            entry["hr_shrink"] = shrink
        if s.codec == "x265":
            entry["x265_params"] = s.params()
        manifest["items"][item_key(clip.name, scale, s)] = entry
    _save_manifest(out_dir, manifest)
    return len(todo)


def prepare(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, scales: Sequence[int] = (4,),
            encodes: Encodes = DEFAULT_ENCODES, layout: str = "auto", max_frames: int = 0,
            fps=25, progress: bool = True, hr_shrink: Shrink = 1.0) -> dict:
    """Makes HR/LR pairs for every clip of ``inputs`` (see :mod:`bitsr.data.sources`) at every
    scale and encoding. ``encodes``: the encodings of every clip, or a function of the clip's
    name returning that clip's encodings (e.g. :func:`bitsr.data.encode.training_mix`).
    ``hr_shrink``: shrink the source frames by this factor (MATLAB bicubic) before they become
    the HR target, or a function of (clip name, scale) giving it; sources that carry JPEG or
    H.264 artefacts and soft detail at their full size make sharper, cleaner targets smaller.
    Returns the manifest (also written to ``OUT/manifest.json``)."""
    from fractions import Fraction

    for s in scales:
        if s not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {s}")
    if not callable(encodes):
        if not encodes:
            raise ValueError("no encodings given")
        fixed = list(encodes)
        encodes = lambda name: fixed  # noqa: E731
    clips = find_clips(list(inputs), layout)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        shrink = hr_shrink if callable(hr_shrink) else (lambda name, scale: hr_shrink)
        return _prepare_locked(clips, out, scales, encodes, max_frames, Fraction(fps), progress, shrink)


@contextlib.contextmanager
def _locked(out: Path):
    """Two runs on one folder (say, two evaluations started together) would write the same
    .part files and manifest: the second waits for the first, then finds its items done."""
    with open(out / ".prepare.lock", "a") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; runs must not overlap
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _specs_of(encodes, name: str) -> list[EncodeSpec]:
    specs = list(encodes(name))
    if not specs:
        raise ValueError(f"{name}: no encodings given")
    tags = [s.tag for s in specs]
    if len(set(tags)) != len(tags):  # the same file twice
        specs = list(dict.fromkeys(specs))
        if len({s.tag for s in specs}) != len(specs):
            raise ValueError(f"{name}: encodings with the same tag differ: {tags}")
    return specs


def _shrink_of(shrink, name: str, scale: int) -> float:
    f = float(shrink(name, scale))
    if not f >= 1.0 or f > 64:
        raise ValueError(f"{name}: hr_shrink must be in [1, 64], got {f}")
    return f


def _prepare_locked(clips, out: Path, scales, encodes, max_frames: int, fps, progress: bool, shrink) -> dict:
    manifest = load_manifest(out)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc="prepare", file=sys.stderr, dynamic_ncols=True)
    made = 0
    try:
        for clip in clips:
            for scale in scales:
                if bar is not None:
                    bar.set_postfix_str(f"{clip.name} x{scale}")
                made += _prepare_clip(clip, out, scale, _specs_of(encodes, clip.name), manifest, max_frames,
                                      _shrink_of(shrink, clip.name, scale), fps, bar)
    finally:
        if bar is not None:
            bar.close()
    if progress:
        print(f"prepare: {made} new item(s), {len(manifest['items'])} in {out / MANIFEST}", file=sys.stderr)
    return manifest
