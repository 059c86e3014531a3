"""The export bundle (docs/architecture.md "Contracts"): one folder that holds everything needed to serve a model.

    BUNDLE/
      manifest.json        format, version, model ids, exporter versions, and the SHA-256 and size of every file
      config.json          {"format": "r3d-config", "version": 1, "config": R3DConfig, "provenance", "metrics"}
      frame_encoder.onnx   image (N, 3, H, W) + depth (N, D, h, w) -> tokens (N, 2, C), dynamic N
      anticipator.onnx     tokens (B, T, 2, C) + valid (B, T) bool -> action, duration, segment logits, fused tokens
      model.safetensors    the source checkpoint, byte for byte (the PyTorch backend and the benchmark's reference)
      parity.json          ONNX Runtime against PyTorch, measured at export time (and the int8 encoder's report)
      frame_encoder.int8.onnx  optional (r3d-export --int8): the frame encoder quantised to int8 (Q/DQ), served on
                           the CPU by default only when parity.json records its accuracy change (Bundle.int8_status)
      engines/             optional TensorRT engines, their stamp (engines.json) and timing cache

Loading checks the manifest's format and version, the config's version, that every required file is present and that
every listed file hashes to its manifest entry; a missing or altered file is refused with its name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from export.errors import BundleError
from model.backbones import sha256_file
from model.r3d import R3D, R3DConfig
from rgbd.files import write_json_atomic

logger = logging.getLogger(__name__)

FORMAT = "r3d-bundle"
VERSION = 1
CONFIG_FORMAT = "r3d-config"
CONFIG_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
FRAME_ENCODER_ONNX = "frame_encoder.onnx"
ANTICIPATOR_ONNX = "anticipator.onnx"
CHECKPOINT = "model.safetensors"
PARITY = "parity.json"
FRAME_ENCODER_INT8_ONNX = "frame_encoder.int8.onnx"
INT8_REPORT = "frame_encoder_int8"  # its entry in parity.json
INT8_MAX_ACCURACY_DROP = 0.01  # served by default only when int8 loses at most 1 point of next-action accuracy
ENGINES_DIR = "engines"
REQUIRED = (CONFIG, FRAME_ENCODER_ONNX, ANTICIPATOR_ONNX, CHECKPOINT, PARITY)
# the graphs' input and output names, shared by the exporter and every runtime
FRAME_ENCODER_INPUTS = ("image", "depth")
FRAME_ENCODER_OUTPUTS = ("tokens",)
ANTICIPATOR_INPUTS = ("tokens", "valid")
ANTICIPATOR_OUTPUTS = ("action_logits", "duration_logits", "segment_logits", "fused")
_BACKBONE_PREFIX = "frame_encoder.backbone."


def _digest_tensors(h: Any, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def model_identity(model: R3D) -> tuple[str, str]:
    """(model_id, frame_encoder_id): SHA-256 prefixes of the weights and config, and of the FrameEncoder alone.

    Both are computed from the weights, so a checkpoint and the bundle exported from it carry the same ids, and a
    new model whose FrameEncoder is unchanged (same projections, backbone weights and preprocessing) keeps its
    frame_encoder_id: the server may then keep its sessions' token windows across a reload.
    """
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(_BACKBONE_PREFIX)}
    cfg = model.cfg
    fe = hashlib.sha256()
    fe_meta = {
        "backbone": cfg.backbone,
        "backbone_weights_sha256": cfg.backbone_weights_sha256,
        "preprocessing": cfg.to_dict()["preprocessing"],
        "hidden": cfg.hidden,
    }
    fe.update(json.dumps(fe_meta, sort_keys=True).encode())
    _digest_tensors(fe, {k: v for k, v in own.items() if k.startswith("frame_encoder.")})
    full = hashlib.sha256()
    full.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    _digest_tensors(full, own)
    return full.hexdigest()[:16], fe.hexdigest()[:16]


def config_document(cfg: R3DConfig, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = meta or {}
    return {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "config": cfg.to_dict(),
        "provenance": meta.get("provenance", {}),
        "metrics": meta.get("metrics", {}),
    }


def write_manifest(folder: Path, *, model_id: str, frame_encoder_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under `folder` (except the manifest itself) into manifest.json."""
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_id": model_id,
        "frame_encoder_id": frame_encoder_id,
        **extra,
        "files": files,
    }
    write_json_atomic(folder / MANIFEST, manifest, sort_keys=True)
    return manifest


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"incomplete bundle {path.parent}: {path.name} is missing ({what})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {path.parent}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"bundle {path.parent}: {path.name} should hold a JSON object, got {type(doc).__name__}")
    return doc


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder."""

    path: Path
    manifest: dict[str, Any]
    config: R3DConfig
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    parity: dict[str, Any]

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])

    @property
    def frame_encoder_id(self) -> str:
        return str(self.manifest["frame_encoder_id"])

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def int8_status(self) -> tuple[bool, str]:
        """(serve the int8 frame encoder by default?, why): yes only when the bundle has one, its token parity
        passed, and its measured next-action accuracy is at most INT8_MAX_ACCURACY_DROP below fp32's."""
        if not self.has(FRAME_ENCODER_INT8_ONNX):
            return False, "the bundle has no int8 frame encoder (r3d-export --int8)"
        report = self.parity.get(INT8_REPORT, {})
        if not report.get("passed"):
            return False, "the int8 frame encoder failed or lacks its token parity check"
        accuracy = report.get("accuracy")
        if not accuracy:
            return False, "the int8 accuracy change is not measured (scripts/int8_accuracy.py BUNDLE DATASET)"
        drop = accuracy["fp32"] - accuracy["int8"]
        if drop > INT8_MAX_ACCURACY_DROP:
            limit = 100 * INT8_MAX_ACCURACY_DROP
            return False, f"int8 loses {100 * drop:.1f} points of next-action accuracy (more than {limit:g})"
        return True, f"int8 next-action accuracy {accuracy['int8']:.3f} vs fp32 {accuracy['fp32']:.3f}"

    def engines(self) -> dict[str, Any]:
        """The TensorRT stamp (engines/engines.json) or {} when the bundle has no engines."""
        name = f"{ENGINES_DIR}/engines.json"
        return _read_json(self.file(name), "TensorRT engine stamp") if self.has(name) else {}


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle {folder}: {MANIFEST} has no 'files' table")
    for name in REQUIRED:
        if name not in files:
            raise BundleError(f"incomplete bundle {folder}: {name} is not listed in {MANIFEST}")
    for name, entry in files.items():
        p = folder / name
        if not p.is_file():
            raise BundleError(f"incomplete bundle {folder}: {name} (listed in {MANIFEST}) is missing")
        digest = sha256_file(p)
        if digest != entry.get("sha256"):
            raise BundleError(
                f"bundle {folder}: {name} has SHA-256 {digest[:12]}..., {MANIFEST} expects "
                f"{str(entry.get('sha256'))[:12]}... (the file was altered or is corrupt; re-export the bundle)"
            )


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle folder; raises BundleError naming the first missing or altered file."""
    folder = Path(path)
    if not folder.is_dir():
        raise BundleError(f"expected a bundle folder written by r3d-export, got {str(folder)!r} (not a folder)")
    manifest = _read_json(folder / MANIFEST, "the bundle's table of contents")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {folder}: {MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise BundleError(
            f"bundle {folder}: {MANIFEST} has version {manifest.get('version')!r}; this build reads version {VERSION}"
        )
    verify_files(folder, manifest)
    doc = _read_json(folder / CONFIG, "the model config")
    if doc.get("format") != CONFIG_FORMAT or doc.get("version") != CONFIG_VERSION:
        raise BundleError(
            f"bundle {folder}: {CONFIG} is {doc.get('format')!r} version {doc.get('version')!r}; "
            f"this build reads {CONFIG_FORMAT!r} version {CONFIG_VERSION}"
        )
    try:
        cfg = R3DConfig.from_dict(doc["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {folder}: {CONFIG} does not hold a valid R3DConfig: {exc}") from exc
    parity = _read_json(folder / PARITY, "parity figures")
    return Bundle(folder, manifest, cfg, doc.get("provenance", {}), doc.get("metrics", {}), parity)
