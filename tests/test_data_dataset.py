"""Model inputs from decoded frames, the cache, and the training/validation datasets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from vsr_fixtures import tiny_set  # noqa: F401

import bitsr
from bitsr.data.dataset import VSRClipDataset, VSRTrainDataset
from bitsr.data.imresize import imresize
from bitsr.data.inputs import MAP_CHANNELS, frame_inputs, window_arrays
from bitsr.data.prepare import load_manifest


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
    assert t["flow"].shape == (4, 2, 32, 32) and t["maps"].shape == (4, len(MAP_CHANNELS), 8, 8)
    assert t["conf_next"].shape == (4, 1, 32, 32)
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


def test_balanced_sampling_weights():
    from bitsr.data.dataset import item_weights

    def item(clip, codec, gop, crf):
        return (f"{clip}/x4/{crf}", {"clip": clip, "encode": {"codec": codec, "gop": gop, "crf": crf}})

    items = [item("a", "x265", "default", 20), item("a", "x265", "default", 30), item("a", "x265", "default", 35),
             item("a", "x265", "ldp", 25), item("a", "x264", "default", 25),
             item("b", "x265", "ldp", 25)]
    w = item_weights(items, "encoding")
    assert np.allclose(w, [1 / 18, 1 / 18, 1 / 18, 1 / 6, 1 / 6, 1 / 2]) and np.isclose(w.sum(), 1)
    assert np.allclose(item_weights(items, "clip"), [0.1] * 5 + [0.5])
    assert np.allclose(item_weights(items, "item"), [1 / 6] * 6)
    old = [(k, {"clip": e["clip"], "encode": {"gop": "ldp", "crf": 25}}) for k, e in items]  # before codec existed
    assert np.allclose(item_weights(old, "encoding"), item_weights(old, "clip"))
    with pytest.raises(ValueError):
        item_weights(items, "nope")
    # crf_boost: CRF >= 30 drawn twice as often, the rest in the balance's proportions
    b = item_weights(items, "encoding", crf_boost=(30, 2.0))
    assert np.isclose(b.sum(), 1) and np.isclose(b[1] / b[0], 2) and np.isclose(b[2] / b[0], 2)
    assert np.isclose(b[3] / b[5], w[3] / w[5]) and b[0] < w[0]
    with pytest.raises(ValueError, match="positive"):
        item_weights(items, "encoding", crf_boost=(30, 0))


def test_train_dataset_balances_encodings(tmp_path):
    """Clip a has 3 x265-default items and 1 x264 one, clip b one LDP item: samples come half
    from each clip, and within a, half from each family; a pure function of (seed, index)."""
    from vsr_fixtures import tiny_sources

    from bitsr.data.encode import EncodeSpec
    from bitsr.data.prepare import prepare

    a, b = tiny_sources(tmp_path / "src", n=3, size=(128, 64))
    out = tmp_path / "out"
    prepare([a], out, scales=(4,), progress=False,
            encodes=[EncodeSpec(crf=c, gop="default", preset="ultrafast") for c in (20, 30, 40)]
            + [EncodeSpec(crf=30, gop="default", codec="x264", preset="ultrafast")])
    prepare([b], out, scales=(4,), encodes=[EncodeSpec(crf=30, preset="ultrafast")], progress=False)
    ds = VSRTrainDataset(out, scale=4, num_frames=2, patch=16, grid=16, seed=1, progress=False)
    assert len(ds.items) == 5
    fam = {k: e["encode"].get("codec", "x265") + "-" + e["encode"]["gop"] for k, e in ds.items}
    counts: dict = {}
    rng_items = []
    for n in range(2000):
        i = ds._pick(n)
        rng_items.append(i)
        k, e = ds.items[i]
        counts[(e["clip"], fam[k])] = counts.get((e["clip"], fam[k]), 0) + 1
    assert rng_items[:50] == [ds._pick(n) for n in range(50)]
    share = {k: v / 2000 for k, v in counts.items()}
    assert abs(share[("clip_b", "x265-ldp")] - 0.5) < 0.05
    assert abs(share[("clip_a", "x264-default")] - 0.25) < 0.04
    assert abs(share[("clip_a", "x265-default")] - 0.25) < 0.04
    s = ds.sample(7)
    assert all(np.array_equal(s[k], ds.sample(7)[k]) for k in s)
    ds_item = VSRTrainDataset(out, scale=4, num_frames=2, patch=16, grid=16, seed=1, progress=False, balance="item")
    assert ds_item._cum is None  # uniform: the draw of earlier versions


def test_uniform_sets_sample_as_before(tiny_set):
    """On a set where every clip has the same encodings, sampling is what it always was."""
    ds = VSRTrainDataset(tiny_set, scale=4, num_frames=2, patch=16, grid=16, seed=5, progress=False)
    assert ds._cum is None
    for n in range(20):
        rng = np.random.default_rng([5, n])
        assert ds._pick(n) == int(rng.integers(len(ds.items)))


def test_uint8_pixels_give_the_same_batches(tiny_set):
    """pixels_uint8 (the trainer's choice on CUDA): lr / hr leave the workers as uint8 and
    pixels_to_float gives exactly the float samples."""
    from torch.utils.data import default_collate

    from bitsr.data.dataset import pixels_to_float

    kw = dict(scale=4, num_frames=4, patch=32, grid=16, seed=3, progress=False)
    f, u = VSRTrainDataset(tiny_set, **kw), VSRTrainDataset(tiny_set, pixels_uint8=True, **kw)
    assert u[7]["hr"].dtype == torch.uint8 and u[7]["flow"].dtype == torch.float32
    a, b = default_collate([f[i] for i in (1, 2)]), pixels_to_float(default_collate([u[i] for i in (1, 2)]))
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
