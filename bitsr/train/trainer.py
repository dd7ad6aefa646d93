"""Training loop: Charbonnier loss, Adam + cosine schedule, validation on Y-PSNR/SSIM,
checkpoints and resume, CSV (and optional TensorBoard) logs, DDP through torchrun, AMP on CUDA.

Checkpoints hold only tensors and plain Python values, so ``torch.load(weights_only=True)``
reads them. ``last.pt`` can resume a run; ``best.pt`` (best validation PSNR, or the last
weights without validation) holds the config and weights only, for :class:`bitsr.Upscaler`.
With ``train.ema`` > 0, ``ema.pt`` holds the same for an exponential moving average of the
weights (kept by rank 0; DDP keeps the ranks' weights equal).
"""
from __future__ import annotations

import csv
import gc
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import VSRClipDataset, VSRTrainDataset, pixels_to_float
from ..models import build_model
from ..models.checkpoint import CKPT_FORMAT, load_checkpoint, load_grown, save_checkpoint
from ..models.precision import cpu_bf16
from .losses import CharbonnierLoss
from .validate import score_clip


class IterationSampler(Sampler):
    """Batches of sample ids for iterations [start, iters): id = (it * world + rank) * B + k, so
    every process sees distinct samples and a resumed run sees the same ones."""

    def __init__(self, start: int, iters: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.iters, self.batch, self.rank, self.world = start, iters, batch, rank, world

    def __iter__(self):
        for it in range(self.start, self.iters):
            base = (it * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.iters - self.start)


def _plain(x):
    """Config -> JSON-able plain values (YAML may give tuples etc.)."""
    return json.loads(json.dumps(x))


class Trainer:
    def __init__(self, cfg: dict, resume: str | None = None, progress: bool = True, init: str | None = None):
        self.cfg = cfg = _plain(cfg)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        tc, dc, mc = cfg["train"], cfg["data"], cfg["model"]
        dev = tc["device"]
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev == "cuda":
            dev = f"cuda:{self.local_rank}"
            torch.cuda.set_device(self.local_rank)
        self.device = torch.device(dev)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if tc["threads"]:
            torch.set_num_threads(int(tc["threads"]))
        self.main = self.rank == 0
        self.progress = progress and self.main
        seed = int(cfg["seed"])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # identical initial weights on every rank

        self.model = build_model(mc).to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # Routing may leave a branch without tiles in an iteration.
            self.net = DDP(self.model, device_ids=[self.local_rank] if self.device.type == "cuda" else None,
                           find_unused_parameters=bool(mc.get("routing", True)),
                           forward_sync_buffers=False)  # the only buffers are constants
        self.ema = None  # its first update copies the weights the run starts from (--init included)
        if float(tc["ema"]) > 0 and self.main:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(float(tc["ema"])),
                                     use_buffers=True)
        self.scale = self.model.scale
        self.bidirectional = bool(getattr(self.model, "bidirectional", False))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc["lr"], betas=tuple(tc["betas"]),
                                    weight_decay=tc["weight_decay"])
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, tc["iters"]),
                                                                eta_min=tc["eta_min"])
        # Mixed precision: fp16 with loss scaling on CUDA; bf16 on CPUs that compute it natively
        # (AVX-512 BF16 / AMX: about 2x faster convolutions), which needs no scaling.
        self.amp = bool(tc["amp"]) and self.device.type == "cuda"
        self.amp_dtype = torch.float16
        if bool(tc["amp"]) and self.device.type == "cpu" and cpu_bf16():
            self.amp, self.amp_dtype = True, torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda")
        self.loss_fn = CharbonnierLoss(tc["charbonnier_eps"])
        self.out = Path(cfg["out_dir"])
        self.iter = 0
        self.best = -math.inf
        if init and resume:
            raise ValueError("give either init (start from weights) or resume (continue a run), not both")
        if init:  # fine-tuning: the weights only, with a fresh optimizer and schedule
            ck = load_checkpoint(init, map_location=self.device)
            # a model grown from the weights (conditioning, a backward pass) starts where they were
            g = load_grown(self.model, ck["model"])
            if self.main and (g["grown"] or g["missing"]):
                print(f"init from {init}: {len(g['grown'])} parameter(s) grown, {len(g['missing'])} new",
                      file=sys.stderr)
        if resume:
            self._resume(resume)

        grid = dc["grid"] or getattr(self.model, "tile", 16)
        # Only rank 0 builds the caches (atomically); the others wait, then read them.
        if self.world > 1 and not self.main:
            dist.barrier()
        self.train_set = VSRTrainDataset(
            dc["root"], scale=self.scale, num_frames=dc["num_frames"], patch=dc["patch"], grid=grid,
            align=dc["align"], augment=dc["augment"], include=dc["include"], exclude=dc["exclude"],
            tags=dc["tags"], seed=seed, progress=self.progress, bidirectional=self.bidirectional,
            crf_boost=dc["crf_boost"], pixels_uint8=self.device.type == "cuda")
        vc = cfg["val"]
        self.val_set = None
        if vc["root"] and self.main:
            self.val_set = VSRClipDataset(vc["root"], scale=self.scale, align=dc["align"], include=vc["include"],
                                          tags=vc["tags"], max_frames=vc["max_frames"], progress=self.progress,
                                          bidirectional=self.bidirectional)
        if self.world > 1 and self.main:
            dist.barrier()
        # Building the caches decoded every clip: free what is left of those decoders (and
        # their FFmpeg threads) before DataLoader workers are forked from this process.
        gc.collect()

    # -- checkpoints ----------------------------------------------------------------------
    def _payload(self, full: bool) -> dict:
        p = {"format": CKPT_FORMAT, "config": self.cfg, "model": self.model.state_dict(), "iter": self.iter,
             "best_psnr": float(self.best)}
        if full:
            p.update(optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                     scaler=self.scaler.state_dict())
            if self.ema is not None:
                p["ema"] = self.ema.module.state_dict()
                p["ema_updates"] = int(self.ema.n_averaged)
        return p

    def _ema_payload(self) -> dict:
        return dict(self._payload(full=False), model=self.ema.module.state_dict(),
                    ema_decay=float(self.cfg["train"]["ema"]))

    def _resume(self, path: str) -> None:
        if path == "auto":
            cand = self.out / "last.pt"
            if not cand.is_file():
                return
            path = str(cand)
        ck = load_checkpoint(path, map_location=self.device)
        if "optimizer" not in ck:
            raise ValueError(f"{path}: holds weights only; resume needs last.pt")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.iter = int(ck["iter"])
        self.best = float(ck["best_psnr"])
        if self.ema is not None:
            if "ema" not in ck:
                raise ValueError(f"{path}: holds no moving average; resume it without train.ema")
            self.ema.module.load_state_dict(ck["ema"])
            self.ema.n_averaged.fill_(int(ck["ema_updates"]))
        if self.main:
            print(f"resumed from {path} at iteration {self.iter}", file=sys.stderr)

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> tuple[float, float]:
        vc = self.cfg["val"]
        border = self.scale if vc["border"] is None else int(vc["border"])
        self.model.eval()
        ps, ss = [], []
        for i in range(len(self.val_set)):
            _, t = self.val_set[i]
            p, s = score_clip(self.model, t, self.scale, border, device=self.device)
            ps.append(p)
            ss.append(s)
        self.model.train()
        return float(np.mean(ps)), float(np.mean(ss))

    # -- loop ---------------------------------------------------------------------------------
    def _log_rows(self, name: str, header, row) -> None:
        path = self.out / name
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(header)
            w.writerow(row)

    def train(self, until: int | None = None) -> dict:
        """Trains to ``train.iters`` (or stops early after iteration ``until``, saving last.pt,
        as an interrupted run would).

        With ``train.max_minutes`` > 0 the run also ends when that much time has passed since
        its first step (a GPU lease or a CPU session is counted in minutes, not iterations), and
        the cosine decay follows whichever is further along, the iterations or the clock, so a
        time-limited run still ends at ``eta_min``. Such a run cannot be resumed exactly."""
        tc, dc = self.cfg["train"], self.cfg["data"]
        iters = int(tc["iters"])
        stop = min(iters, int(until)) if until else iters
        budget = 60.0 * float(tc["max_minutes"] or 0)
        lr0, eta_min = float(tc["lr"]), float(tc["eta_min"])
        t_start = None
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "config.json", "w") as f:
                json.dump(self.cfg, f, indent=1)
        tb = None
        if tc["tensorboard"] and self.main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:
                print("tensorboard is not installed; logging to CSV only", file=sys.stderr)
        sampler = IterationSampler(self.iter, stop, dc["batch_size"], self.rank, self.world)
        workers = int(dc["workers"])
        loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers,
                            pin_memory=self.device.type == "cuda", persistent_workers=False,
                            prefetch_factor=2 if workers else None)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=iters, initial=self.iter, desc=self.cfg["name"], unit="it", file=sys.stderr,
                       dynamic_ncols=True)
        self.model.train()
        losses, t_last, first_loss, last_loss = [], time.perf_counter(), None, None
        for batch in loader:
            if t_start is None:  # the clock starts with the first batch (caches, workers, compilation before it)
                t_start = time.perf_counter()
            batch = pixels_to_float({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
            hr = batch.pop("hr")
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                out, _ = self.net(**batch)
                loss = self.loss_fn(out, hr)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if tc["grad_clip"]:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc["grad_clip"])
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.iter += 1
            timed_out = False
            if budget > 0:
                frac = (time.perf_counter() - t_start) / budget
                if self.world > 1:  # every rank ends on the same iteration
                    f = torch.tensor([frac], dtype=torch.float64, device=self.device)
                    dist.all_reduce(f, op=dist.ReduceOp.MAX)
                    frac = float(f)
                frac = max(frac, self.iter / iters)
                timed_out = frac >= 1.0
                for g in self.opt.param_groups:
                    g["lr"] = eta_min + (lr0 - eta_min) * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
            lv = float(loss.detach())
            losses.append(lv)
            first_loss = lv if first_loss is None else first_loss
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4f}")
            if self.main and (self.iter % tc["log_every"] == 0 or self.iter in (iters, stop) or timed_out):
                now = time.perf_counter()
                mean = float(np.mean(losses))
                last_loss = mean
                self._log_rows("train.csv", ["iter", "loss", "lr", "sec_per_iter"],
                               [self.iter, f"{mean:.6f}", f"{self.opt.param_groups[0]['lr']:.3e}",
                                f"{(now - t_last) / len(losses):.3f}"])
                if tb is not None:
                    tb.add_scalar("train/loss", mean, self.iter)
                    tb.add_scalar("train/lr", self.opt.param_groups[0]["lr"], self.iter)
                losses, t_last = [], now
            done = self.iter == iters or timed_out
            if self.val_set is not None and (self.iter % self.cfg["val"]["every"] == 0 or done):
                p, s = self.validate()
                self._log_rows("val.csv", ["iter", "psnr_y", "ssim_y"], [self.iter, f"{p:.4f}", f"{s:.5f}"])
                if tb is not None:
                    tb.add_scalar("val/psnr_y", p, self.iter)
                    tb.add_scalar("val/ssim_y", s, self.iter)
                if bar is not None:
                    bar.write(f"iter {self.iter}: val Y-PSNR {p:.3f} dB, SSIM {s:.4f}")
                if p > self.best:
                    self.best = p
                    save_checkpoint(self.out / "best.pt", self._payload(full=False))
            if self.main and (self.iter % tc["ckpt_every"] == 0 or done or self.iter == stop):
                save_checkpoint(self.out / "last.pt", self._payload(full=True))
                if self.val_set is None:
                    save_checkpoint(self.out / "best.pt", self._payload(full=False))
                if self.ema is not None:
                    save_checkpoint(self.out / "ema.pt", self._ema_payload())
            if timed_out:
                break
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
        if self.world > 1:
            dist.barrier()
        return {"iter": self.iter, "first_loss": first_loss, "last_loss": last_loss, "best_psnr": self.best}

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
