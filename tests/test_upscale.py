"""bitsr.upscale end to end on made clips: frames, timestamps, sizes, audio/subtitle streams,
encoders, options, interruption and bad input."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av_clips import SUBTITLE_MS, SUBTITLE_TEXT, make_av_clip, stream_summary, subtitle_text, tiny_checkpoint
from streams import make_hevc

import bitsr
from bitsr.io.writer import StreamNote

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(device="cpu", preset="ultrafast", quiet=True)


def run_upscale(src, dst, scale=2, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StreamNote)
        return bitsr.upscale(src, dst, scale, str(tiny_checkpoint(scale)), **{**FAST, **kw})


def assert_same_video_timing(src_sum, out_sum, scale, size):
    fi, fo = src_sum["frames"], out_sum["frames"]
    assert len(fo["times"]) == len(fi["times"])
    assert fo["times"] == pytest.approx(fi["times"], abs=1e-4)
    assert fo["sizes"] == {(size[0] * scale, size[1] * scale)}
    assert fo["rate"] == fi["rate"]


def assert_audio_copied(src_sum, out_sum):
    ai, ao = src_sum["audio"], out_sum["audio"]
    assert ao["codec"] == ai["codec"]
    assert ao["packets"] == ai["packets"]
    assert ao["times"] == pytest.approx(ai["times"], abs=1e-4)
    assert sum(ao["durations"]) == pytest.approx(sum(ai["durations"]), abs=2e-3)  # ms-rounded in MKV


@pytest.mark.parametrize("scale", [2, 4])
def test_mp4_with_aac_and_mov_text(tmp_path, scale):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    out = run_upscale(src, tmp_path / "out.mp4", scale=scale)
    assert out == tmp_path / "out.mp4"
    si, so = stream_summary(src), stream_summary(out)
    assert_same_video_timing(si, so, scale, (96, 64))
    assert so["video"]["codec"] == "hevc"
    assert_audio_copied(si, so)
    texts = [(t, subtitle_text(p, "mov_text")) for t, p in zip(so["subtitle"]["times"], so["subtitle"]["payloads"])]
    assert (SUBTITLE_MS[0] / 1000, SUBTITLE_TEXT) in [(pytest.approx(t, abs=1e-3), x) for t, x in texts]


def test_mkv_opus_srt_to_mp4_converts_subtitles(tmp_path):
    src = make_av_clip("up_mkv", container="mkv", audio="libopus")
    with pytest.warns(StreamNote, match="converted to mov_text"):
        out = bitsr.upscale(src, tmp_path / "o.mp4", scale=2, model=str(tiny_checkpoint(2)), **FAST)
    si, so = stream_summary(src), stream_summary(out)
    assert_same_video_timing(si, so, 2, (96, 64))
    assert_audio_copied(si, so)
    assert so["audio"]["codec"] == "opus"
    i = [subtitle_text(p, "mov_text") for p in so["subtitle"]["payloads"]].index(SUBTITLE_TEXT)
    assert so["subtitle"]["codec"] == "mov_text"
    assert so["subtitle"]["durations"][i] == pytest.approx((SUBTITLE_MS[1] - SUBTITLE_MS[0]) / 1000, abs=1e-3)


def test_mp4_to_mkv_keeps_av_offset(tmp_path):
    # Matroska cannot store the AAC priming's negative time: everything shifts, sync must not.
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    out = run_upscale(src, tmp_path / "o.mkv", scale=2)
    si, so = stream_summary(src), stream_summary(out)
    shift = so["frames"]["times"][0] - si["frames"]["times"][0]
    assert [t - shift for t in so["frames"]["times"]] == pytest.approx(si["frames"]["times"], abs=2e-3)
    assert [t - shift for t in so["audio"]["times"]] == pytest.approx(si["audio"]["times"], abs=2e-3)
    assert so["subtitle"]["codec"] in ("subrip", "srt")  # FFmpeg's decoder name for it is 'srt'
    assert [subtitle_text(p, "subrip") for p in so["subtitle"]["payloads"]] == [SUBTITLE_TEXT]


def test_variable_frame_rate_timestamps_survive(tmp_path):
    pts = [0, 40, 80, 200, 240, 250, 260, 400, 440, 480, 1000, 1040]  # ms, irregular
    src = make_av_clip("up_vfr", frames=len(pts), container="mkv", audio="aac", pts=pts,
                       time_base=Fraction(1, 1000), x265_params="bframes=2")
    for ext in ("mkv", "mp4"):
        out = run_upscale(src, tmp_path / f"o.{ext}", scale=2)
        so = stream_summary(out)
        assert so["frames"]["times"] == pytest.approx([p / 1000 for p in pts], abs=1e-4), ext


def test_h264_input(tmp_path):
    src = make_av_clip("up_h264", container="mp4", audio="aac", codec="libx264")
    si = stream_summary(src)
    assert si["video"]["codec"] == "h264"
    so = stream_summary(run_upscale(src, tmp_path / "o.mp4", scale=2))
    assert_same_video_timing(si, so, 2, (96, 64))
    assert_audio_copied(si, so)
    assert so["video"]["codec"] == "hevc"


def test_raw_hevc_gets_nominal_rate(tmp_path):
    src = make_hevc("up_raw", frames=10, width=64, height=48, container="hevc", x265_params="bframes=3")
    out = run_upscale(src, tmp_path / "o.mp4", scale=2)
    so = stream_summary(out)
    assert so["frames"]["times"] == pytest.approx([i / 25 for i in range(10)], abs=1e-4)
    assert so["frames"]["sizes"] == {(128, 96)}
    assert set(so) == {"video", "frames"}


def test_audio_transcoded_when_container_cannot_hold_it(tmp_path):
    src = make_av_clip("up_pcmu8", container="mkv", audio="pcm_u8", subtitles=False)
    with pytest.warns(StreamNote, match="transcoded to AAC"):
        out = bitsr.upscale(src, tmp_path / "o.mp4", scale=2, model=str(tiny_checkpoint(2)), **FAST)
    si, so = stream_summary(src), stream_summary(out)
    assert so["audio"]["codec"] == "aac"
    # Same audio span (AAC frames are 1024 samples, priming aside).
    assert so["audio"]["times"][-1] + so["audio"]["durations"][-1] == pytest.approx(
        si["audio"]["times"][-1] + si["audio"]["durations"][-1], abs=0.05)
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples >= round(sum(si["audio"]["durations"]) * 48000)


def test_libx264_encoder_and_frames_match_upscaler(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    seen = []
    out = run_upscale(src, tmp_path / "o.mp4", scale=2, encoder="libx264", crf=0,
                      on_frame=lambda i, hr: seen.append(hr.copy()))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        dec = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(dec) == len(seen) == 20
    # crf 0 is lossless in YUV, and 4:2:0 keeps luma at full resolution: the luma of each
    # decoded frame matches the frame the upscaler returned (not a neighbour).
    luma = lambda x: x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    err = lambda a, b: abs(luma(a) - luma(b)).mean()  # noqa: E731
    for i, b in enumerate(dec):
        assert err(seen[i], b) < 1.5, i
        assert all(err(seen[i], b) <= err(seen[j], b) + 0.05 for j in (i - 1, i + 1) if 0 <= j < len(seen)), i


def test_default_output_name_and_max_frames(tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(make_av_clip("up_mp4", container="mp4", audio="aac").read_bytes())
    out = run_upscale(src, None, scale=2, max_frames=7)
    assert out == tmp_path / "clip_x2.mp4"
    so = stream_summary(out)
    assert len(so["frames"]["times"]) == 7
    # Stopped early: the audio stops with the video (within one AAC frame and the mux margin).
    assert so["audio"]["times"][-1] <= so["frames"]["times"][-1] + 0.05


@pytest.mark.parametrize("n", [1, 2, 3])
def test_very_short_outputs(tmp_path, n):
    # x265 gives garbage DTS when it gets fewer frames than its B-frame delay.
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    so = stream_summary(run_upscale(src, tmp_path / "o.mp4", scale=2, max_frames=n))
    assert so["frames"]["times"] == pytest.approx([i / 25 for i in range(n)], abs=1e-4)


def test_threads_are_honoured_and_restored(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    before = torch.get_num_threads()
    seen = []
    run_upscale(src, tmp_path / "o.mp4", scale=2, threads=1, max_frames=2,
                on_frame=lambda i, hr: seen.append(torch.get_num_threads()))
    assert seen == [1, 1]
    assert torch.get_num_threads() == before


def test_tiled_equals_untiled_end_to_end(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    a, b = [], []
    run_upscale(src, tmp_path / "a.mp4", scale=2, max_frames=4, on_frame=lambda i, hr: a.append(hr.copy()))
    run_upscale(src, tmp_path / "b.mp4", scale=2, max_frames=4, tile=32, on_frame=lambda i, hr: b.append(hr.copy()))
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert abs(x.astype(int) - y.astype(int)).max() <= 1


def test_keyboard_interrupt_leaves_playable_file(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    dst = tmp_path / "o.mp4"

    def stop(i, hr):
        if i == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_upscale(src, dst, scale=2, on_frame=stop)
    so = stream_summary(dst)
    assert len(so["frames"]["times"]) == 5
    assert so["frames"]["times"] == pytest.approx([i / 25 for i in range(5)], abs=1e-4)
    assert so["audio"]["times"][-1] <= 5 / 25 + 0.05


_SIGNAL_SCRIPT = """
import os, signal, sys
# A shell starting the tests in the background may have set SIGINT to "ignore" (inherited).
signal.signal(signal.SIGINT, signal.default_int_handler)
import bitsr
from bitsr.cli.main import main
from bitsr.io import writer
n = 0
orig = writer.VideoWriter.write
def write(self, rgb, pts=None):
    global n
    orig(self, rgb, pts)
    n += 1
    if n == int(sys.argv[3]):
        os.kill(os.getpid(), getattr(signal, sys.argv[4]))
writer.VideoWriter.write = write
sys.exit(main(["upscale", sys.argv[1], "-o", sys.argv[2], "--scale", "2", "--device", "cpu",
               "--preset", "ultrafast", "-q", "--model", sys.argv[5]]))
"""


def _cli_env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigint_in_cli_finishes_frame_and_exits_130(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    dst = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-c", _SIGNAL_SCRIPT, str(src), str(dst), "6", "SIGINT",
                        str(tiny_checkpoint(2))],
                       capture_output=True, text=True, env=_cli_env(), timeout=300)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines() == [f"bitsr upscale: interrupted; {dst} holds the frames done so far"]
    so = stream_summary(dst)
    assert len(so["frames"]["times"]) == 6
    assert so["audio"]["codec"] == "aac"


@pytest.mark.slow
def test_sigkill_leaves_decodable_fragments(tmp_path):
    src = make_av_clip("up_long", frames=100, container="mp4", audio="aac")
    dst = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-c", _SIGNAL_SCRIPT, str(src), str(dst), "80", "SIGKILL",
                        str(tiny_checkpoint(2))],
                       capture_output=True, text=True, env=_cli_env(), timeout=600)
    assert r.returncode == -9
    with av.open(str(dst)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n >= 25  # at least the first one-second fragment; the encoder still held the rest


def test_cli_subprocess(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    dst = tmp_path / "out.mp4"
    r = subprocess.run([sys.executable, "-m", "bitsr", "upscale", str(src), "-o", str(dst), "--scale", "4",
                        "--device", "cpu", "--preset", "ultrafast", "--model", str(tiny_checkpoint(4))],
                       capture_output=True, text=True, env=_cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "frame/s" in r.stderr  # tqdm progress with the rate
    # and what the compute policy did (auto on the CPU: each frame routed or uniform)
    note = [ln for ln in r.stderr.splitlines() if "note:" in ln and "compute: auto" in ln]
    assert len(note) == 1 and re.search(r"on \d+ of 20 frame\(s\)", note[0]), r.stderr
    so = stream_summary(dst)
    assert so["frames"]["sizes"] == {(384, 256)}
    assert len(so["frames"]["times"]) == 20
    assert so["audio"]["codec"] == "aac"


def _bad_inputs(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    empty = tmp_path / "empty.hevc"
    empty.write_bytes(b"")
    h264 = tmp_path / "h264.mp4"
    with av.open(str(h264), "w") as c:  # a video codec bitsr does not read
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            f = av.VideoFrame(64, 48, "yuv420p")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    good = make_av_clip("up_mp4", container="mp4", audio="aac")
    return {
        "missing": ([str(tmp_path / "nope.mp4")], "no such file"),
        "garbage": ([str(garbage)], ""),
        "empty": ([str(empty)], ""),
        "mpeg4": ([str(h264)], "HEVC"),
        "bad_ext": ([str(good), "-o", str(tmp_path / "x.avi")], "container"),
        "same_file": ([str(good), "-o", str(good)], "overwrite"),
        "no_folder": ([str(good), "-o", str(tmp_path / "nodir" / "x.mp4")], "output folder does not exist: "
                      + str(tmp_path / "nodir")),
        "empty_folder": ([str(tmp_path / "nodir")], "no video files in folder"),
    }


@pytest.mark.parametrize("case", ["missing", "garbage", "empty", "bad_ext", "same_file", "no_folder"])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, case):
    from bitsr.cli.main import main

    args, needle = _bad_inputs(tmp_path)[case]
    with pytest.raises(SystemExit) as e:
        main(["upscale", *args, "--device", "cpu", "-q", "--model", str(tiny_checkpoint(4))])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("bitsr upscale: error:"), lines
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not list(tmp_path.glob("*_x4.mp4"))


def test_cli_bad_input_subprocess(tmp_path):
    bad = tmp_path / "garbage.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(3000))
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.main", "upscale", str(bad), "--device", "cpu",
                        "--model", str(tiny_checkpoint(4))],
                       capture_output=True, text=True, env=_cli_env(), timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_api_argument_errors(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    with pytest.raises(FileNotFoundError, match="weights"):
        bitsr.upscale(src, tmp_path / "o.mp4", model="no-such-model", **FAST)
    with pytest.raises(ValueError, match="scale"):
        bitsr.upscale(src, tmp_path / "o.mp4", scale=5, **FAST)
    with pytest.raises(ValueError, match="encoder"):
        bitsr.upscale(src, tmp_path / "o.mp4", encoder="libvpx", **FAST)
    with pytest.raises(ValueError, match="overwrite"):
        bitsr.upscale(src, src, **FAST)
    with pytest.raises(FileNotFoundError):
        bitsr.upscale(tmp_path / "missing.mp4", **FAST)
    assert not (tmp_path / "o.mp4").exists()


_MEMORY_SCRIPT = """
import sys, json, warnings
import bitsr
rss = []
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
def sample(i, hr):
    if i % 50 == 0:
        rss.append(rss_mb())
warnings.simplefilter("ignore")
bitsr.upscale(sys.argv[1], sys.argv[2], scale=2, model=sys.argv[3], device="cpu", preset="ultrafast", quiet=True,
              on_frame=sample)
print(json.dumps(rss))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for RSS")
def test_memory_flat_on_long_clip(tmp_path):
    import json

    src = make_av_clip("up_long", frames=800, width=96, height=64, container="mkv", audio="aac",
                       x265_params="bframes=3")
    r = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(src), str(tmp_path / "o.mp4"),
                        str(tiny_checkpoint(2))],
                       capture_output=True, text=True, env=_cli_env(), timeout=1800)
    assert r.returncode == 0, r.stderr
    rss = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(rss) == 16
    # Allocator pools and caches settle over the first few hundred frames (a few MB); after that
    # the resident size must not follow the frame count. Over the last 400 frames the fitted
    # trend must stay under 3 MB; keeping one 192x128 HR frame per frame would add 29 MB.
    ys = np.array(rss[8:])
    xs = np.arange(len(ys)) * 50.0
    assert np.polyfit(xs, ys, 1)[0] * 400 < 3, rss
    assert max(rss[1:]) - min(rss[1:]) < 30, rss
    assert len(stream_summary(tmp_path / "o.mp4")["frames"]["times"]) == 800


def test_names_upscale_and_upscaler():
    # bitsr is a plain module whose upscale is the function (Upscaler lives in bitsr.upscaler),
    # and importing bitsr alone does not pull in torch.
    code = ("import sys, types, bitsr; assert 'torch' not in sys.modules; "
            "assert type(sys.modules['bitsr']) is types.ModuleType; "
            "from bitsr.upscaler import Upscaler; "
            "assert callable(bitsr.upscale) and bitsr.Upscaler is Upscaler; "
            "assert 'bitsr.upscale' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr


def test_bidirectional_model_file_mode_and_streaming(tmp_path):
    src = make_av_clip("up_mp4", container="mp4", audio="aac")
    ck = str(tiny_checkpoint(2, bidirectional=True))
    got = {}
    for streaming in (False, True):
        seen = got[streaming] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StreamNote)
            out = bitsr.upscale(src, tmp_path / f"o{int(streaming)}.mp4", 2, ck, streaming=streaming,
                                on_frame=lambda i, hr, seen=seen: seen.append(hr.copy()), **FAST)
        assert_same_video_timing(stream_summary(src), stream_summary(out), 2, (96, 64))
    up = bitsr.Upscaler(scale=2, model=ck, device="cpu")
    assert all(np.array_equal(a, b) for a, b in zip(got[False], up.frames(src), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(got[True], up.frames(src, streaming=True), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(got[False], got[True]))
