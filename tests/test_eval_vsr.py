"""tools/eval_vsr.py: the evaluation matrix (tables, JSON, plot), on fabricated results and on a
quick real subset with the shipped weights."""
from __future__ import annotations

import json

import pytest
from tool_scripts import load_tool

from bitsr._paths import shared_dir


def _tool():
    return load_tool("eval_vsr")


def _fake(ev, scale=4):
    rows = ["bicubic", ev.MODEL, ev.UNIFORM]
    cells = {}
    for enc in ("x265-default", "x264-default"):
        for crf in (20, 35):
            c = {"bicubic": {"psnr": 25.0, "ssim": 0.7, "gain_psnr": 0.0, "gain_ssim": 0.0, "ms_per_frame": 20.0}}
            c[ev.MODEL] = {"psnr": 25.5, "ssim": 0.72, "gain_psnr": 0.5, "gain_ssim": 0.02, "ms_per_frame": 60.0,
                           "gflops_per_frame": 4.0, "tile_share": {"branch": [0.5, 0.2, 0.2], "reused": 0.1},
                           "vs_uniform": {"flops_saved": 0.4, "cpu_saved": 0.1, "psnr_change": -0.05, "ssim_change": 0}}
            c[ev.UNIFORM] = {"psnr": 25.55, "ssim": 0.72, "gain_psnr": 0.55, "gain_ssim": 0.02, "ms_per_frame": 66.0,
                             "gflops_per_frame": 6.7}
            cells[f"{enc}/crf{crf}"] = c
    summary = {r: {"params": 0 if r == "bicubic" else 1000, "mean_psnr": 25.0, "mean_ssim": 0.7,
                   "mean_gain_psnr": 0.5 if r != "bicubic" else 0.0, "mean_gain_ssim": 0.01,
                   "mean_gflops_per_frame": None if r == "bicubic" else 4.0, "mean_ms_per_frame": 50.0} for r in rows}
    return {"scale": scale, "rows": rows, "cells": cells, "summary": summary,
            "flow_ms_per_frame": {"x265-default": {"mv": 0.5, "dis": 2.0}}}


def test_tables_and_plot(tmp_path):
    ev = _tool()
    args = ev.build_parser().parse_args(["--clips", "calendar", "city"])
    res = _fake(ev)
    table = ev.format_tables(res, args)
    lines = table.splitlines()
    assert any(line.startswith("bicubic") and "25.00" in line for line in lines)
    model = [line for line in lines if line.startswith(ev.MODEL)]
    assert len(model) == 2 and model[0].split()[3:7] == ["+0.50"] * 4  # Y-PSNR gains per cell
    assert any(line.startswith("FLOPs saved %") and line.split()[3:] == ["40.0"] * 4 for line in lines)
    assert "x265-default" in table and "CRF20" in table and "CRF35" in table
    png = tmp_path / "gain.png"
    msg = ev.plot({"4": res, "2": _fake(ev, 2)}, str(png))
    if msg is None:
        assert png.stat().st_size > 1000
    else:
        assert "matplotlib" in msg


def test_options():
    ev = _tool()
    a = ev.build_parser().parse_args(["--scale", "2", "--scale", "4", "--crf", "25"])
    assert a.scale == [2, 4] and a.crf == [25.0]
    assert ev.build_parser().parse_args(["--scale", "2", "4"]).scale == [2, 4]
    a = ev.build_parser().parse_args([])
    assert a.clips == ["calendar", "city", "sam2_bedroom", "intel_car-detection"]
    assert a.encodings == ["x265-default", "x265-ldp", "x264-default"] and a.crf == [20, 25, 30, 35]
    assert ev.parse_weights(["4=a.pt", "default", "2=b.pt"]) == ({4: "a.pt", 2: "b.pt"}, ["default"])
    tags = {enc: f(25).tag for enc, f in ev.ENCODINGS.items()}
    assert tags == {"x265-default": "crf25_x265_medium", "x265-ldp": "crf25_ldp_k32_medium",
                    "x264-default": "crf25_x264_medium"}


@pytest.mark.skipif(shared_dir() is None or not (shared_dir() / "video" / "vid4" / "calendar.mkv").is_file(),
                    reason="shared Vid4 clips not found (set BITSR_SHARED or place them at ../shared)")
def test_quick_subset_end_to_end(tmp_path):
    ev = _tool()
    out = tmp_path / "ev.json"
    rc = ev.main(["--weights", "default", "--scale", "4", "--clips", "calendar", "--crf", "30",
                  "--encodings", "x264-default", "--max-frames", "3", "--flops-frames", "1",
                  "--data", str(tmp_path / "val"), "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    res = r["results"]["4"]
    cell = res["cells"]["x264-default/crf30"]
    assert set(cell) == set(res["rows"]) and res["rows"][:2] == ["bicubic", ev.MODEL] and len(res["rows"]) == 9
    assert cell["bicubic"]["per_clip"]["calendar"]["frames"] == 3
    assert cell[ev.MODEL]["gain_psnr"] > 0.1  # the shipped model beats bicubic on compressed H.264 too
    assert cell[ev.MODEL]["gflops_per_frame"] > 0 and "flops_saved" in cell[ev.MODEL]["vs_uniform"]
    # auto: every frame either routed or uniform; H.264's 16x16 macroblocks save too little
    # at these thresholds to be routed, and then it is uniform compute exactly
    auto = cell[ev.AUTO]
    assert 0 <= auto["tile_share"]["routed_frames"] <= 1 and "cpu_saved" in auto["vs_uniform"]
    if auto["tile_share"]["routed_frames"] == 0:
        assert auto["psnr"] == pytest.approx(cell[ev.UNIFORM]["psnr"], abs=1e-6)
    assert "Y-PSNR" in res["table"] and (tmp_path / "val" / "calendar" / "x4" / "crf30_x264_medium.mp4").is_file()
