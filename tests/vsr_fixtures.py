"""Tiny prepared VSR data sets for the model/data/train tests (real content when the shared
videos are present, see streams.source_frames)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from streams import source_frames


def write_png_folder(folder: Path, frames) -> Path:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        with av.open(str(folder / f"{i:04d}.png"), "w") as c:
            s = c.add_stream("png")
            s.width, s.height, s.pix_fmt = f.shape[1], f.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
            for p in s.encode(None):
                c.mux(p)
    return folder


def write_ffv1(path: Path, frames, fps: int = 25) -> Path:
    from bitsr.data.encode import lossless_writer

    w = lossless_writer(str(path), frames[0].shape[1], frames[0].shape[0], Fraction(fps))
    for f in frames:
        w.write(f)
    w.close()
    return path


def tiny_sources(root: Path, n: int = 6, size=(256, 192)) -> list[Path]:
    """Two HR clips: an FFV1 video and a PNG folder."""
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    a = write_ffv1(root / "clip_a.mkv", source_frames(n, w, h, "city"))
    b = write_png_folder(root / "clip_b", source_frames(n, w, h, "calendar"))
    return [a, b]


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """Prepared folder: 2 clips x 6 frames, HR 256x192 -> LR 64x48 at x4, CRF 25 low-delay P."""
    from bitsr.data.encode import EncodeSpec
    from bitsr.data.prepare import prepare

    root = tmp_path_factory.mktemp("vsr_tiny")
    srcs = tiny_sources(root / "src")
    prepare(srcs, root / "prep", scales=(4,), encodes=[EncodeSpec(crf=25, preset="ultrafast")], progress=False)
    return root / "prep"


def random_inputs(b=1, t=3, h=32, w=48, k=9, seed=0, cu=None, residual=None):
    """Random model inputs (torch) with plausible maps (channels of bitsr.models.spec.MAP_CHANNELS;
    nothing is predicted from the previous frame alone)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(b, t, 3, h, w, generator=g)
    flow = torch.randn(b, t, 2, h, w, generator=g) * 2
    conf = torch.rand(b, t, 1, h, w, generator=g)
    maps = torch.zeros(b, t, k, -(-h // 4), -(-w // 4))
    maps[:, :, 0] = torch.randint(3, 7, maps[:, :, 0].shape, generator=g).float() if cu is None else cu
    maps[:, :, 3] = torch.randint(0, 2, maps[:, :, 3].shape, generator=g).float() if residual is None else residual
    maps[:, :, 4] = 30
    maps[:, :, 6] = 3  # tu_log2; slice_type 0 (B), temporal_id 0
    return {"lr": lr, "flow": flow, "conf": conf, "maps": maps}


__all__ = ["tiny_set", "tiny_sources", "random_inputs", "write_png_folder", "write_ffv1", "np"]
