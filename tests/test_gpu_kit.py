"""tools/gpu_kit.py: the kit packed here trains end to end (on the CPU, as the check before a
GPU lease) and brings back weights that bitsr loads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tool_scripts import load_tool
from vsr_fixtures import tiny_set  # noqa: F401

pytest.importorskip("torch")


def test_pack_then_run_on_cpu(tiny_set, tmp_path):
    import torch

    from bitsr.data.cache import decode_rgb
    from bitsr.models import build_model
    from bitsr.models.checkpoint import CKPT_FORMAT, load_checkpoint, save_checkpoint

    kit_tool = load_tool("gpu_kit")
    model = {"type": "BitVSR", "scale": 4, "channels": 8, "branch_blocks": [1, 1, 2]}
    cfg = {"name": "kit", "model": model,
           "data": {"root": "unused", "num_frames": 3, "patch": 32, "batch_size": 2, "workers": 0}}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "init.pt", {"format": CKPT_FORMAT, "config": cfg,
                                           "model": build_model(model).state_dict()})
    kit = tmp_path / "kit"
    assert kit_tool.main(["pack", "--data", str(tiny_set), "--init", str(tmp_path / "init.pt"), "--out", str(kit),
                          "--hr-crf", "12", "--no-wheel", "-q"]) == 0
    man = json.loads((kit / "data" / "manifest.json").read_text())
    src = json.loads((Path(tiny_set) / "manifest.json").read_text())
    assert set(man["items"]) == {k for k, e in src["items"].items() if e["scale"] == 4}
    for e in man["items"].values():  # LR bitstreams as they are; HR lossy but close, same frames
        assert (kit / "data" / e["lr"]).read_bytes() == (Path(tiny_set) / e["lr"]).read_bytes()
        a, b = decode_rgb(str(Path(tiny_set) / e["hr"])), decode_rgb(str(kit / "data" / e["hr"]))
        assert a.shape == b.shape
        assert 10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)) > 35

    out = tmp_path / "out"
    assert kit_tool.main(["run", "--device", "cpu", "--minutes", "0.25", "--margin", "0", "--kit", str(kit),
                          "--config", str(tmp_path / "kit.yaml"), "--workers", "0", "--out", str(out),
                          "--set", "train.log_every=1", "--set", "train.ema=0.9"]) == 0
    ck = load_checkpoint(out / "best.pt")
    assert load_checkpoint(out / "ema.pt")["iter"] == ck["iter"]  # the moving average comes back too
    assert ck["iter"] >= 1 and "optimizer" not in ck
    assert ck["config"]["data"]["root"] == str(kit / "data")
    net = build_model(ck["config"]["model"])
    net.load_state_dict(ck["model"])
    assert any(not torch.equal(v, torch.load(tmp_path / "init.pt", weights_only=True)["model"][k])
               for k, v in ck["model"].items())  # it trained
    rows = (out / "train.csv").read_text().splitlines()
    assert rows[0].startswith("iter,loss") and len(rows) - 1 == ck["iter"]
    assert "stopped at iteration" in (out / "gpu_kit.log").read_text()
