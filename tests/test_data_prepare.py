"""Pair preparation: outputs, manifest, idempotence, resume, folder layouts, CLI errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from vsr_fixtures import tiny_set, tiny_sources, write_png_folder  # noqa: F401

from bitsr.data.encode import EncodeSpec
from bitsr.data.imresize import imresize
from bitsr.data.prepare import load_manifest, prepare
from bitsr.data.sources import find_clips


def _decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)], c.streams.video[0].codec_context.name


def test_prepared_items(tiny_set):
    m = load_manifest(tiny_set)
    assert len(m["items"]) == 2
    for key, e in m["items"].items():
        assert key == f"{e['clip']}/x4/crf25_ldp_k32_ultrafast"
        hr, codec = _decode(tiny_set / e["hr"])
        assert codec == "ffv1" and len(hr) == e["frames"] == 6
        assert hr[0].shape == (192, 256, 3) and e["hr_size"] == [256, 192] and e["lr_size"] == [64, 48]
        lr, codec = _decode(tiny_set / e["lr"])
        assert codec == "hevc" and len(lr) == 6 and lr[0].shape == (48, 64, 3)
        # the bitstream is the MATLAB-bicubic LR after lossy coding: close, not equal, and
        # aligned (a one-pixel shift is far worse)
        ref = imresize(hr[3], 0.25).astype(np.float64)
        lr3 = lr[3].astype(np.float64)
        mse = np.mean((lr3 - ref) ** 2)
        shifted = np.mean((lr3[:, 1:] - ref[:, :-1]) ** 2)
        assert 0 < mse < 0.4 * shifted, (mse, shifted)
        assert "bframes=0" in e["x265_params"] and "crf=25" in e["x265_params"]


def test_hr_is_lossless_crop(tmp_path):
    from streams import source_frames

    frames = source_frames(3, 134, 102, "city")  # cropped to 128x96 for x4 (multiple of 8)
    src = write_png_folder(tmp_path / "odd", frames)
    prepare([src], tmp_path / "out", scales=(4,), encodes=[EncodeSpec(preset="ultrafast")], progress=False)
    e = next(iter(load_manifest(tmp_path / "out")["items"].values()))
    hr, _ = _decode(tmp_path / "out" / e["hr"])
    assert all(np.array_equal(h, f[:96, :128]) for h, f in zip(hr, frames))


def test_hr_shrink_makes_smaller_targets_and_redoes_stale_items(tmp_path):
    from streams import source_frames

    frames = source_frames(3, 128, 96, "city")
    src = write_png_folder(tmp_path / "clip", frames)
    out = tmp_path / "out"
    spec = [EncodeSpec(preset="ultrafast")]
    prepare([src], out, scales=(2,), encodes=spec, progress=False, hr_shrink=lambda name, scale: 2.0)
    e = next(iter(load_manifest(out)["items"].values()))
    assert e["hr_shrink"] == 2.0 and e["hr_size"] == [64, 48] and e["lr_size"] == [32, 24]
    hr, _ = _decode(out / e["hr"])
    assert np.array_equal(hr[1], imresize(frames[1], 0.5))  # the shrunk source, stored losslessly
    # Another factor makes the item stale: HR and LR are made again at full size.
    prepare([src], out, scales=(2,), encodes=spec, progress=False)
    e = next(iter(load_manifest(out)["items"].values()))
    assert "hr_shrink" not in e and e["hr_size"] == [128, 96]
    assert _decode(out / e["hr"])[0][0].shape == (96, 128, 3)
    with pytest.raises(ValueError, match="hr_shrink"):
        prepare([src], out, scales=(2,), encodes=spec, progress=False, hr_shrink=0.5)


def test_idempotent_and_resumable(tmp_path):
    srcs = tiny_sources(tmp_path / "src", n=3, size=(64, 64))
    out = tmp_path / "out"
    specs = [EncodeSpec(crf=30, preset="ultrafast"), EncodeSpec(qp=35, gop="ra", preset="ultrafast")]
    m1 = prepare(srcs, out, scales=(2, 4), encodes=specs, progress=False)
    assert len(m1["items"]) == 8
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*.mkv")}
    assert len(files) == 2 * 2 * 3  # per clip and scale: hr + 2 encodings
    m2 = prepare(srcs, out, scales=(2, 4), encodes=specs, progress=False)
    assert m2 == m1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mkv")} == files  # nothing rewritten

    # An interrupted run: one bitstream missing, a stale partial file left behind.
    victim = out / m1["items"]["clip_b/x4/qp35_ra3_k32_ultrafast"]["lr"]
    victim.unlink()
    (out / "clip_a" / "x2" / "junk.mkv.part.mkv").write_bytes(b"partial")
    m3 = prepare(srcs, out, scales=(2, 4), encodes=specs, progress=False)
    assert victim.is_file() and m3 == m1
    rewritten = {p for p, t in files.items() if p.stat().st_mtime_ns != t}
    assert rewritten == {victim}
    assert "qp=35" in m3["items"]["clip_b/x4/qp35_ra3_k32_ultrafast"]["x265_params"]
    assert "b-pyramid=1" in m3["items"]["clip_b/x4/qp35_ra3_k32_ultrafast"]["x265_params"]

    # A new encoding adds items without touching the old ones.
    prepare(srcs, out, scales=(4,), encodes=[EncodeSpec(crf=40, preset="ultrafast")], progress=False)
    assert len(load_manifest(out)["items"]) == 10
    assert all(p.stat().st_mtime_ns == t for p, t in files.items() if p != victim)


def test_long_clip_keeps_timestamps(tmp_path):
    """Frames sent after the muxer has written its first packet keep their timestamps (the
    stream's time base changes under the writer at that point)."""
    srcs = tiny_sources(tmp_path / "src", n=30, size=(64, 64))[:1]
    m = prepare(srcs, tmp_path / "out", encodes=[EncodeSpec(crf=30, preset="ultrafast")], progress=False)
    e = next(iter(m["items"].values()))
    for rel in (e["lr"], e["hr"]):
        with av.open(str(tmp_path / "out" / rel)) as c:
            pts = [f.time for f in c.decode(video=0)]
        assert len(pts) == 30 and np.allclose(np.diff(pts), 1 / 25)


def test_ra_bitstream_has_b_pictures(tmp_path):
    import bitsr

    srcs = tiny_sources(tmp_path / "src", n=9, size=(64, 64))[:1]
    m = prepare(srcs, tmp_path / "out", encodes=[EncodeSpec(crf=30, gop="ra", preset="ultrafast")], progress=False)
    e = next(iter(m["items"].values()))
    with bitsr.open(tmp_path / "out" / e["lr"]) as r:
        types = [f.picture_type for f in r]
    assert types[0] == "I" and "B" in types and len(types) == 9


def test_layouts(tmp_path):
    px = np.zeros((16, 16, 3), np.uint8)
    for seq in ("000", "001"):  # REDS: root/<seq>/<frame>.png
        write_png_folder(tmp_path / "reds" / seq, [px, px])
    for seq, sub in (("00001", "0001"), ("00001", "0002"), ("00002", "0001")):  # Vimeo: root/<seq>/<sub>/im*.png
        write_png_folder(tmp_path / "vimeo" / seq / sub, [px, px, px])
    reds = find_clips([tmp_path / "reds"])
    assert [c.name for c in reds] == ["reds_000", "reds_001"] and len(reds[0].files) == 2
    vimeo = find_clips([tmp_path / "vimeo"])
    assert [c.name for c in vimeo] == ["00001_0001", "00001_0002", "00002_0001"]
    assert find_clips([tmp_path / "vimeo"], layout="vimeo") == vimeo
    frames = find_clips([tmp_path / "reds" / "000"])
    assert frames[0].name == "000" and frames[0].files
    with pytest.raises(ValueError):
        find_clips([tmp_path / "reds"], layout="nope")
    with pytest.raises(FileNotFoundError):
        find_clips([tmp_path / "missing"])


def test_encode_spec_validation():
    with pytest.raises(ValueError):
        EncodeSpec(gop="ipp")
    with pytest.raises(ValueError):
        EncodeSpec(qp=60)
    with pytest.raises(ValueError):
        EncodeSpec(gop="ra", bframes=1)
    assert EncodeSpec(qp=22).tag == "qp22_ldp_k32_medium"


def test_cli(tmp_path):
    srcs = tiny_sources(tmp_path / "src", n=2, size=(64, 64))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.main", "prepare", str(srcs[0]), "-o", str(tmp_path / "o"),
                        "--scale", "2", "--crf", "28", "--preset", "ultrafast", "-q"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert list(m["items"]) == ["clip_a/x2/crf28_ldp_k32_ultrafast"]
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.main", "prepare", str(tmp_path / "nope"),
                        "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope" in r.stderr


def test_concurrent_runs_on_one_folder(tmp_path):
    # two processes preparing the same folder (say, two evaluations started together) must
    # not clobber each other's .part files or manifest: the second finds the items made
    srcs = tiny_sources(tmp_path / "src", n=2, size=(64, 64))
    out = tmp_path / "out"
    code = ("import sys; from bitsr.data.prepare import prepare; from bitsr.data.encode import EncodeSpec; "
            "prepare(sys.argv[1:-1], sys.argv[-1], encodes=[EncodeSpec(preset='ultrafast')], progress=False)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", code, *map(str, srcs), str(out)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    m = load_manifest(out)
    assert len(m["items"]) == 2
    assert all((out / e["lr"]).is_file() and (out / e["hr"]).is_file() for e in m["items"].values())
    assert not list(out.rglob("*.part*"))
