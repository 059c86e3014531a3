from __future__ import annotations

import pytest
import torch

from model import FUSIONS, R3D, ConfigError, WindowTooLongError
from tests.model.conftest import random_inputs, tiny_config


def test_frame_by_frame_encoding_then_anticipator_equals_batched_forward(r3d_model: R3D) -> None:
    images, depths = random_inputs(2, 9)
    valid = torch.ones(2, 9, dtype=torch.bool)
    with torch.no_grad():
        batched = r3d_model(images, depths, valid)
        window = [
            torch.stack([r3d_model.frame_encoder(images[b, t : t + 1], depths[b, t : t + 1])[0] for t in range(9)])
            for b in range(2)
        ]  # each (T, 2, C), as a streaming session buffers them
        streamed = r3d_model.anticipator(torch.stack(window), valid)
    for got, want in zip(streamed, batched, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("selection", ["gamma", "variance"])
def test_padding_a_batch_leaves_unpadded_outputs_unchanged(fusion: str, selection: str) -> None:
    torch.manual_seed(1)
    model = R3D(tiny_config(fusion=fusion, selection=selection), with_backbone=False).eval()
    feats = torch.randn(2, 12, 1280)
    depths = torch.rand(2, 12, 1, 24, 32)
    short = 7
    with torch.no_grad():
        alone = model.forward_features(feats[:1, :short], depths[:1, :short], torch.ones(1, short, dtype=torch.bool))
        valid = torch.ones(2, 12, dtype=torch.bool)
        valid[0, short:] = False
        padded_feats = feats.clone()
        padded_feats[0, short:] = 1e3  # garbage in the padding must not leak
        padded = model.forward_features(padded_feats, depths, valid)
    torch.testing.assert_close(padded.action_logits[:1], alone.action_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.duration_logits[:1], alone.duration_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.segment_logits[:1, :short], alone.segment_logits, atol=1e-5, rtol=1e-5)


def test_training_batchnorm_statistics_ignore_padded_frames() -> None:
    torch.manual_seed(2)
    model = R3D(tiny_config(), with_backbone=False).train()
    feats, depths = torch.randn(2, 10, 1280), torch.rand(2, 10, 1, 24, 32)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 4:] = False
    model.forward_features(feats, depths, valid)
    bn = model.anticipator.fuser.bn_rgb
    assert bn.running_mean is not None
    first = bn.running_mean.clone()
    bn.running_mean.zero_()
    assert bn.running_var is not None
    bn.running_var.fill_(1.0)
    feats[1, 4:] = 1e4
    model.forward_features(feats, depths, valid)
    torch.testing.assert_close(bn.running_mean, first)


def test_window_longer_than_positional_table_raises_clear_error(r3d_model: R3D) -> None:
    tokens = torch.zeros(1, 65, 2, 128)
    with pytest.raises(WindowTooLongError, match="65 frames exceeds the positional table \\(64\\)"):
        r3d_model.anticipator(tokens, torch.ones(1, 65, dtype=torch.bool))


def test_window_at_positional_table_size_runs(r3d_model: R3D) -> None:
    with torch.no_grad():
        out = r3d_model.anticipator(torch.randn(1, 64, 2, 128), torch.ones(1, 64, dtype=torch.bool))
    assert out.segment_logits.shape == (1, 64, 3)
    assert out.action_logits.shape == (1, 8, 4)  # three classes + NONE


def test_config_collects_every_problem_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(fusion="sum", exchange_ratio=1.5, classes=["a", "a"])
    message = str(err.value)
    assert "fusion" in message and "exchange_ratio" in message and "classes" in message


def test_config_refuses_window_longer_than_table() -> None:
    with pytest.raises(ConfigError, match="window_s"):
        tiny_config(window_s=10.0)  # 150 frames at 15 fps > max_len 64


def test_config_round_trips_through_dict() -> None:
    cfg = tiny_config(fusion="cen", exchange_ratio=0.3)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_temporal_encoder_switch_changes_memory() -> None:
    torch.manual_seed(3)
    on = R3D(tiny_config(), with_backbone=False).eval()
    off = R3D(tiny_config(temporal_encoder=False), with_backbone=False).eval()
    assert len(on.anticipator.encoder) == 2 and len(off.anticipator.encoder) == 0


def test_r3d_init_leaves_the_callers_config_unchanged() -> None:
    cfg = tiny_config()
    before = cfg.to_dict()
    model = R3D(cfg)
    assert cfg.to_dict() == before and cfg.backbone_weights_sha256 == ""
    assert model.cfg is not cfg and len(model.cfg.backbone_weights_sha256) == 64
