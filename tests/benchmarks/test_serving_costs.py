"""The per-stage cost benchmark runs end to end on a tiny model and prints every stage and the capacity line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import serving_costs
from tests.server.conftest import tiny_config


def test_serving_costs_prints_each_stage_and_capacity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from model import R3D, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", R3D(tiny_config()).eval())
    argv = ["--model", str(ckpt), "--backend", "pytorch", "--threads", "1", "--repeats", "1", "--tick-batch", "2",
            "--width", "320", "--height", "240"]  # fmt: skip
    assert serving_costs.main(argv) == 0
    out = capsys.readouterr().out
    for stage in ("parse full", "prepare model", "encode batch 16", "tick one call each", "tick batch 2"):
        assert f"| {stage} | " in out
    assert "CPU-bound streams at 15 fps" in out and out.startswith("machine: ")


def test_serving_costs_of_a_depth_only_model_shows_encode_with_and_without_the_blank_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from model import R3D, save_checkpoint

    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.fusion = "depth"
    ckpt = save_checkpoint(tmp_path / "depth_only.safetensors", R3D(cfg).eval())
    argv = ["--model", str(ckpt), "--backend", "pytorch", "--threads", "1", "--repeats", "1", "--tick-batch", "2",
            "--width", "320", "--height", "240"]  # fmt: skip
    assert serving_costs.main(argv) == 0
    out = capsys.readouterr().out
    for batch in (1, 8, 16):
        assert f"| encode batch {batch} | " in out and f"| encode batch {batch}, all-zero image (before) | " in out
