"""Training configs: YAML files merged over defaults, with ``key.sub=value`` overrides."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``5e-4`` (no dot) is a string; read it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _yaml(text):
    return yaml.load(text, Loader=_Loader)

DEFAULTS: dict = {
    "name": "bitvsr",
    "seed": 0,
    "out_dir": None,  # default: runs/<name>
    "model": {"type": "BitVSR", "scale": 4},
    "data": {
        "root": None,
        "align": "mv",
        "num_frames": 7,
        "patch": 64,
        "grid": None,  # crop offsets are multiples of this; default: the model's tile
        "batch_size": 8,  # per process
        "workers": 1,
        "augment": True,
        "include": None,
        "exclude": None,
        "tags": None,
        "crf_boost": None,  # [min_crf, factor]: encodings at min_crf or above drawn factor times as often
    },
    "val": {
        "root": None,  # no validation when None
        "include": None,
        "tags": None,
        "max_frames": 0,
        "border": None,  # default: the scale
        "every": 1000,
    },
    "train": {
        "iters": 10000,
        "max_minutes": 0,  # > 0: stop after this much training time, the cosine decay spread over it
        "lr": 5e-4,
        "betas": [0.9, 0.99],
        "eta_min": 1e-6,
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "charbonnier_eps": 1e-3,
        "ema": 0.0,  # > 0: also keep an exponential moving average of the weights (decay), saved as ema.pt
        "amp": True,  # fp16 on CUDA, bf16 on CPUs with native bf16
        "device": "auto",
        "log_every": 20,
        "ckpt_every": 500,
        "tensorboard": False,
        "threads": 0,  # torch threads per process; 0 = leave the default
    },
}


def _merge(base: dict, over: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base and path not in ("model.",):
            raise ValueError(f"unknown config key {path}{k!r}")
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, f"{path}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict, overrides) -> dict:
    """``["train.iters=100", "model.reuse=false"]`` (values parsed as YAML)."""
    cfg = copy.deepcopy(cfg)
    for ov in overrides or ():
        if "=" not in ov:
            raise ValueError(f"override {ov!r} is not KEY=VALUE")
        key, val = ov.split("=", 1)
        parts = key.strip().split(".")
        d = cfg
        for p in parts[:-1]:
            if not isinstance(d.get(p), dict):
                raise ValueError(f"unknown config key {key!r}")
            d = d[p]
        if parts[-1] not in d and parts[0] != "model":
            raise ValueError(f"unknown config key {key!r}")
        d[parts[-1]] = _yaml(val)
    return cfg


def _read(path: Path, depth: int = 0) -> dict:
    """A YAML config; ``base: other.yaml`` (relative to this file) is read first and this
    file's values override it."""
    if not path.is_file():
        raise FileNotFoundError(2, "no such config file", str(path))
    with open(path) as f:
        raw = _yaml(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if depth > 8:
        raise ValueError(f"{path}: 'base' chain too deep")
    return _deep_update(_read((path.parent / base).resolve(), depth + 1), raw)


def _deep_update(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_config(path=None, overrides=None) -> dict:
    raw = _read(Path(path)) if path is not None else {}
    cfg = _merge(DEFAULTS, raw)
    cfg = apply_overrides(cfg, overrides)
    if cfg["out_dir"] is None:
        cfg["out_dir"] = str(Path("runs") / cfg["name"])
    if cfg["data"]["root"] is None:
        raise ValueError("config: data.root (a folder made by 'bitsr prepare') is required")
    return cfg
