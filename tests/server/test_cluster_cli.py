"""The cluster command's flags (server.cluster.cli, r3d-serve --cluster): bad values are refused before anything
connects to Ray, each problem named by its flag. No cluster is started here (tests/server/test_cluster.py does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main as serve_main
from server.cluster.options import replica_range
from server.service_flags import build_parser

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[cluster]')")


@pytest.mark.parametrize(("text", "expected"), [("1", (1, 1)), ("1..4", (1, 4)), ("2..2", (2, 2))])
def test_replica_range_reads_a_count_or_a_range(text: str, expected: tuple[int, int]) -> None:
    assert replica_range(text) == expected


def test_replica_range_refuses_words_saying_the_form() -> None:
    with pytest.raises(ValueError, match=r"expected N or MIN\.\.MAX \(e\.g\. 1\.\.4\), got 'many'"):
        replica_range("many")


def test_cluster_options_name_every_bad_flag() -> None:
    from server.cluster.options import ClusterOptions

    problems = ClusterOptions(session_replicas=0, encoder_min_replicas=3, encoder_max_replicas=2,
                              encoder_gpus=-1).problems()  # fmt: skip
    assert problems == [
        "--session-replicas: expected at least 1, got 0",
        "--encoder-replicas: expected 1 <= MIN <= MAX, got 3..2",
        "--encoder-gpus: expected 0 or more, got -1",
    ]


def test_serve_cluster_refuses_bad_replicas_before_connecting(
    checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = serve_main([str(checkpoints["base"]), "--cluster", "--session-replicas", "0", "--encoder-replicas", "4..1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--session-replicas: expected at least 1, got 0" in err and "got 4..1" in err


def test_serve_cluster_refuses_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["--cluster", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_help_names_the_cluster_flag() -> None:
    assert "--cluster" in build_parser().format_help()


def test_kuberay_manifest_application_builds_with_its_args(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    import yaml
    from ray.serve import Application

    manifest = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService" and manifest["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"
    (app,) = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    module, name = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), name)
    monkeypatch.setenv("R3D_MODEL_PATH", str(checkpoints["base"]))  # the pods' environment names the model
    assert isinstance(builder(app["args"]), Application)


def test_cluster_application_builder_names_unknown_args(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.cluster.app import from_config

    with pytest.raises(ValueError, match=r"unknown application args \['replicas'\]"):
        from_config({"replicas": 2})
