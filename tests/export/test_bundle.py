"""Bundle loading refuses tampered, incomplete and unknown-version bundles, naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.backends import load_backend
from export.bundle import load_bundle, sha256_file
from export.cli import main
from export.errors import BundleError
from rgbd.files import write_json_atomic


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_load_bundle_verifies_an_intact_bundle(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.config.classes == ["walk", "sit", "drink"]
    assert bundle.parity["onnxruntime"]["passed"] is True
    assert bundle.engines() == {}


@pytest.mark.parametrize("name", ["anticipator.onnx", "frame_encoder.onnx", "config.json", "model.safetensors"])
def test_tampered_file_is_refused_by_name(bundle_copy: Path, name: str) -> None:
    data = bytearray((bundle_copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{name} has SHA-256 .* altered or is corrupt"):
        load_backend(bundle_copy)


@pytest.mark.parametrize("name", ["frame_encoder.onnx", "parity.json"])
def test_missing_file_is_refused_by_name(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=rf"incomplete bundle .*: {name} \(listed in manifest.json\) is missing"):
        load_bundle(bundle_copy)


def test_missing_manifest_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(bundle_copy)


def test_required_file_dropped_from_manifest_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"]["anticipator.onnx"]
    write_json_atomic(bundle_copy / "manifest.json", manifest)
    with pytest.raises(BundleError, match="anticipator.onnx is not listed in manifest.json"):
        load_bundle(bundle_copy)


def test_unknown_bundle_version_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["version"] = 99
    write_json_atomic(bundle_copy / "manifest.json", manifest)
    with pytest.raises(BundleError, match="manifest.json has version 99; this build reads version 1"):
        load_bundle(bundle_copy)


def test_unknown_config_version_is_refused(bundle_copy: Path) -> None:
    config = json.loads((bundle_copy / "config.json").read_text())
    config["version"] = 2
    write_json_atomic(bundle_copy / "config.json", config)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"]["config.json"]["sha256"] = sha256_file(bundle_copy / "config.json")  # a consistent re-hash
    write_json_atomic(bundle_copy / "manifest.json", manifest)
    with pytest.raises(BundleError, match=r"config.json is 'r3d-config' version 2; this build reads .* version 1"):
        load_bundle(bundle_copy)


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="expected a checkpoint .safetensors file or a bundle folder"):
        load_backend(tmp_path / "nowhere")


def test_verify_command_reports_the_tampered_file(bundle_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(bundle_copy)]) == 0
    assert "parity onnxruntime: max abs" in capsys.readouterr().out
    (bundle_copy / "anticipator.onnx").write_bytes(b"replaced")
    assert main(["verify", str(bundle_copy)]) == 1
    assert "anticipator.onnx has SHA-256" in capsys.readouterr().err
