"""The CLI as people use it, through subprocess: --version, overwrite rules (-y / -n, refusal
without a terminal), output paths checked before any work, batches, truncated input."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from av_clips import make_av_clip, stream_summary, tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def bitsr_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "bitsr", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def up(*args):
    return bitsr_cli("upscale", *args, "--scale", "2", "--device", "cpu", "--preset", "ultrafast", "-q",
                     "--model", tiny_checkpoint(2))


def test_version():
    import bitsr

    for cmd in (["--version"], ["upscale", "--version"], ["extract", "--version"]):
        r = bitsr_cli(*cmd)
        assert r.returncode == 0 and r.stdout.strip().endswith(bitsr.__version__), (cmd, r.stdout, r.stderr)


def test_existing_output_needs_y_or_n(tmp_path):
    src = make_av_clip("up_mp4", frames=6, container="mp4", audio="aac")
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"keep me")
    r = up(src, "-o", dst)  # stdin is not a terminal: refuse, do nothing
    assert r.returncode == 2
    assert r.stderr.strip() == f"bitsr upscale: error: output exists (-y overwrites, -n skips): {dst}"
    r = up(src, "-o", dst, "-n")  # ffmpeg's -n: never overwrite, exit code 1
    assert r.returncode == 1 and "not overwritten" in r.stderr and dst.read_bytes() == b"keep me"
    r = up(src, "-o", dst, "-y")
    assert r.returncode == 0, r.stderr
    assert len(stream_summary(dst)["frames"]["times"]) == 6


@pytest.mark.parametrize("cmd", ["upscale", "extract"])
def test_output_folder_checked_before_work(tmp_path, cmd):
    src = make_av_clip("up_mp4", frames=6, container="mp4", audio="aac")
    out = tmp_path / "nodir" / ("x.mp4" if cmd == "upscale" else "x.npz")
    r = up(src, "-o", out) if cmd == "upscale" else bitsr_cli("extract", src, "-o", out, "-q")
    assert r.returncode == 2
    assert r.stderr.strip() == f"bitsr {cmd}: error: output folder does not exist: {out.parent}"


def test_batch_goes_on_after_a_failure(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mkv"):
        (folder / name).write_bytes(make_av_clip("up_mp4", frames=6, container=name[-3:], audio="aac").read_bytes())
    (folder / "c.mp4").write_bytes(os.urandom(3000))  # not a video
    (folder / "notes.txt").write_text("not an input")
    out = tmp_path / "out"
    out.mkdir()
    r = up(folder, "-o", out)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == "bitsr upscale: 2 done, 0 skipped, 1 failed"
    assert any(ln.startswith("bitsr upscale: error:") and "c.mp4" in ln for ln in lines)
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.mp4", "b_x2.mp4"]
    r = up(folder / "a.mp4", str(folder / "b.*"), "-o", out, "-n")  # a quoted glob; outputs kept
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "bitsr upscale: 0 done, 2 skipped, 0 failed"


def test_truncated_input_is_reported(tmp_path):
    src = make_av_clip("up_mkv", frames=20, container="mkv", audio="aac")
    cut = tmp_path / "cut.mkv"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    r = up(cut, "-o", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    n = len(stream_summary(tmp_path / "o.mp4")["frames"]["times"])
    assert 0 < n < 20
    assert f"bitsr upscale: warning: {cut}: {n} frame(s) written" in r.stderr and "ended at" in r.stderr
    r = up(cut, "-o", tmp_path / "o2.mp4", "--strict")
    assert r.returncode == 2 and "ended at" in r.stderr
    r = up(src, "-o", tmp_path / "o3.mp4")  # the whole file: nothing to report
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_extract_batch(tmp_path, jobs):
    from streams import make_hevc

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.hevc").write_bytes(make_hevc("batch", frames=4 + i, source="bikes").read_bytes())
    (folder / "bad.265").write_bytes(b"\x00\x00\x01" + os.urandom(500))
    out = tmp_path / "out"
    out.mkdir()
    r = bitsr_cli("extract", folder, "-o", out, "-q", "--jobs", jobs)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == "bitsr extract: 3 done, 0 skipped, 1 failed", lines
    assert any("bad.265" in ln and "error" in ln for ln in lines)
    import numpy as np

    assert [len(np.load(out / f"s{i}.priors.npz")["poc"]) for i in range(3)] == [4, 5, 6]
    r = bitsr_cli("extract", folder, "-o", out, "-q", "-n", "--jobs", jobs)
    assert r.stderr.strip().splitlines()[-1] == "bitsr extract: 0 done, 3 skipped, 1 failed"


def test_image_sequence_output(tmp_path):
    import av
    import numpy as np

    src = make_av_clip("up_mp4", frames=6, container="mp4", audio="aac")
    out = tmp_path / "frames"
    out.mkdir()
    r = up(src, "-o", out / "%04d.png")
    assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:04d}.png" for i in range(1, 7)]
    assert "not written: an image sequence holds frames only" in r.stderr
    video = up(src, "-o", tmp_path / "v.mkv", "--encoder", "libx264", "--crf", "0")
    assert video.returncode == 0
    with av.open(str(files[2])) as c:
        png = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert png.shape == (stream_summary(tmp_path / "v.mkv")["frames"]["sizes"].pop()[::-1] + (3,))
    assert png.std() > 0 and np.isfinite(png).all()
    r = up(src, "-o", out / "%04d.png")  # the first frame exists: refused without -y
    assert r.returncode == 2 and "output exists" in r.stderr


@pytest.mark.parametrize("codec", ["mpeg4", "libvpx-vp9"])
def test_other_codecs_are_upscaled_without_priors(tmp_path, codec):
    import av

    import bitsr

    src = tmp_path / f"{codec}.mkv"
    frames = make_av_clip("up_mkv", frames=6, container="mkv", audio="aac")
    with av.open(str(frames)) as c, av.open(str(src), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i, f in enumerate(c.decode(video=0)):
            f = f.reformat(width=64, height=48, format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    with pytest.raises(bitsr.UnsupportedStreamError):  # no priors to give
        bitsr.open(src)
    r = up(src, "-o", tmp_path / "o.mp4")
    assert r.returncode == 0, r.stderr
    assert "has no bitstream priors; upscaled with OpenCV DIS optical flow alignment and uniform compute" in r.stderr
    so = stream_summary(tmp_path / "o.mp4")
    assert len(so["frames"]["times"]) == 6 and so["frames"]["sizes"] == {(128, 96)}


def test_models_and_scales():
    r = bitsr_cli("models")
    assert r.returncode == 0, r.stderr
    head, *rows = r.stdout.splitlines()[:3]
    assert head.split()[:3] == ["name", "scale", "mode"]
    assert [row.split()[:3] for row in rows] == [["default", "x2", "streaming"], ["default", "x4", "streaming"]]
    r = bitsr_cli("models", "--json")
    import json

    models = json.loads(r.stdout)
    assert len(models) == 2
    for m in models:
        assert m["params"] > 100_000 and m["gflop_per_lr_pixel"] > 0 and m["gain_db_crf25"] > 0
    src = make_av_clip("up_mp4", frames=6, container="mp4", audio="aac")
    r = bitsr_cli("upscale", src, "--scale", "3", "-q")  # no shipped x3 weights: said before any work
    assert r.returncode == 2 and "no shipped weights for x3 (shipped: 2, 4)" in r.stderr


def test_output_under_a_file_is_refused(tmp_path):
    src = make_av_clip("up_mp4", frames=6, container="mp4", audio="aac")
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = up(src, "-o", blocker / "x.mp4")
    assert r.returncode == 2 and r.stderr.strip() == f"bitsr upscale: error: output folder is not a folder: {blocker}"
