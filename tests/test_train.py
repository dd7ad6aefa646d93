"""Training: loss goes down, checkpoints load with weights_only and resume exactly, metrics,
configs, the CLI, and a 2-process gloo DDP run."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vsr_fixtures import tiny_set  # noqa: F401

from bitsr.train import CharbonnierLoss, Trainer, load_checkpoint, load_config, psnr_y, ssim_y
from bitsr.train.config import apply_overrides

ROOT = Path(__file__).resolve().parent.parent


def _cfg(tiny_set, out, **train):
    cfg = {
        "name": "tiny",
        "out_dir": str(out),
        "model": {"type": "BitVSR", "scale": 4, "channels": 8, "branch_blocks": [1, 1, 2]},
        "data": {"root": str(tiny_set), "num_frames": 3, "patch": 32, "batch_size": 2, "workers": 0},
        "val": {"root": str(tiny_set), "max_frames": 2, "every": 1000},
        "train": {"iters": 6, "lr": 2e-3, "log_every": 2, "ckpt_every": 3, **train},
    }
    import yaml

    p = Path(out).with_suffix(".yaml")
    p.write_text(yaml.safe_dump(cfg))
    return load_config(p)


def test_tiny_training_lowers_the_loss(tiny_set, tmp_path):
    cfg = _cfg(tiny_set, tmp_path / "run", iters=40, log_every=10)
    cfg["data"]["augment"] = False
    cfg["val"]["root"] = None
    tr = Trainer(cfg, progress=False)
    # The network starts as MATLAB bicubic plus a small residual, which a few iterations cannot
    # beat by much on this tiny set; start it from a noisy residual instead, so that the test
    # shows the optimisation working.
    with torch.no_grad():
        tr.model.upsample.conv.weight.normal_(0, 0.05)
    # the loss of a fixed batch before and after training
    batch = {k: v[None] for k, v in tr.train_set[0].items()}
    hr = batch.pop("hr")
    with torch.no_grad():
        before = float(tr.loss_fn(tr.model(**batch)[0], hr))
    res = tr.train()
    with torch.no_grad():
        after = float(tr.loss_fn(tr.model(**batch)[0], hr))
    assert res["iter"] == 40
    assert after < 0.85 * before, (before, after)
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert rows[0] == "iter,loss,lr,sec_per_iter" and len(rows) == 5


def test_checkpoints_resume_exactly(tiny_set, tmp_path):
    # fp32, as before CPU bf16 autocast existed: under bf16 a resumed run was seen to differ from
    # the continuous one beyond 1e-6 (a clean-clone CI run), and the resume is what is tested here
    full = Trainer(_cfg(tiny_set, tmp_path / "a", amp=False), progress=False)
    full.train()
    ref = {k: v.clone() for k, v in full.model.state_dict().items()}

    cfg = _cfg(tiny_set, tmp_path / "b", amp=False)
    Trainer(cfg, progress=False).train(until=4)  # an interrupted run
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=True)  # plain tensors and values only
    assert ck["iter"] == 4 and "optimizer" in ck and "scheduler" in ck
    resumed = Trainer(cfg, resume=str(tmp_path / "b" / "last.pt"), progress=False)
    assert resumed.iter == 4
    resumed.train()
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, ref[k], atol=1e-6), k
    best = load_checkpoint(tmp_path / "b" / "best.pt")
    assert "optimizer" not in best and best["config"]["model"]["channels"] == 8
    assert math.isfinite(best["best_psnr"])
    # auto-resume finds last.pt; a finished run does nothing more
    again = Trainer(cfg, resume="auto", progress=False)
    assert again.iter == 6 and again.train()["iter"] == 6
    with pytest.raises(ValueError):
        Trainer(cfg, resume=str(tmp_path / "b" / "best.pt"), progress=False)  # weights only


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert psnr_y(a, a) == float("inf") and math.isclose(ssim_y(a, a), 1.0)
    b = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    y = lambda x: 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0  # noqa: E731
    mse = np.mean((y(a.astype(float)) - y(b.astype(float)))[4:-4, 4:-4] ** 2)
    assert math.isclose(psnr_y(a, b, border=4), 10 * math.log10(255 ** 2 / mse), rel_tol=1e-9)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert ssim_y(a, noisy) < ssim_y(a, b) < 1
    # against a direct (non-separable) 2-D Gaussian-window SSIM
    ya, yn = y(a.astype(float))[4:-4, 4:-4], y(noisy.astype(float))[4:-4, 4:-4]
    ax = np.arange(11) - 5.0
    g = np.exp(-ax ** 2 / 4.5)
    w2 = np.outer(g, g) / np.outer(g, g).sum()
    win = np.lib.stride_tricks.sliding_window_view
    f = lambda z: np.einsum("ijkl,kl->ij", win(z, (11, 11)), w2)  # noqa: E731
    ma, mn = f(ya), f(yn)
    va, vn, cov = f(ya * ya) - ma ** 2, f(yn * yn) - mn ** 2, f(ya * yn) - ma * mn
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ref = np.mean(((2 * ma * mn + c1) * (2 * cov + c2)) / ((ma ** 2 + mn ** 2 + c1) * (va + vn + c2)))
    assert math.isclose(ssim_y(a, noisy, border=4), ref, rel_tol=1e-9)
    loss = CharbonnierLoss(1e-3)
    assert math.isclose(float(loss(torch.zeros(4), torch.zeros(4))), 1e-3, rel_tol=1e-6)


def test_config_base(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\ndata: {root: r, patch: 32}\nmodel: {type: BitVSR, channels: 8}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nname: b\nmodel: {reuse: false}\n")
    c = load_config(tmp_path / "sub" / "b.yaml")
    assert c["name"] == "b" and c["data"]["patch"] == 32 and c["data"]["root"] == "r"
    assert c["model"] == {"type": "BitVSR", "scale": 4, "channels": 8, "reuse": False}


def test_config_validation(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {root: x}\ntrain: {itres: 3}\n")
    with pytest.raises(ValueError, match="itres"):
        load_config(p)
    p.write_text("data: {root: x}\n")
    cfg = load_config(p, ["train.iters=7", "model.reuse=false", "data.tags=[a, b]"])
    assert cfg["train"]["iters"] == 7 and cfg["model"]["reuse"] is False and cfg["data"]["tags"] == ["a", "b"]
    assert cfg["out_dir"] == str(Path("runs") / "bitvsr")
    with pytest.raises(ValueError):
        apply_overrides(cfg, ["train.nope=1"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_exponent_floats_without_a_dot(tmp_path):
    # YAML 1.1 (PyYAML) reads 5e-4 as a string, which Adam then rejects
    p = tmp_path / "c.yaml"
    p.write_text("data: {root: x}\ntrain: {lr: 3e-4, eta_min: 1E-6}\n")
    cfg = load_config(p, ["train.charbonnier_eps=2e-3", "model.name=1e"])
    assert cfg["train"]["lr"] == 3e-4 and cfg["train"]["eta_min"] == 1e-6
    assert cfg["train"]["charbonnier_eps"] == 2e-3 and cfg["model"]["name"] == "1e"
    assert isinstance(apply_overrides(cfg, ["train.lr=1"])["train"]["lr"], int)


@pytest.mark.parametrize("cfg", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(cfg):
    c = load_config(cfg)
    assert c["model"]["type"] == "BitVSR"
    assert c["data"]["exclude"] is None or not ({"foliage", "walk"} & set(c["data"]["exclude"] or []))
    assert c["val"]["include"] is None or set(c["val"]["include"]) <= {"calendar", "city"}


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def test_init_starts_from_weights_with_a_fresh_schedule(tiny_set, tmp_path):
    first = Trainer(_cfg(tiny_set, tmp_path / "a"), progress=False)
    first.train()
    cfg = _cfg(tiny_set, tmp_path / "ft", iters=3)
    ft = Trainer(cfg, init=str(tmp_path / "a" / "best.pt"), progress=False)
    assert ft.iter == 0 and ft.sched.get_last_lr()[0] == cfg["train"]["lr"]
    for k, v in ft.model.state_dict().items():
        assert torch.equal(v, first.model.state_dict()[k]), k
    assert ft.train()["iter"] == 3
    with pytest.raises(ValueError, match="not both"):
        Trainer(cfg, init=str(tmp_path / "a" / "best.pt"), resume="auto", progress=False)


def test_cli_train(tiny_set, tmp_path):
    cfg = _cfg(tiny_set, tmp_path / "cli")
    p = tmp_path / "cli.yaml"
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.main", "train", str(p), "--set", "train.iters=2", "-q"],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (Path(cfg["out_dir"]) / "last.pt").is_file() and (Path(cfg["out_dir"]) / "val.csv").is_file()
    r = subprocess.run([sys.executable, "-m", "bitsr.cli.train", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_ddp_two_processes_gloo(tiny_set, tmp_path):
    """torchrun with 2 CPU processes: both ranks train on distinct samples and end with the
    same weights (gradients are all-reduced)."""
    cfg = _cfg(tiny_set, tmp_path / "ddp", iters=3)
    cfg_path = tmp_path / "ddp.yaml"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bitsr.cli.train", str(cfg_path), "-q", "--set", "val.root=null",
                        "--set", "train.ckpt_every=1"],
                       capture_output=True, text=True, env=_env(), timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = load_checkpoint(Path(cfg["out_dir"]) / "last.pt")
    assert ck["iter"] == 3
    # single-process run with the same per-process batch sees half the samples: weights differ
    single = Trainer(dict(cfg, out_dir=str(tmp_path / "single"), val=dict(cfg["val"], root=None)), progress=False)
    single.train()
    assert any(not torch.allclose(v, single.model.state_dict()[k]) for k, v in ck["model"].items())


def test_time_budget_ends_the_run_and_the_schedule(tiny_set, tmp_path, monkeypatch):
    """train.max_minutes: the run stops once its clock passes the budget, saves last.pt and
    best.pt there, and its cosine decay has reached eta_min by then (not by train.iters)."""
    import bitsr.train.trainer as trainer_mod

    clock = {"t": 0.0}

    def fake_clock():  # every call is 1 s later: deterministic whatever the machine's speed
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(trainer_mod.time, "perf_counter", fake_clock)
    cfg = _cfg(tiny_set, tmp_path / "t", iters=1000, log_every=1, ckpt_every=1000, max_minutes=0.1, eta_min=1e-6)
    cfg["val"]["root"] = None
    tr = Trainer(cfg, progress=False)
    res = tr.train()
    assert 1 < res["iter"] < 1000
    rows = [r.split(",") for r in (tmp_path / "t" / "train.csv").read_text().splitlines()[1:]]
    lrs = [float(r[2]) for r in rows]
    assert int(rows[-1][0]) == res["iter"]
    assert lrs[0] < cfg["train"]["lr"] and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-6)
    ck = load_checkpoint(tmp_path / "t" / "last.pt")
    assert ck["iter"] == res["iter"]
    assert (tmp_path / "t" / "best.pt").is_file()


def test_ema_averages_the_weights_of_every_iteration_and_resumes(tiny_set, tmp_path):
    """train.ema: ema.pt holds w1 after the first iteration, then d * ema + (1 - d) * w_k (the
    weights after each iteration, recorded here one iteration at a time), and a run resumed from
    last.pt continues the same average."""
    d = 0.5
    cfg = _cfg(tiny_set, tmp_path / "e", amp=False, ema=d, ckpt_every=1)
    cfg["val"]["root"] = None
    tr = Trainer(cfg, progress=False)
    expect = None
    for k in range(1, 5):
        tr.train(until=k)
        w = {n: v.detach().clone() for n, v in tr.model.state_dict().items()}
        expect = w if expect is None else {n: d * expect[n] + (1 - d) * w[n] for n in w}
    ema = load_checkpoint(tmp_path / "e" / "ema.pt")
    assert ema["iter"] == 4 and ema["ema_decay"] == d and "optimizer" not in ema
    moved = 0
    for n, v in ema["model"].items():
        assert torch.allclose(v.float(), expect[n].float(), atol=1e-6), n
        moved += not torch.allclose(v, w[n])
    assert moved > 0  # the average is not the last weights

    cont = Trainer(cfg, resume=str(tmp_path / "e" / "last.pt"), progress=False)
    cont.train(until=5)
    w5 = cont.model.state_dict()
    ema5 = load_checkpoint(tmp_path / "e" / "ema.pt")["model"]
    for n, v in ema5.items():
        assert torch.allclose(v.float(), (d * expect[n] + (1 - d) * w5[n]).float(), atol=1e-6), n
    with pytest.raises(ValueError, match="moving average"):  # a checkpoint of a run without it
        plain = _cfg(tiny_set, tmp_path / "p", amp=False)
        plain["val"]["root"] = None
        Trainer(plain, progress=False).train(until=1)
        Trainer(dict(plain, train=dict(plain["train"], ema=d)), resume=str(tmp_path / "p" / "last.pt"),
                progress=False)
