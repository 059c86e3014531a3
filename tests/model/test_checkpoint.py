from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from model import R3D, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from tests.model.conftest import random_inputs, tiny_config


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, r3d_model: R3D) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", r3d_model, provenance={"run": "t"}, metrics={"moc": 0.5})
    loaded, meta = load_checkpoint(path)
    images, depths = random_inputs(1, 4)
    valid = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        for a, b in zip(loaded(images, depths, valid), r3d_model(images, depths, valid), strict=True):
            torch.testing.assert_close(a, b)
    assert meta["provenance"] == {"run": "t"} and meta["metrics"] == {"moc": 0.5}
    assert meta["config"]["backbone"] == "efficientnet_lite0" and len(meta["config"]["backbone_weights_sha256"]) == 64


def test_checkpoint_excludes_frozen_backbone(tmp_path: Path, r3d_model: R3D) -> None:
    tensors, _ = read_checkpoint(save_checkpoint(tmp_path / "m.safetensors", r3d_model))
    assert not any(k.startswith("frame_encoder.backbone.") for k in tensors)
    assert "anticipator.fuser.rgb_channels" in tensors


def test_corrupt_checkpoint_is_refused(tmp_path: Path, r3d_model: R3D) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", r3d_model)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a valid safetensors checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")


def _rewrite(path: Path, tensors: dict[str, torch.Tensor], **metadata: str) -> None:
    path.write_bytes(save(tensors, metadata=metadata))


def test_unknown_version_is_refused(tmp_path: Path, r3d_model: R3D) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", r3d_model)
    tensors, meta = read_checkpoint(path)
    _rewrite(path, tensors, format="r3d-checkpoint", version="99", config=json.dumps(meta["config"]),
             provenance="{}", metrics="{}")  # fmt: skip
    with pytest.raises(CheckpointError, match="unknown checkpoint version '99'"):
        load_checkpoint(path)


def test_shape_mismatch_names_the_tensor(tmp_path: Path, r3d_model: R3D) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", r3d_model)
    tensors, meta = read_checkpoint(path)
    tensors["anticipator.action_head.weight"] = torch.zeros(7, 128)
    _rewrite(path, tensors, format="r3d-checkpoint", version="1", config=json.dumps(meta["config"]),
             provenance="{}", metrics="{}")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"'anticipator.action_head.weight' has shape \(7, 128\)"):
        load_checkpoint(path)


def test_backbone_hash_mismatch_is_refused(tmp_path: Path) -> None:
    model = R3D(tiny_config(backbone_weights_sha256="0" * 64))
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    with pytest.raises(CheckpointError, match="installed weights hash to"):
        load_checkpoint(path)


def test_checkpoint_is_not_a_pickle(tmp_path: Path, r3d_model: R3D) -> None:
    data = save_checkpoint(tmp_path / "m.safetensors", r3d_model).read_bytes()
    assert not data.startswith(b"\x80") and b"PK\x03\x04" not in data[:8]
