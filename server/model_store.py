"""Which files the service may load as a model: the one it was started with, and those an operator put in
``models_dir``, named by id (the entry's name). A request never names a path, so nothing a client uploaded (jobs live
in ``jobs_dir``, which settings keep apart from ``models_dir``) can become the model.

A model is an export bundle folder (it has ``manifest.json``), a checkpoint file (``.safetensors``), or a folder
holding exactly one checkpoint (``r3d-serve models/default`` then serves ``models/default/model.safetensors``).
"""

from __future__ import annotations

import re
from pathlib import Path

from export.bundle import MANIFEST
from server.errors import ModelNotFound

CHECKPOINT_SUFFIX = ".safetensors"
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def resolve_model_path(path: Path) -> Path:
    """A bundle folder or checkpoint as given, or the single checkpoint inside a folder; ValueError otherwise."""
    if not path.is_dir() or (path / MANIFEST).is_file():
        return path
    checkpoints = sorted(p for p in path.iterdir() if p.name.endswith(CHECKPOINT_SUFFIX) and p.is_file())
    if len(checkpoints) == 1:
        return checkpoints[0]
    found = [p.name for p in checkpoints][:8]
    raise ValueError(
        f"folder {path.name!r} is neither an export bundle (no {MANIFEST}) nor a folder holding one checkpoint; "
        f"expected exactly one *{CHECKPOINT_SUFFIX} file, found {len(checkpoints)} {found}"
    )


def available_models(models_dir: Path | None) -> list[str]:
    """The ids a reload may name: the entries of ``models_dir`` that are a bundle, a checkpoint or hold one."""
    if models_dir is None or not models_dir.is_dir():
        return []
    ids = []
    for entry in sorted(models_dir.iterdir()):
        if not MODEL_ID.fullmatch(entry.name) or entry.is_symlink():
            continue
        if entry.is_file() and entry.name.endswith(CHECKPOINT_SUFFIX):
            ids.append(entry.name)
        elif entry.is_dir():
            try:
                resolve_model_path(entry)
            except ValueError:
                continue
            ids.append(entry.name)
    return ids


def model_by_id(models_dir: Path | None, model_id: str) -> Path:
    """The model ``model_id`` names in ``models_dir``; ModelNotFound (listing the ids there are) otherwise."""
    known = available_models(models_dir)
    if model_id not in known:
        where = "this server has no models_dir (R3D_MODELS_DIR)" if models_dir is None else f"available: {known[:20]}"
        raise ModelNotFound(f"no model {model_id!r} to reload; {where}")
    assert models_dir is not None
    return resolve_model_path(models_dir / model_id)
