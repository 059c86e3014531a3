"""The server's batched ticks: windows of different lengths from different sessions, padded at the end and masked,
run as one Anticipator call (server.engine.Engine.anticipate_batch) give each window the outputs of its own call,
on the PyTorch and the ONNX Runtime backend."""

from __future__ import annotations

import numpy as np
import pytest

from export.interface import InferenceBackend
from server.engine import Engine

LENGTHS = (30, 1, 17, 30, 5)  # full windows, a session's first frame, and partly filled windows in one batch


@pytest.mark.parametrize("backend_name", ["torch_backend", "ort_backend"])
def test_anticipate_batch_matches_one_call_per_window(backend_name: str, request: pytest.FixtureRequest) -> None:
    backend: InferenceBackend = request.getfixturevalue(backend_name)
    engine = Engine(backend, server_version="test")
    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(n, 2, backend.config.hidden)).astype(np.float32) for n in LENGTHS]

    batched = engine.anticipate_batch(windows)
    single = [engine.anticipate(w) for w in windows]

    assert len(batched) == len(windows)
    for got, want, n in zip(batched, single, LENGTHS, strict=True):
        assert got.segment_logits.shape == want.segment_logits.shape == (1, n, len(backend.config.classes))
        for field in ("action_logits", "duration_logits", "segment_logits", "fused"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=0, atol=1e-5, err_msg=field)
        assert engine.decode(got)[0].action == engine.decode(want)[0].action
