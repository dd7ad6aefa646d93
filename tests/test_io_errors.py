"""Bad input through bitsr.open and bitsr.extract: clear bitsr exceptions naming the file,
never a PyAV exception, crash or hang."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest
from annexb import SPS, join, nal_type, replace_sps_tail, split_nals
from conftest import SHARED, requires_shared
from streams import make_hevc

import bitsr

APIS = {
    "open": lambda path, **kw: list(bitsr.open(path, **kw)),
    "extract": lambda path, **kw: list(bitsr.extract(path, **kw)),
}


@pytest.fixture(params=sorted(APIS))
def read(request):
    return APIS[request.param]


def test_missing_file(tmp_path):
    for api in (bitsr.open, bitsr.extract):  # raised by the call, before any iteration
        with pytest.raises(FileNotFoundError):
            api(tmp_path / "nope.hevc")
        with pytest.raises(bitsr.BitstreamError, match="directory"):
            api(tmp_path)


@pytest.mark.parametrize("name, content", [
    ("dir", None),
    ("empty.hevc", b""),
    ("empty.mp4", b""),
    ("garbage.hevc", os.urandom(4096)),
    ("garbage.mp4", os.urandom(4096)),
    ("garbage.bin", os.urandom(4096)),
    ("startcodes.h265", b"\x00\x00\x01" + os.urandom(2000)),
    ("text.mkv", b"not a video\n" * 100),
])
def test_not_a_video(read, tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(bitsr.BitstreamError, match=name):
        read(path)


def _faststart_copy(src, dst):
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = s
                o.mux(p)


@pytest.mark.parametrize("layout", ["moov_at_end", "faststart"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_mp4(tmp_path, layout, keep):
    """A truncated MP4 either fails with BitstreamError (index lost, or nothing decodable) or
    yields the frames before the cut (strict: BitstreamError on the damaged packet)."""
    src = make_hevc("trunc", frames=24, x265_params="bframes=3:scenecut=0", container="mp4",
                    source="bikes", crf=24)
    full = tmp_path / "full.mp4"
    if layout == "faststart":
        _faststart_copy(src, full)
    else:
        full.write_bytes(src.read_bytes())
    data = full.read_bytes()
    path = tmp_path / f"cut_{keep}.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    for strict in (False, True):
        for api in APIS.values():
            try:
                n = len(api(path, strict=strict))
            except bitsr.BitstreamError as e:
                assert str(path) in str(e)
            else:
                assert not strict and 0 < n < 24


def test_other_codec_is_unsupported(read, tmp_path):
    # (H.264 is read through bitsr/io/h264.py; another codec is refused by name.)
    path = tmp_path / "mpeg4.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=25)
        st.width, st.height, st.pix_fmt = 64, 64, "yuv420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            for pkt in st.encode(f.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    with pytest.raises(bitsr.UnsupportedStreamError, match="mpeg4"):
        read(path)


@pytest.mark.parametrize("extension, bits", [
    # sps_extension_present_flag, range, multilayer, 3d, scc flags, sps_extension_4bits
    ("3D-HEVC", "1" "0010" "0000"),
    ("screen content coding", "1" "0001" "0000"),
])
def test_unsupported_sps_extension(read, tmp_path, extension, bits):
    src = make_hevc("plain", frames=4)
    nals = [replace_sps_tail(n, bits) if nal_type(n) == SPS else n for n in split_nals(src.read_bytes())]
    path = tmp_path / "ext.hevc"
    path.write_bytes(join(nals))
    with pytest.raises(bitsr.UnsupportedStreamError, match=extension):
        read(path)


@requires_shared
@pytest.mark.parametrize("name", sorted(os.listdir(SHARED / "corpus" / "hevc" / "malformed")) if SHARED else [])
@pytest.mark.parametrize("strict", [False, True])
def test_malformed_corpus(read, name, strict):
    """The fuzz streams decode to a few pictures or raise BitstreamError."""
    path = SHARED / "corpus" / "hevc" / "malformed" / name
    try:
        out = read(path, strict=strict)
    except bitsr.BitstreamError as e:
        assert name in str(e)
    else:
        assert len(out) > 0


def test_corrupt_slice_data(tmp_path):
    """Damaged slice data: concealed by default (as many frames as PyAV gives), BitstreamError
    with the NAL index and byte offset when strict."""
    src = make_hevc("corrupt", frames=24, x265_params="bframes=3:scenecut=0", source="bikes", crf=24)
    nals = split_nals(src.read_bytes())
    slices = [i for i, n in enumerate(nals) if nal_type(n) < 32]
    victim = bytearray(nals[slices[5]])
    for j in range(len(victim) // 2, len(victim) // 2 + 8):
        victim[j] ^= 0x5A
    nals[slices[5]] = bytes(victim)
    path = tmp_path / "corrupt.hevc"
    path.write_bytes(join(nals))
    with av.open(str(path)) as c:
        n_pyav = sum(1 for _ in c.decode(video=0))
    with bitsr.open(path) as video:
        assert len(list(video)) == n_pyav
    with pytest.raises(bitsr.BitstreamError, match="corrupt.hevc") as e:
        list(bitsr.open(path, strict=True))
    assert e.value.nal_index is not None and e.value.byte_offset > 0
    with pytest.raises(bitsr.BitstreamError):
        list(bitsr.extract(path, strict=True))


def test_limits(tmp_path):
    src = make_hevc("plain", frames=4)
    mp4 = make_hevc("plain", frames=4, container="mp4")
    for path in (src, mp4):
        with pytest.raises(bitsr.LimitError, match=path.name):
            list(bitsr.open(path, max_dimension=128))
        with pytest.raises(bitsr.LimitError):
            list(bitsr.extract(path, max_luma_samples=176 * 144 - 1))
        assert len(list(bitsr.open(path, max_dimension=176, max_luma_samples=176 * 144))) == 4
    with pytest.raises(TypeError, match="max_frames"):
        bitsr.open(src, max_frames=3)
