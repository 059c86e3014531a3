"""The depth encoders, the decoder's value positions, the positional initialisation and the logit temperatures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import R3D, ConfigError, load_checkpoint, save_checkpoint
from model.r3d import ActionDecoder, ConvDepthEncoder
from tests.model.conftest import random_inputs, tiny_config


def _room_like_depth(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Positive maps dominated by one shared 'room' image plus a small moving blob: the input that killed half of the
    paper branch's channels."""
    g = torch.Generator().manual_seed(seed)
    room = 0.5 + 0.3 * torch.rand(1, 1, *size, generator=g)
    return (room + 0.05 * torch.rand(n, 1, *size, generator=g)).clamp(0, 1)


def test_conv_depth_encoder_maps_depth_to_tokens_with_no_channel_dead_at_init() -> None:
    torch.manual_seed(0)
    encoder = ConvDepthEncoder(in_channels=1, c=32)
    tokens = encoder(_room_like_depth(64, (60, 80)))
    assert tokens.shape == (64, 32)
    assert int(((tokens != 0).any(dim=0) == 0).sum()) == 0  # every channel non-zero on some frame


def test_linear_depth_encoder_is_the_papers_linear_layernorm_relu() -> None:
    model = R3D(tiny_config(depth_encoder="linear"), with_backbone=False)
    kinds = [type(m).__name__ for m in model.frame_encoder.depth_proj]
    assert kinds == ["Flatten", "Linear", "LayerNorm", "ReLU"]
    assert model.frame_encoder.depth_proj[1].in_features == 24 * 32


@pytest.mark.parametrize("encoder", ["linear", "conv"])
def test_depth_encoder_choice_runs_the_full_model(encoder: str) -> None:
    torch.manual_seed(0)
    model = R3D(tiny_config(depth_encoder=encoder), with_backbone=False).eval()
    features = torch.randn(2, 5, model.cfg.feature_dim)
    _, depths = random_inputs(2, 5)
    out = model.forward_features(features, depths, torch.ones(2, 5, dtype=torch.bool))
    assert out.action_logits.shape == (2, 8, 4) and torch.isfinite(out.action_logits).all()


def test_config_refuses_unknown_depth_encoder_and_non_positive_temperatures() -> None:
    with pytest.raises(ConfigError, match=r"depth_encoder: expected one of \('linear', 'conv', 'person'\), got 'cnn'.*"
                       r"segment_temperature: expected a positive number, got 0"):  # fmt: skip
        tiny_config(depth_encoder="cnn", segment_temperature=0.0)


def test_decoder_without_value_positions_gives_every_query_one_state_and_with_them_distinct_states() -> None:
    """Cross-attention and FFN zeroed: what is left is self-attention over a zero target."""
    torch.manual_seed(0)
    states = {}
    for flag in (False, True):
        decoder = ActionDecoder(16, 4, 32, 0.0, 5, value_positions=flag).eval()
        with torch.no_grad():
            for module in (decoder.cross_attn.out_proj, decoder.ffn[-1]):
                module.weight.zero_()
                module.bias.zero_()
        memory = torch.randn(1, 7, 16)
        states[flag] = decoder(memory, torch.zeros(1, 7, 16), torch.zeros(1, 7, dtype=torch.bool))[0]  # (Q, C)
    assert torch.allclose(states[False], states[False][:1].expand_as(states[False]), atol=1e-6)
    assert torch.cdist(states[True], states[True]).max() > 0.1


def test_positional_table_starts_with_the_configured_std() -> None:
    torch.manual_seed(0)
    small = R3D(tiny_config(position_init_std=0.02), with_backbone=False)
    assert float(small.anticipator.positions.weight.detach().std()) == pytest.approx(0.02, rel=0.05)


def test_temperatures_divide_the_served_logits_and_survive_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = R3D(tiny_config(), with_backbone=False).eval()
    features = torch.randn(1, 6, model.cfg.feature_dim)
    _, depths = random_inputs(1, 6)
    valid = torch.ones(1, 6, dtype=torch.bool)
    raw = model.forward_features(features, depths, valid)
    model.set_temperatures(2.0, 4.0)
    scaled = model.forward_features(features, depths, valid)
    torch.testing.assert_close(scaled.segment_logits, raw.segment_logits / 2.0)
    torch.testing.assert_close(scaled.action_logits, raw.action_logits / 4.0)
    torch.testing.assert_close(scaled.duration_logits, raw.duration_logits)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model), with_backbone=False)
    assert (loaded.cfg.segment_temperature, loaded.cfg.action_temperature) == (2.0, 4.0)
    torch.testing.assert_close(loaded.forward_features(features, depths, valid).action_logits, scaled.action_logits)


def test_set_temperatures_refuses_non_positive_values() -> None:
    model = R3D(tiny_config(), with_backbone=False)
    with pytest.raises(ValueError, match="expected positive temperatures, got segment=0.0"):
        model.set_temperatures(0.0, 1.0)


def test_causal_encoder_keeps_each_frame_blind_to_later_frames_and_the_full_encoder_does_not(tmp_path: Path) -> None:
    torch.manual_seed(0)
    features = torch.randn(1, 6, tiny_config().feature_dim)
    _, depths = random_inputs(1, 6)
    valid = torch.ones(1, 6, dtype=torch.bool)
    later = features.clone()
    later[:, 4:] = torch.randn(1, 2, features.shape[2])  # only the last two frames change
    for causal in (True, False):
        torch.manual_seed(1)
        model = R3D(tiny_config(causal_encoder=causal), with_backbone=False).eval()
        with torch.no_grad():
            before = model.forward_features(features, depths, valid).segment_logits
            after = model.forward_features(later, depths, valid).segment_logits
        assert torch.equal(before[:, :4], after[:, :4]) == causal  # the frames before the change
        assert not torch.equal(before[:, 4:], after[:, 4:])
    save_checkpoint(tmp_path / "causal.safetensors", R3D(tiny_config(causal_encoder=True), with_backbone=False))
    assert load_checkpoint(tmp_path / "causal.safetensors")[0].cfg.causal_encoder


def test_causal_encoder_gives_finite_outputs_for_padding_on_either_side() -> None:
    """A padding row sees no earlier valid frame when the padding comes first: it must still attend somewhere."""
    torch.manual_seed(0)
    model = R3D(tiny_config(causal_encoder=True), with_backbone=False).eval()
    features = torch.randn(2, 5, model.cfg.feature_dim)
    _, depths = random_inputs(2, 5)
    valid = torch.tensor([[False, False, True, True, True], [True, True, True, False, False]])
    with torch.no_grad():
        out = model.forward_features(features, depths, valid)
    assert torch.isfinite(out.segment_logits).all() and torch.isfinite(out.action_logits).all()
