"""Checkpoints: one safetensors file holding the trainable weights and, in its metadata, the JSON config, the
training provenance and metrics. Loading never unpickles. The frozen backbone is not stored: its name and weights
hash are, and loading checks the installed weights against that hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from model.errors import CheckpointError
from model.r3d import R3D, R3DConfig
from rgbd.files import write_bytes_atomic

FORMAT = "r3d-checkpoint"
VERSION = 1
_BACKBONE_PREFIX = "frame_encoder.backbone."


def save_checkpoint(
    path: str | Path, model: R3D, *, provenance: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
) -> Path:
    """Write the model's trainable weights, config, provenance and metrics atomically to `path`."""
    tensors = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(_BACKBONE_PREFIX)
    }
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "config": json.dumps(model.cfg.to_dict()),
        "provenance": json.dumps(provenance or {}),
        "metrics": json.dumps(metrics or {}),
    }
    path = Path(path)
    write_bytes_atomic(path, save(tensors, metadata=metadata))
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata (format, version, config, provenance, metrics) of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot read checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint (corrupt or truncated): {exc}") from exc
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, got {raw.get('format')!r}")
    if raw.get("version") != str(VERSION):
        raise CheckpointError(f"{path}: unknown checkpoint version {raw.get('version')!r}; this build reads {VERSION}")
    try:
        meta = {k: json.loads(raw[k]) for k in ("config", "provenance", "metrics")}
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: metadata is missing or not JSON ({exc})") from exc
    return tensors, {"format": FORMAT, "version": VERSION, **meta}


def load_checkpoint(
    path: str | Path, *, with_backbone: bool = True, backbone_weights: str | Path | None = None
) -> tuple[R3D, dict[str, Any]]:
    """Rebuild a model from a checkpoint; returns it in eval mode and the checkpoint's metadata."""
    tensors, meta = read_checkpoint(path)
    cfg = R3DConfig.from_dict(meta["config"])
    expected_hash = cfg.backbone_weights_sha256
    cfg.backbone_weights_sha256 = ""  # so the model fills in the hash of the weights installed here
    model = R3D(cfg, with_backbone=with_backbone, backbone_weights=backbone_weights)
    installed_hash = model.cfg.backbone_weights_sha256
    if with_backbone and expected_hash and installed_hash != expected_hash:
        raise CheckpointError(
            f"{path}: trained on {cfg.backbone} weights with SHA-256 {expected_hash[:12]}..., "
            f"but the installed weights hash to {installed_hash[:12]}...; install the same weights"
        )
    model.cfg.backbone_weights_sha256 = expected_hash
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(_BACKBONE_PREFIX)}
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture: missing {missing}, unexpected {unexpected}"
        )
    for k, v in tensors.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{path}: tensor {k!r} has shape {tuple(v.shape)}, architecture expects {tuple(own[k].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    return model.eval(), meta
