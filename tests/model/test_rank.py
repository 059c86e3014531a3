from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import effective_rank, rank_gain


@pytest.mark.parametrize("n", [1, 4, 16])
def test_effective_rank_identity_equals_size(n: int) -> None:
    assert effective_rank(np.eye(n)) == pytest.approx(n)


def test_effective_rank_rank_one_is_one() -> None:
    z = np.outer(np.arange(1, 6), np.arange(1, 4))
    assert effective_rank(torch.tensor(z, dtype=torch.float32)) == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_known_spectrum() -> None:
    # singular values 2, 1, 1 -> p = (0.5, 0.25, 0.25), entropy = 1.5 ln 2
    z = np.diag([2.0, 1.0, 1.0])
    assert effective_rank(z) == pytest.approx(math.exp(1.5 * math.log(2)))


def test_effective_rank_is_uncentred_and_rotation_invariant() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 5)) + 3.0
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert effective_rank(q @ z) == pytest.approx(effective_rank(z))
    assert effective_rank(z) != pytest.approx(effective_rank(z - z.mean(0)))


def test_effective_rank_bounds() -> None:
    z = np.random.default_rng(1).normal(size=(7, 30))
    assert 1.0 <= effective_rank(z) <= 7.0


@pytest.mark.parametrize(
    ("z", "match"),
    [(np.zeros((3, 3)), "all-zero"), (np.ones(3), r"\(T, C\)"), (np.array([[np.nan, 1.0]]), "finite")],
)
def test_effective_rank_bad_input_raises(z: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        effective_rank(z)


def test_rank_gain_harmonic_mean() -> None:
    g = rank_gain([2.0, 4.0], [5.0, 7.0], [1.0, 1.0], [2.0, 2.0])
    assert (g.gain_a, g.gain_b) == (3.0, 1.0)
    assert g.harmonic == pytest.approx(2 * 3 * 1 / 4)


def test_rank_gain_zero_when_one_modality_loses() -> None:
    assert rank_gain([2.0], [5.0], [3.0], [2.0]).harmonic == 0.0


def _top_k_sin_angle(a: np.ndarray, b: np.ndarray, k: int) -> float:
    ua = np.linalg.svd(a, full_matrices=False)[0][:, :k]
    ub = np.linalg.svd(b, full_matrices=False)[0][:, :k]
    return float(np.linalg.norm(ub - ua @ (ua.T @ ub), 2))  # ||(I - Ua Ua^T) Ub||_2 = sin of the largest angle


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.0, 0.8), k=st.integers(1, 4))
def test_theorem_3_1_blending_a_weak_channel_raises_rank_and_keeps_top_k(seed: int, alpha: float, k: int) -> None:
    """Theorem 3.1: blending a weak channel with a signal outside the top-k subspace adds a direction (ERank goes up)
    and, when the change is small against the gap delta_k, the top-k left subspace moves by at most the Wedin bound
    sin(theta) <= ||E|| / (delta_k - ||E||)."""
    rng = np.random.default_rng(seed)
    t, c = 40, 12
    u, _ = np.linalg.qr(rng.normal(size=(t, t)))
    v, _ = np.linalg.qr(rng.normal(size=(c, c)))
    s = np.concatenate([np.linspace(10.0, 6.0, k), np.full(c - k, 0.05)])  # spectral gap after k
    z = u[:, :c] @ np.diag(s) @ v.T
    weak = int(np.argmin(np.linalg.norm(z, axis=0)))
    signal = u[:, c] * 1.0  # orthogonal to the column space, so outside the top-k subspace
    z_new = z.copy()
    z_new[:, weak] = alpha * z[:, weak] + (1 - alpha) * signal
    e = np.linalg.norm(z_new - z, 2)
    delta = s[k - 1] - s[k]
    assert e < delta
    assert effective_rank(z_new) > effective_rank(z)
    assert _top_k_sin_angle(z, z_new, k) <= e / (delta - e) + 1e-9
