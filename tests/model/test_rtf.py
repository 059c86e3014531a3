from __future__ import annotations

import pytest
import torch
from torch import nn

from model.rtf import CrossModalBlock, TokenFuser, lowest_variance_mask, smallest_gamma_mask


def test_tied_gamma_breaks_ties_by_lowest_channel_index() -> None:
    mask = smallest_gamma_mask(torch.ones(10), 3)
    assert mask.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def test_smallest_gamma_uses_absolute_value() -> None:
    mask = smallest_gamma_mask(torch.tensor([-5.0, 0.1, -0.2, 3.0]), 2)
    assert mask.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(("rho", "k"), [(0.1, 12), (0.2, 25), (0.3, 38)])
def test_exchange_count_is_floor_of_ratio_times_channels(rho: float, k: int) -> None:
    assert TokenFuser(128, "blend", "cross", "gamma", rho, 0.1).k == k


def test_gamma_selection_is_fixed_buffer_at_inference() -> None:
    torch.manual_seed(0)
    fuser = TokenFuser(16, "blend", "cross", "gamma", 0.25, 0.0)
    with torch.no_grad():
        fuser.bn_rgb.weight.copy_(torch.arange(16.0, 0.0, -1.0))  # smallest |gamma| at the end
    fuser.train()(torch.randn(2, 5, 2, 16), torch.ones(2, 5, dtype=torch.bool))
    assert fuser.rgb_channels.nonzero().flatten().tolist() == [12, 13, 14, 15]
    with torch.no_grad():
        fuser.bn_rgb.weight.copy_(torch.arange(1.0, 17.0))  # would now pick 0..3, but eval keeps the buffer
    fuser.eval()(torch.randn(1, 3, 2, 16), torch.ones(1, 3, dtype=torch.bool))
    assert fuser.rgb_channels.nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert "rgb_channels" in fuser.state_dict()


def test_blend_changes_only_selected_channels_with_alpha() -> None:
    torch.manual_seed(0)
    fuser = TokenFuser(8, "blend", "cross", "gamma", 0.25, 0.0).eval()
    fuser.rgb_channels.copy_(torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0]))
    fuser.depth_channels.copy_(torch.tensor([0.0, 0, 0, 0, 0, 0, 1, 1]))
    out = fuser(torch.randn(1, 4, 2, 8), torch.ones(1, 4, dtype=torch.bool))
    a = fuser.alpha
    r, d = out.rgb_before, out.depth_before
    torch.testing.assert_close(out.rgb_after[..., :2], a[:2] * r[..., :2] + (1 - a[:2]) * d[..., :2])
    torch.testing.assert_close(out.rgb_after[..., 2:], r[..., 2:])
    torch.testing.assert_close(out.depth_after[..., 6:], a[6:] * d[..., 6:] + (1 - a[6:]) * r[..., 6:])
    torch.testing.assert_close(out.depth_after[..., :6], d[..., :6])


def test_hard_exchange_replaces_selected_channels() -> None:
    fuser = TokenFuser(8, "hard", "cross", "gamma", 0.25, 0.0).eval()
    fuser.rgb_channels.copy_(torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0]))
    out = fuser(torch.randn(1, 4, 2, 8), torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(out.rgb_after[..., :2], out.depth_before[..., :2])


def test_alpha_initialised_in_unit_interval() -> None:
    alpha = TokenFuser(128, "blend", "cross", "gamma", 0.1, 0.0).alpha.detach()
    assert alpha.shape == (128,) and float(alpha.min()) >= 0.0 and float(alpha.max()) < 1.0


def test_variance_selection_picks_lowest_variance_over_valid_frames() -> None:
    x = torch.zeros(1, 6, 4)
    x[0, :, 0] = torch.tensor([0.0, 5, 0, 5, 0, 5])  # high variance
    x[0, :, 1] = torch.tensor([0.0, 1, 0, 1, 0, 1])
    x[0, :, 2] = torch.tensor([0.0, 0, 0, 0, 9, 9])  # constant over the valid frames 0..3
    x[0, :, 3] = torch.tensor([0.0, 2, 0, 2, 0, 2])
    valid = torch.tensor([[True, True, True, True, False, False]])
    assert lowest_variance_mask(x, valid, 2).flatten().tolist() == [0, 1, 1, 0]


def test_cross_block_equals_attention_with_the_diagonal_masked() -> None:
    """docs/paper.md section 2: two tokens with the diagonal masked attend only to each other; computing it directly
    is equivalent."""
    torch.manual_seed(0)
    c = 16
    block = CrossModalBlock(c, 0.0).eval()
    mha = nn.MultiheadAttention(c, 8, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight[2 * c :].copy_(block.value.weight)
        mha.in_proj_bias[2 * c :].copy_(block.value.bias)  # type: ignore[index]
        mha.out_proj.weight.copy_(block.out.weight)
        mha.out_proj.bias.copy_(block.out.bias)
    pair = torch.randn(5, 2, c)
    diagonal = torch.eye(2, dtype=torch.bool)
    h = block.ln1(pair)
    x = pair + mha(h, h, h, attn_mask=diagonal, need_weights=False)[0]
    x = x + block.mlp(block.ln2(x))
    reference = block.ln_f(x).mean(dim=-2)
    torch.testing.assert_close(block(pair.unsqueeze(0))[0], reference, atol=1e-5, rtol=1e-5)
