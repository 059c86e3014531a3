"""The resumable training state: one safetensors file (never pickle) written atomically after every epoch.

Tensors: `model.*` (every weight and buffer of the unwrapped model), `averaged.*` (the weight average, when the run
keeps one: optim.ema_decay), `optim.<param index>.<name>` (AdamW moments and step counters), `rng.torch` and
`rng.cuda.<i>`. Metadata (JSON strings): format, version, the completed epoch, the
global step, the optimiser's param groups and scalar state, and `info` (best metric, history, resolved config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from rgbd.files import write_bytes_atomic

STATE_FORMAT = "r3d-train-state"
STATE_VERSION = 1


def save_train_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    global_step: int,
    info: dict[str, Any],
    averaged: nn.Module | None = None,
) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if averaged is not None:
        tensors |= {f"averaged.{k}": v.detach().cpu().contiguous() for k, v in averaged.state_dict().items()}
    sd = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    metadata = {
        "format": STATE_FORMAT,
        "version": str(STATE_VERSION),
        "epoch": str(epoch),
        "global_step": str(global_step),
        "param_groups": json.dumps(sd["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "info": json.dumps(info),
    }
    write_bytes_atomic(path, save(tensors, metadata=metadata))


def read_train_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of a training-state file, with clear errors for foreign or corrupt files."""
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}; expected a run folder written by r3d-train")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable training state ({exc}); expected a safetensors file") from exc
    if raw.get("format") != STATE_FORMAT or raw.get("version") != str(STATE_VERSION):
        raise ValueError(
            f"{path}: expected {STATE_FORMAT} version {STATE_VERSION}, got {raw.get('format')!r} {raw.get('version')!r}"
        )
    meta = {
        "epoch": int(raw["epoch"]),
        "global_step": int(raw["global_step"]),
        "param_groups": json.loads(raw["param_groups"]),
        "optim_scalars": json.loads(raw["optim_scalars"]),
        "info": json.loads(raw["info"]),
    }
    return tensors, meta


def restore_train_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    restore_rng: bool = True,
    averaged: nn.Module | None = None,
) -> dict[str, Any]:
    """Load weights, optimiser state and RNG states saved by save_train_state; returns the metadata."""
    tensors, meta = read_train_state(path)
    for prefix, module in (("model.", model), ("averaged.", averaged)):
        if module is None:
            continue
        weights = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"{path} holds no {prefix.rstrip('.')} weights; expected a run that kept them")
        missing, unexpected = module.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: the saved {prefix.rstrip('.')} weights do not fit this configuration: missing {missing}, "
                f"unexpected {unexpected}"
            )
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, scalars in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        torch.set_rng_state(tensors["rng.torch"])
        keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        cuda = [tensors[k] for k in keys]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    return meta
