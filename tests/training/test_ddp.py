from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

from tests.training.train_fixtures import TINY_RECIPE, shared_tiny_dataset


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_dataset(tmp_path_factory)


pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


def test_torchrun_two_gloo_processes_keep_identical_replicas(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    flags = [f"--{k}={list(v) if isinstance(v, tuple) else v}" for k, v in TINY_RECIPE.items()]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.train_cli",
        *flags,
        "--data.dataset",
        str(tiny_dataset),
        "--run.out",
        str(out),
        "--optim.epochs",
        "1",
        "--optim.warmup_epochs",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    digests = summary["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert summary["epochs"] == 1
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["world_size"] == 2
    # each rank took ceil(12 windows / 2 ranks / batch 4) = 2 steps
    assert json.loads(proc.stdout)["epochs"] == 1
