"""bitsr.upscale: compressed video in, upscaled video out.

One streaming pass: ``bitsr.open`` decodes frames (with their priors) in display order, the
:class:`Upscaler` turns them into HR frames, and :class:`~bitsr.io.writer.VideoWriter` encodes
them with the source's timestamps while copying its audio and subtitle streams. Memory holds
the upscaler's state and the encoder's lookahead, whatever the length of the video.

Ctrl-C stops after the frame in progress and finalizes the file, which stays playable (a
second Ctrl-C aborts at once); the output is fragmented MP4, so even a killed run leaves the
frames of its finished fragments.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import signal
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np
import torch

from . import _core
from .io.paths import check_output, is_image_sequence
from .io.reader import open as bitsr_open
from .io.writer import ENCODERS, ImageSequenceWriter, StreamNote, VideoWriter, output_format
from .upscaler import Upscaler


class IncompleteInput(UserWarning):
    """The input ended early or had damage concealed: the output holds what could be read."""


def _heap_trimmer() -> Callable[[], None]:
    """glibc keeps freed blocks in its heaps; with tensor sizes that change every frame (routing
    and reuse vary the tiles computed) the resident size creeps up by hundreds of MB over a few
    hundred frames. Returning free memory after each frame keeps it flat (costs microseconds)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def resolve_device(device: str) -> str:
    """``"auto"``: CUDA when available, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}") from e
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return device


def default_output(src: str | os.PathLike, scale: int) -> Path:
    src = Path(src)
    return src.with_name(f"{src.stem}_x{scale}.mp4")


class _Tap:
    """A Reader seen by the upscaler: records, in display order, the timestamps of the frames it
    consumes, so each HR frame gets its source frame's pts however far the model reads ahead."""

    def __init__(self, reader):
        self._reader = reader
        self.pts: collections.deque = collections.deque()
        self.first = None

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._reader.close()

    def __iter__(self):
        for f in self._reader:
            if self.first is None:
                self.first = f.av_frame
            self.pts.append(f.pts)
            yield f


class _DeferredInterrupt:
    """First SIGINT: set ``hit`` (the loop stops at the next frame boundary, so no packet is
    lost half-written); a second one raises at once. Only where Python's default handler is
    installed and only on the main thread."""

    def __init__(self):
        self.hit = False
        self._old = None

    def _handler(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def upscale(src: str | os.PathLike, dst: str | os.PathLike | None = None, scale: int = 4,
            model: str = "default", device: str = "auto", *, encoder: str = "libx265",
            crf: Optional[int] = None, preset: Optional[str] = None, threads: int = 0, tile: int = 0,
            quiet: bool = False, max_frames: Optional[int] = None,
            on_frame: Optional[Callable[[int, np.ndarray], None]] = None, overwrite: bool = True,
            strict: bool = False, compute: str = "auto", streaming: bool = False,
            precision: str = "auto") -> Path:
    """Upscales a compressed video file and writes the result; returns the output path.

    ``src``: HEVC (raw Annex B, MP4, MOV, MKV) or H.264 - whatever :func:`bitsr.open` reads.
    ``dst``: .mp4/.mov/.mkv (default ``<stem>_x<scale>.mp4`` beside the input), or a frame pattern
    such as ``frames/%06d.png``: one lossless PNG per frame, numbered from 1.
    ``encoder``: ``"libx265"`` or ``"libx264"``; ``crf``/``preset``: its quality and speed
    (defaults: CRF 22 for x265, 18 for x264, the encoder's default preset).
    ``model``: weights name or checkpoint path (see :class:`bitsr.Upscaler`); ``device``:
    ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"``; on CUDA the network runs
    in fp16 (autocast).
    ``threads``: CPU threads for PyTorch, decoding and encoding (0: library defaults).
    ``tile``: LR tile size for tiled inference of large frames (0: whole frames).
    ``quiet``: no progress bar. ``max_frames``: stop after that many frames.
    ``on_frame(i, hr)``: called after HR frame ``i`` is written.
    ``compute``: ``"auto"``, ``"saving"`` or ``"uniform"`` (see :class:`bitsr.Upscaler`).
    ``precision`` on the CPU: ``"auto"`` (bf16 where the CPU computes it natively), ``"fp32"``
    or ``"bf16"`` (see :class:`bitsr.Upscaler`).
    ``streaming``: causal mode, each frame from the frames before it only (what a live source
    allows); by default a bidirectional model also uses the frames after it (file mode).
    ``overwrite=False``: FileExistsError if ``dst`` exists. The output path is checked before
    any work (:func:`bitsr.io.paths.check_output`).
    An input that ends early (a truncated file) or had damage concealed is upscaled as far as
    it goes and reported as an :class:`IncompleteInput` warning; ``strict=True`` raises
    :class:`bitsr.BitstreamError` instead (at the first damage, or after the last frame for
    a short file; the output then holds the frames done).

    Frame rate and timestamps come from the source (variable frame rate survives); audio and
    subtitle streams are copied, or converted where the output container cannot hold them
    (see :mod:`bitsr.io.writer`; each such case is a :class:`~bitsr.io.writer.StreamNote`
    warning). Interrupted runs (Ctrl-C, ``KeyboardInterrupt``) finalize a valid partial file
    and re-raise.
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(2, "no such file", str(src))
    if src.is_dir():
        raise IsADirectoryError(21, "is a directory", str(src))
    dst = Path(dst) if dst is not None else default_output(src, scale)
    output_format(dst)
    check_output(dst, inputs=[src], overwrite=overwrite)
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    if tile < 0 or threads < 0:
        raise ValueError("tile and threads must be >= 0")
    device = resolve_device(device)
    reader = bitsr_open(src, threads=threads, strict=strict, any_codec=True)  # bad input fails here, before the model
    if not reader.has_priors:
        warnings.warn(f"{src}: {reader.codec} has no bitstream priors; upscaled with "
                      f"{'OpenCV DIS optical flow' if Upscaler.fallback_align() == 'dis' else 'no'} alignment "
                      "and uniform compute", StreamNote, stacklevel=2)
    try:
        upscaler = Upscaler(scale=scale, device=device, model=model, tile=tile, compute=compute,
                            precision=precision)
    except BaseException:
        reader.close()
        raise

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    tap = _Tap(reader)
    writer: Optional[VideoWriter] = None
    bar = None
    n = 0
    stopped_early = False
    gen = upscaler.frames(tap, streaming=streaming)
    try:
        if not quiet:
            from tqdm import tqdm

            total = reader.stream.frames or None
            if total and max_frames:
                total = min(total, max_frames)
            bar = tqdm(total=total, unit="frame", desc=src.name, dynamic_ncols=True, smoothing=0.1)
        # fp16 on CUDA: autocast keeps precision-sensitive ops (warping, reductions) in fp32.
        half = torch.autocast("cuda", dtype=torch.float16, enabled=torch.device(device).type == "cuda")
        trim = _heap_trimmer()
        with _DeferredInterrupt() as interrupt, half:
            for hr in gen:
                if not tap.pts:
                    raise RuntimeError("the upscaler returned more frames than it read")
                pts = tap.pts.popleft()
                if writer is None:
                    writer = _open_writer(dst, hr, pts, tap.first, reader, src, encoder, crf, preset, threads)
                    for msg in writer.notes:
                        warnings.warn(msg, StreamNote, stacklevel=2)
                writer.write(hr, pts)
                n += 1
                trim()
                if bar is not None:
                    bar.update(1)
                if on_frame is not None:
                    on_frame(n - 1, hr)
                if interrupt.hit:
                    raise KeyboardInterrupt
                if max_frames and n >= max_frames:
                    stopped_early = True
                    break
        if writer is None:
            raise ValueError(f"{src}: no frames decoded")
    except BaseException:
        gen.close()
        if writer is not None:
            writer.close(complete=False)
        raise
    finally:
        if bar is not None:
            bar.close()
        reader.close()
        torch.set_num_threads(old_threads)
    gen.close()
    writer.close(complete=not stopped_early)
    if not quiet:  # what the compute policy did (auto: which frames it routed)
        warnings.warn(f"{src.name}: {upscaler.compute_summary()}", StreamNote, stacklevel=2)
    short = None if stopped_early else reader.shortfall()
    if short:
        msg = f"{src}: {n} frame(s) written to {dst}, but {short}"
        if strict:
            raise _core.BitstreamError(msg)
        warnings.warn(msg, IncompleteInput, stacklevel=2)
    return dst


def _open_writer(dst, hr, first_pts, first, reader, src, encoder, crf, preset, threads) -> VideoWriter:
    if is_image_sequence(dst):
        with av.open(os.fspath(src)) as c:
            others = sum(1 for s in c.streams if s.type in ("audio", "subtitle"))
        return ImageSequenceWriter(dst, hr.shape[1], hr.shape[0], source_streams=others)
    # 4:2:0 needs even sizes (odd only happens with scale 3): the last row/column goes.
    h, w = hr.shape[0] & ~1, hr.shape[1] & ~1
    fps = reader.fps or Fraction(25)
    # Without container timestamps (raw Annex B) frames are numbered at the nominal rate.
    tb = reader.time_base if first_pts is not None and reader.time_base else 1 / Fraction(fps)
    color = (first.colorspace, first.color_primaries, first.color_trc) if first is not None else (2, 2, 2)
    return VideoWriter(dst, w, h, rate=fps, time_base=tb, encoder=encoder, crf=crf, preset=preset,
                       threads=threads, color=color, source=src, source_video=reader.stream_index, warn=False)
