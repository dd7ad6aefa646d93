"""Model inputs from decoded frames, the cache, and the training/validation datasets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bitsr
from bitsr.data.dataset import VSRClipDataset, VSRTrainDataset
from bitsr.data.imresize import imresize
from bitsr.data.inputs import MAP_CHANNELS, frame_inputs, window_arrays
from bitsr.data.prepare import load_manifest
from vsr_fixtures import tiny_set  # noqa: F401


@pytest.mark.parametrize("align", ["mv", "dis", "none"])
def test_frame_inputs(tiny_set, align):
    if align == "dis":
        pytest.importorskip("cv2")
    e = next(iter(load_manifest(tiny_set)["items"].values()))
    fis, prev = [], None
    with bitsr.open(tiny_set / e["lr"]) as video:
        for fr in video:
            fi = frame_inputs(fr, prev, align, with_next=True)
            prev = fi.lr
            fis.append(fi)
    assert len(fis) == 6
    f0, f2 = fis[0], fis[2]
    assert f2.lr.shape == (48, 64, 3) and f2.flow.shape == (2, 48, 64) and f2.conf.shape == (48, 64)
    assert f2.maps.shape == (len(MAP_CHANNELS), 12, 16)
    assert (f0.conf == 0).all()  # nothing before the first frame
    assert set(np.unique(f2.maps[0])) <= {3.0, 4.0, 5.0, 6.0}
    if align == "mv":
        assert f2.conf.max() > 0.5
    a = window_arrays(fis, align, bidirectional=True)
    assert a["flow_next"].shape == (6, 2, 48, 64) and a["conf_next"].shape == (6, 1, 48, 64)
    if align != "none":
        assert (a["conf_next"][-1] == 0).all()  # nothing after the last frame


def test_train_dataset(tiny_set):
    ds = VSRTrainDataset(tiny_set, scale=4, num_frames=4, patch=32, grid=16, seed=3, progress=False,
                         bidirectional=True)
    a, b = ds.sample(11), ds.sample(11)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # a pure function of (seed, index)
    assert any(not np.array_equal(ds.sample(12)["lr"], a["lr"]) for _ in range(1))
    t = ds[5]
    assert t["lr"].shape == (4, 3, 32, 32) and t["hr"].shape == (4, 3, 128, 128)
    assert t["flow"].shape == (4, 2, 32, 32) and t["maps"].shape == (4, 5, 8, 8) and t["conf_next"].shape == (4, 1, 32, 32)
    assert t["lr"].dtype == torch.float32 and 0 <= float(t["lr"].min()) and float(t["lr"].max()) <= 1


def test_train_crops_are_grid_aligned_and_paired(tiny_set):
    """Without augmentation, the LR crop is a grid-aligned window of the decoded clip and the
    HR crop lies exactly above it."""
    ds = VSRTrainDataset(tiny_set, scale=4, num_frames=2, patch=16, grid=16, augment=False, progress=False)
    full = VSRClipDataset(tiny_set, scale=4, progress=False)
    clips = {k: full[i][1] for i, (k, _) in enumerate(full.items)}
    for n in range(8):
        s = ds.sample(n)
        hits = []
        for key, t in clips.items():
            lr = (t["lr"].numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
            for t0 in range(len(lr) - 1):
                for y in range(0, 48 - 15, 16):
                    for x in range(0, 64 - 15, 16):
                        if np.array_equal(lr[t0:t0 + 2, y:y + 16, x:x + 16], s["lr"]):
                            hits.append((key, t0, y, x))
        assert hits, "crop not found on the 16-pixel grid"
        key, t0, y, x = hits[0]
        hr = (clips[key]["hr"].numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
        assert np.array_equal(hr[t0:t0 + 2, 4 * y:4 * y + 64, 4 * x:4 * x + 64], s["hr"])
        # and the HR crop downscales to (roughly) the decoded LR crop
        d = imresize(s["hr"][0], 0.25).astype(float) - s["lr"][0]
        assert np.abs(d).mean() < 20


def test_too_small_items_are_skipped(tiny_set):
    with pytest.warns(UserWarning):
        with pytest.raises(ValueError):
            VSRTrainDataset(tiny_set, scale=4, num_frames=4, patch=64, progress=False)
    with pytest.raises(ValueError):
        VSRTrainDataset(tiny_set, scale=2, progress=False)  # nothing prepared at x2


def test_clip_dataset(tiny_set):
    ds = VSRClipDataset(tiny_set, scale=4, max_frames=3, progress=False)
    key, t = ds[0]
    assert key.endswith("crf25_ldp_k32_ultrafast")
    assert t["lr"].shape == (3, 3, 48, 64) and t["hr"].shape == (3, 3, 192, 256)
