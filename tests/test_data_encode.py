"""LR encodings of prepared pairs: EncodeSpec variants (x265 fixed GOPs, x265 and x264 defaults),
their tags, parameters, containers, and what the bitstreams they make look like."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from streams import source_frames
from vsr_fixtures import tiny_sources, write_ffv1

import bitsr
from bitsr._paths import shared_dir
from bitsr.data.encode import CODECS, GOPS, EncodeSpec, lr_writer, training_mix
from bitsr.data.prepare import load_manifest, prepare


def _spec_grid():
    for codec, gop, rate, preset, keyint, bframes in itertools.product(
            CODECS, GOPS, [("crf", 20), ("crf", 25), ("crf", 27.5), ("qp", 25), ("qp", 30)], ["medium", "fast"],
            [16, 32], [2, 3, 4]):
        if gop != "ra" and bframes != 3:
            continue  # bframes means nothing there: the same encoding
        kw = {"crf": rate[1], "qp": None} if rate[0] == "crf" else {"crf": None, "qp": rate[1]}
        yield EncodeSpec(gop=gop, codec=codec, preset=preset, keyint=keyint, bframes=bframes, **kw)


def test_tags_unique_short_and_stable():
    specs = set(_spec_grid())
    tags = {}
    for s in specs:
        assert s.tag not in tags or tags[s.tag] == s, (s, tags[s.tag])
        tags[s.tag] = s
        assert len(s.tag) <= 28 and "/" not in s.tag and " " not in s.tag
        assert EncodeSpec.from_dict(s.to_dict()) == s
    assert len(tags) == len(specs)
    # the names (and encodings) of earlier versions are unchanged: prepared data and configs use them
    assert EncodeSpec().tag == "crf25_ldp_k32_medium"
    assert EncodeSpec(qp=22).tag == "qp22_ldp_k32_medium"
    assert EncodeSpec(qp=35, gop="ra", preset="ultrafast").tag == "qp35_ra3_k32_ultrafast"
    assert EncodeSpec(crf=25).x265_params() == ("log-level=error:info=0:frame-threads=1:keyint=32:min-keyint=32:"
                                                "scenecut=0:open-gop=0:crf=25:bframes=0")
    assert EncodeSpec(crf=30, gop="ra").x265_params() == ("log-level=error:info=0:frame-threads=1:keyint=32:"
                                                          "min-keyint=32:scenecut=0:open-gop=0:crf=30:bframes=3:"
                                                          "b-pyramid=1:b-adapt=0")
    old = {"crf": 25, "qp": None, "gop": "ldp", "keyint": 32, "preset": "medium", "bframes": 0}  # an old manifest
    assert EncodeSpec.from_dict(old) == EncodeSpec()
    # new kinds
    assert EncodeSpec(gop="default").tag == "crf25_x265_medium"
    assert EncodeSpec(gop="default", codec="x264", crf=30, preset="fast").tag == "crf30_x264_fast"
    assert EncodeSpec(codec="x264").tag == "crf25_x264ldp_k32_medium"
    # the encoder's default GOP has no keyint/bframes of ours, whatever was passed
    assert EncodeSpec(gop="default", keyint=8, bframes=7) == EncodeSpec(gop="default")


def test_spec_validation():
    with pytest.raises(ValueError):
        EncodeSpec(codec="vp9")
    with pytest.raises(ValueError):
        EncodeSpec(gop="open")
    with pytest.raises(ValueError):
        EncodeSpec(codec="x264", gop="ra", bframes=1)
    with pytest.raises(ValueError):
        EncodeSpec(codec="x264").x265_params()


def test_default_gop_params_are_the_encoders():
    x265 = EncodeSpec(gop="default", crf=28).params()
    assert x265 == "log-level=error:info=0:frame-threads=1:crf=28"
    x264 = EncodeSpec(gop="default", codec="x264", qp=30).params()
    assert x264 == "threads=1:qp=30"
    for p in (x265, x264):
        assert not any(k in p for k in ("keyint", "bframes", "scenecut", "b-adapt", "open-gop"))
    s = EncodeSpec(gop="default", codec="x264")
    assert (s.encoder, s.container, s.ext) == ("libx264", "mp4", ".mp4")
    assert EncodeSpec(gop="default").filename == "crf25_x265_medium.mkv"


def _encode(path, spec, frames, extra_params=""):
    h, w = frames[0].shape[:2]
    wr = lr_writer(str(path), spec, w, h, Fraction(25))
    if extra_params:
        wr._s.options = {**spec.options(), f"{spec.codec}-params": spec.params() + extra_params}
    for f in frames:
        wr.write(f)
    wr.close()
    return path


def _scene_cut_frames(n1=20, n2=12, w=128, h=96):
    a = source_frames(n1, w, h, "city")
    b = source_frames(n2, w, h, "calendar")
    sh = shared_dir()
    if sh is None or not (sh / "video" / "vid4" / "calendar.mkv").is_file():  # made-up content: cut to a texture
        small = np.random.default_rng(0).integers(0, 256, (h // 8 + 4, w // 8 + 4, 3), dtype=np.uint8)
        tex = av.VideoFrame.from_ndarray(small, format="rgb24").reformat(
            width=8 * small.shape[1], height=8 * small.shape[0], format="rgb24", interpolation="BICUBIC").to_ndarray()
        b = [np.ascontiguousarray(tex[i:i + h, i:i + w]) for i in range(n2)]
    return a + b


def test_x265_default_gop_is_x265s(tmp_path):
    """x265's own settings: its SEI (info=1 only here) lists them, and the bitstream has
    B pictures and an intra picture at the scene cut only (keyint 250 > the clip)."""
    frames = _scene_cut_frames()
    spec = EncodeSpec(crf=28, gop="default", preset="medium")
    p = _encode(tmp_path / "info.mkv", spec, frames[:8], ":info=1")
    data = p.read_bytes()
    opts = data[data.index(b"options:"):].split(b"\x00")[0].decode(errors="replace").split()
    for o in ("bframes=4", "b-adapt=2", "b-pyramid", "scenecut=40", "keyint=250", "open-gop", "frame-threads=1",
              "crf=28.0"):
        assert o in opts, (o, opts)

    p = _encode(tmp_path / "cut.mkv", spec, frames)
    with bitsr.open(p) as r:
        types = [f.picture_type for f in r]
    assert len(types) == len(frames) and types[0] == "I"
    assert types.count("B") >= len(frames) // 2, types
    intra = [i for i, t in enumerate(types) if t == "I"]
    assert intra == [0, 20], types  # the scene cut; no periodic intra

    # the fixed pyramid has no scene-cut intra (and fixed mini-GOPs), x265 defaults do
    p = _encode(tmp_path / "ra.mkv", EncodeSpec(crf=28, gop="ra", keyint=64, preset="medium"), frames)
    with bitsr.open(p) as r:
        ra = [f.picture_type for f in r]
    assert [i for i, t in enumerate(ra) if t == "I"] == [0]


def test_x264_default_mp4_with_h264_priors(tmp_path):
    frames = source_frames(16, 128, 96, "city")
    spec = EncodeSpec(crf=26, gop="default", codec="x264", preset="medium")
    p = _encode(tmp_path / spec.filename, spec, frames)
    with av.open(str(p)) as c:
        assert c.format.name.startswith("mov,mp4")
        cc = c.streams.video[0].codec_context
        assert cc.name == "h264" and cc.profile == "High"
    from bitsr.io.formats import detect_codec

    assert detect_codec(p) == "h264"
    with bitsr.open(p) as r:
        assert r.fps == 25  # (before the loop: the reader closes its file at the end)
        got = [(f.display_index, f.picture_type, f.time, f.rgb.shape) for f in r]
    assert [g[0] for g in got] == list(range(16))
    assert np.allclose([g[2] for g in got], np.arange(16) / 25)
    assert got[0][1] == "I" and "B" in [g[1] for g in got] and {g[3] for g in got} == {(96, 128, 3)}
    with bitsr.open(p) as r:
        fr = list(r)
    fl, conf = fr[5].flow(-1)
    assert fl.shape == (2, 96, 128) and conf.max() > 0.5  # motion vectors came through
    m = fr[5].maps(["qp"])
    assert 10 < float(np.mean(m["qp"])) < 51


def test_x264_output_is_deterministic(tmp_path):
    frames = source_frames(12, 160, 128, "bikes")
    spec = EncodeSpec(crf=30, gop="default", codec="x264", preset="fast")
    a = _encode(tmp_path / "a.mp4", spec, frames).read_bytes()
    b = _encode(tmp_path / "b.mp4", spec, frames).read_bytes()
    assert a == b


def test_manifest_records_encodings(tmp_path):
    srcs = tiny_sources(tmp_path / "src", n=8, size=(128, 96))
    specs = [EncodeSpec(crf=30, preset="ultrafast"), EncodeSpec(crf=30, gop="default", preset="fast"),
             EncodeSpec(crf=30, gop="default", codec="x264", preset="fast")]
    m = prepare(srcs, tmp_path / "out", scales=(2,), encodes=specs, progress=False)
    assert len(m["items"]) == 6
    e = m["items"]["clip_a/x2/crf30_x264_fast"]
    assert e["lr"] == "clip_a/x2/crf30_x264_fast.mp4" and (tmp_path / "out" / e["lr"]).is_file()
    assert e["encode"] == {"crf": 30, "qp": None, "gop": "default", "keyint": None, "preset": "fast",
                           "bframes": None, "codec": "x264"}
    assert e["family"] == "x264-default" and e["encoder"] == "libx264" and e["params"] == "threads=1:crf=30"
    assert "x265_params" not in e
    e = m["items"]["clip_b/x2/crf30_x265_fast"]
    assert e["family"] == "x265-default" and e["x265_params"] == e["params"] == specs[1].params()
    assert m["items"]["clip_b/x2/crf30_ldp_k32_ultrafast"]["family"] == "x265-ldp"
    assert not list((tmp_path / "out").rglob("*.part*"))
    # the cache (decoded inputs for training) reads the MP4 through bitsr.open
    from bitsr.data.dataset import VSRClipDataset

    ds = VSRClipDataset(tmp_path / "out", scale=2, tags=["crf30_x264_fast"], progress=False)
    assert len(ds) == 2
    key, t = ds[0]
    assert key == "clip_a/x2/crf30_x264_fast" and t["lr"].shape == (8, 3, 48, 64) and t["hr"].shape == (8, 3, 96, 128)
    assert float(t["conf"][1:].max()) > 0


def test_per_clip_encodings(tmp_path):
    srcs = tiny_sources(tmp_path / "src", n=3, size=(64, 64))

    def pick(name):
        return [EncodeSpec(crf=30 if name == "clip_a" else 35, preset="ultrafast")] * 2  # duplicates are one

    m = prepare(srcs, tmp_path / "out", scales=(4,), encodes=pick, progress=False)
    assert sorted(m["items"]) == ["clip_a/x4/crf30_ldp_k32_ultrafast", "clip_b/x4/crf35_ldp_k32_ultrafast"]


def test_training_mix():
    mix = training_mix("davis16_dog")
    assert mix == training_mix("davis16_dog")  # a function of the name only
    assert len(mix) == 7 and len({s.tag for s in mix}) == 7
    fams = [s.family for s in mix]
    assert fams.count("x265-default") == 3 and fams.count("x265-ldp") == 2 and fams.count("x264-default") == 2
    assert all(18 <= s.crf <= 38 and float(s.crf).is_integer() for s in mix)
    names = [f"clip{i}" for i in range(60)]
    crfs = [s.crf for n in names for s in training_mix(n)]
    assert min(crfs) == 18 and max(crfs) == 38 and len(set(crfs)) == 21
    presets = {}
    for n in names:
        for s in training_mix(n):
            presets.setdefault(s.family, set()).add(s.preset)
    assert presets == {"x265-default": {"medium", "slow"}, "x265-ldp": {"medium", "fast"},
                       "x264-default": {"medium", "fast"}}
    # x265's default GOP keeps b-adapt 2 at both of its presets (faster ones turn it off)
    assert all(s.preset in ("medium", "slow") for n in names for s in training_mix(n) if s.family == "x265-default")


def _cli(*args, env=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "bitsr.cli.main", "prepare", *map(str, args)], capture_output=True,
                          text=True, env=env)


def test_cli_codec_and_gop(tmp_path):
    srcs = tiny_sources(tmp_path / "src", n=2, size=(64, 64))
    r = _cli(srcs[0], "-o", tmp_path / "o", "--scale", "2", "--crf", "28", "--codec", "x264", "--codec", "x265",
             "--gop", "default", "--preset", "ultrafast", "-q")
    assert r.returncode == 0, r.stderr
    m = load_manifest(tmp_path / "o")
    assert sorted(m["items"]) == ["clip_a/x2/crf28_x264_ultrafast", "clip_a/x2/crf28_x265_ultrafast"]
    r = _cli(srcs[0], "-o", tmp_path / "o2", "--scale", "2", "--codec", "x264", "--preset", "ultrafast", "-q")
    assert r.returncode == 0, r.stderr
    assert list(load_manifest(tmp_path / "o2")["items"]) == ["clip_a/x2/crf25_x264_ultrafast"]  # x264: its default GOP
    r = _cli(srcs[0], "-o", tmp_path / "o3", "--gop", "default", "--keyint", "8")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "keyint" in r.stderr
    r = _cli(srcs[0], "-o", tmp_path / "o3", "--mix", "--codec", "x264")
    assert r.returncode == 2 and "--mix" in r.stderr
    r = _cli("--help")
    assert r.returncode == 0 and "--codec" in r.stdout and "default" in r.stdout and "--mix" in r.stdout


def test_cli_mix(tmp_path):
    src = write_ffv1(tmp_path / "davis16_dog.mkv", source_frames(3, 64, 48, "city"))
    r = _cli(src, "-o", tmp_path / "o", "--scale", "2", "--mix", "-q")
    assert r.returncode == 0, r.stderr
    m = load_manifest(tmp_path / "o")
    assert sorted(m["items"]) == sorted(f"davis16_dog/x2/{s.tag}" for s in training_mix("davis16_dog"))


def test_x265_default_gop_is_deterministic(tmp_path):
    """frame-threads=1 is all it takes: the thread pool (and so the core count) leaves the
    bitstream alone, with x265's lookahead deciding the GOP."""
    frames = source_frames(12, 160, 128, "bikes")
    spec = EncodeSpec(crf=30, gop="default", preset="medium")

    def packets(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(video=0) if p.size]

    a = packets(_encode(tmp_path / "a.mkv", spec, frames, ":pools=1"))
    b = packets(_encode(tmp_path / "b.mkv", spec, frames, ":pools=3"))
    assert a == b and len(a) == 12
