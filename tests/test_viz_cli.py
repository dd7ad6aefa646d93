"""bitsr-extract --flow / --json / --viz, and bitsr.viz: outputs agree with the library,
every option is documented, bad input is one line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from streams import make_hevc

from bitsr import iter_frames
from bitsr.cli.extract import build_parser
from bitsr.cli.extract import main as extract_main


@pytest.fixture(scope="module")
def stream():
    return make_hevc("viz-city", frames=6, width=176, height=144)


def test_help_documents_every_option(capsys):
    ap = build_parser()
    with pytest.raises(SystemExit):
        extract_main(["--help"])
    text = capsys.readouterr().out
    for action in ap._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings and action.help is None:
            pytest.fail(f"{action.option_strings} has no help")
    for word in ("--flow", "--json", "--viz", ".flo", "display order"):
        assert word in text


def test_flow_json_viz_outputs(stream, tmp_path):
    mmcv = pytest.importorskip("mmcv")
    out = tmp_path / "p.npz"
    js = tmp_path / "s.json"
    viz = tmp_path / "viz"
    rc = extract_main([str(stream), "-o", str(out), "--flow", "--flow-offsets=-1,2", "--json", str(js),
                       "--viz", str(viz), "-q"])
    assert rc == 0
    z = np.load(out)
    frames = list(iter_frames(stream, lookahead=2))
    n = len(frames)
    assert z["flow"].shape == (n, 2, 2, 144, 176) and z["flow_confidence"].shape == (n, 2, 144, 176)
    assert list(z["flow_offsets"]) == [-1, 2] and list(z["flow_poc"]) == [f.poc for f in frames]
    assert "pred_mode" in z.files  # the schema arrays are still there
    f3, c3 = frames[3].flow(2)
    np.testing.assert_array_equal(z["flow"][3, 1], f3)
    np.testing.assert_array_equal(z["flow_confidence"][3, 1], c3)
    flo = mmcv.flowread(str(tmp_path / "p.flo" / "000003_+2.flo"))
    np.testing.assert_array_equal(flo, np.moveaxis(f3, 0, -1))
    assert not z["flow"][0, 0].any()  # nothing before the first frame
    doc = json.loads(js.read_text())
    assert doc["stream"]["size"] == [176, 144] and len(doc["frames"]) == n
    fr = doc["frames"][2]
    m = fr["modes_pct"]
    assert abs(m["intra"] + m["inter"] + m["skip"] - 100) < 0.1
    assert doc["frames"][0]["type"] == "I" and doc["frames"][0]["modes_pct"]["intra"] == 100
    assert fr["mv"]["mean_px"] > 0 and set(fr["flow"]) == {"-1", "+2"}
    pngs = sorted(viz.glob("*.png"))
    assert len(pngs) == n and (viz / f"{stream.stem}_viz.mp4").stat().st_size > 0
    import cv2

    img = cv2.imread(str(pngs[2]))
    assert img.shape[0] == 2 * 4 * 144 and img.shape[1] == 2 * 4 * 176  # 2x2 panels, enlarged 4x


def test_json_to_stdout_without_npz(stream, tmp_path, capsys):
    rc = extract_main([str(stream), "--no-npz", "--json", "-", "-q", "--max-frames", "3"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["frames"]) == 3
    assert not list(tmp_path.iterdir())


def test_render_marks_structure(stream):
    from bitsr.viz import render

    frames = list(iter_frames(stream))
    import bitsr

    with bitsr.open(stream) as video:
        f = list(video)[2]
    flow, conf = f.flow(-1)
    img = render(f.rgb, f.priors, flow, conf, scale=2)
    assert img.shape == (2 * 2 * 144, 2 * 2 * 176, 3) and img.dtype == np.uint8
    part = img[: 2 * 144, : 2 * 176]
    # CU boundaries are drawn white where the CU-edge map says so
    e = f.maps(["cu_edges"])["cu_edges"]
    ys, xs = np.nonzero(e & 1)
    white = (part[ys * 2 + 1, xs * 2] == 255).all(axis=-1)
    assert white.mean() > 0.95
    assert frames[2].poc == f.poc


@pytest.mark.parametrize("args, msg", [
    (["missing.hevc"], "missing.hevc"),
    (["{s}", "--flow", "--flow-offsets", "0"], "--flow-offsets"),
    (["{s}", "--flow", "--flow-offsets", "a,b"], "--flow-offsets"),
    (["{s}", "--flow", "--flow-factor", "0"], "--flow-factor"),
    (["{s}", "--no-npz"], "--no-npz"),
    (["{s}", "--viz", "{f}"], "viz"),
])
def test_bad_input_one_line_exit_2(stream, tmp_path, args, msg):
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = [a.format(s=stream, f=afile) for a in args]
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.extract", *argv, "-q", "-o", str(tmp_path / "o.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and msg in lines[0], r.stderr
