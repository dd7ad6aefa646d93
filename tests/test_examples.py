"""The examples run as written, on small clips made here (one trains for a few iterations)."""
import subprocess
import sys
from pathlib import Path

import av
import pytest

from bitsr.samples import make_sample

ROOT = Path(__file__).resolve().parent.parent

def _run(args, timeout=600):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return r.stdout


def test_upscale_clip(tmp_path):
    src = make_sample(tmp_path / "in.mp4", synthetic=True, width=160, height=96, seconds=0.6)
    out = _run(["examples/upscale_clip.py", str(src), "-o", str(tmp_path / "out.mp4"), "--device", "cpu"])
    assert "wrote" in out
    with av.open(str(tmp_path / "out.mp4")) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (640, 384)
        assert sum(1 for p in c.demux(v) if p.size) == 15
        assert len(c.streams.audio) == 1


def test_extract_and_visualise(tmp_path):
    src = make_sample(tmp_path / "in.mp4", synthetic=True, width=192, height=128, seconds=0.8)
    out = _run(["examples/extract_and_visualise.py", str(src), "--frames", "8", "-o", str(tmp_path)])
    assert "warped by MV flow" in out
    assert (tmp_path / "priors.png").stat().st_size > 0 and (tmp_path / "priors.mp4").stat().st_size > 0


def test_train_on_your_videos(tmp_path):
    clip = make_sample(tmp_path / "hr.mp4", synthetic=True, width=512, height=384, seconds=0.6)
    out = _run(["examples/train_on_your_videos.py", str(clip), "--iters", "6", "--max-frames", "10",
                "--out", str(tmp_path / "work")])
    assert "upscaled" in out
    assert any((tmp_path / "work").rglob("best.pt"))


def test_extract_dataset_dask(tmp_path):
    """A LocalCluster extracts a folder (sub-folders too) into one .npz per video, equal to
    `bitsr extract`'s; a second run only redoes missing outputs; a broken file fails alone."""
    pytest.importorskip("distributed")
    import numpy as np

    from bitsr.io.npz import save_priors

    videos, out = tmp_path / "videos", tmp_path / "priors"
    a = make_sample(videos / "a.mp4", synthetic=True, width=128, height=96, seconds=0.4)
    b = make_sample(videos / "sub" / "b.mkv", synthetic=True, width=96, height=64, seconds=0.3)
    (videos / "broken.hevc").write_bytes(b"\x00\x00\x01" + bytes(range(256)) * 4)
    args = ["examples/extract_dataset_dask.py", str(videos), str(out), "--workers", "1"]
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "extracted 2 file(s)" in r.stdout and "broken.hevc" in r.stderr, r.stderr[-2000:]
    got_a, got_b = out / "a.priors.npz", out / "sub" / "b.priors.npz"
    save_priors(a, tmp_path / "ref.npz")
    with np.load(got_a) as x, np.load(tmp_path / "ref.npz") as y:
        assert sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
    assert not list(out.rglob("*.part"))  # atomic: nothing half-written left
    before = got_a.stat().st_mtime_ns
    got_b.unlink()
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "extracted 1 file(s)" in r.stdout, r.stdout + r.stderr[-2000:]  # b again; a skipped
    assert got_b.exists() and got_a.stat().st_mtime_ns == before
    assert b.exists()
