"""Feature cache: the frozen backbone run once over a dataset, so training never recomputes it (`r3d-data features`).

Layout, one folder per backbone, weights hash, preprocessing and (optional) degradation::

    DATASET/features/<backbone>-<sha12>-img<H>x<W>-depth<h>x<w>-<min>-<max>m-<depth input>-v<version>
                     [-<degradation>-s<severity>]/
      cache.json        backbone, weights SHA-256, preprocessing, degradation, dataset name and classes
      <seq>.npz         rgb (T, F x colour views) float16 pooled backbone features (model.r3d.color_features);
                        depth (T, D, h, w) float16 depth inputs;
                        labels (T,) int16 class index, -1 where unknown; timestamps (T,); has_color () bool

A depth-only sequence (no colour camera) is cached without running the backbone on its frames: its rgb rows are
the features of the all-zero image that model.prepare_inputs gives a depth-only frame, i.e. exactly what the
server computes when it serves a depth-only stream, and has_color is false so that training refuses to fit a
model that uses colour on it (MissingColorError). A cache file without has_color (written before) has colour.

Frames go through model.prepare_inputs, the function the server uses: the clean cache hands it the dataset's JPEG
bytes (decoded straight to model resolution, as a streaming frame is), so cached inputs are bit-identical to the
served ones. Degraded caches degrade the decoded full-size frame first, then call the same function.
Version 2: the fast input path (v1 resized float tensors with torch; v1 caches are left alone, not reused).
Version 3: depth resized as uint16 at camera size and converted to float once at model size (v2 converted at camera
size; the depth inputs differ by up to about 1 mm, model.preprocess.resize_valid_depth); v2 caches are not reused.

The whole frame's colour features depend on the backbone, its weights, the image size and a colour degradation,
not on the depth settings: a cache takes them from another cache of the same dataset that has them (e.g. a cache
without the person mask from one with it, a depth degradation from the clean cache, a "frame+person" cache
(Preprocessing.color_view) from the "frame" one, whose person crops alone then go through the backbone).

Each sequence file is written atomically, so an interrupted run resumes by skipping the finished sequences.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model import Preprocessing, build_backbone, prepare_inputs
from model.backbones import PooledBackbone
from model.person import PersonLocator
from model.r3d import color_views
from rgbd.dataset import Dataset, SequenceMeta
from rgbd.files import write_bytes_atomic, write_json_atomic
from rgbd.frame import MissingColorError
from training.robustness import DEGRADATIONS, degrade_frame, parse_degradation

logger = logging.getLogger(__name__)
CACHE_FORMAT = "r3d-feature-cache"
CACHE_VERSION = 3
# Preprocessing fields added after caches of this version were written: a manifest leaves them out at the value
# that turns them off, as those caches were written, so that they stay valid
LATER_FIELDS = {"person_mask": "none", "color_view": "frame"}


def colour_degradation(degradation: str | None, severity: int) -> tuple[str | None, int]:
    """The degradation the colour image gets: (None, 0) when clean or when only depth is degraded."""
    if degradation is None or DEGRADATIONS[degradation].modality == "depth":
        return None, 0
    return degradation, severity


@dataclass(frozen=True)
class CacheSpec:
    """What a feature cache depends on; its key names the cache folder."""

    backbone: str
    weights_sha256: str
    preprocessing: Preprocessing
    degradation: str | None = None
    severity: int = 0

    @property
    def key(self) -> str:
        p = self.preprocessing
        (ih, iw), (dh, dw) = p.image_size, p.depth_size
        key = f"{self.backbone}-{self.weights_sha256[:12]}-img{ih}x{iw}-depth{dh}x{dw}"
        key += f"-{p.depth_min_m:g}-{p.depth_max_m:g}m-{p.depth_input}"
        if p.depth_input == "metric":
            key += f"{p.depth_mean_m:g}+-{p.depth_std_m:g}"
        if p.person_mask != "none":
            key += f"-person-{p.person_mask}"
        if p.color_view != "frame":
            key += "-color-" + p.color_view.replace("+", "-")
        key += f"-v{CACHE_VERSION}"
        return key + (f"-{self.degradation}-s{self.severity}" if self.degradation else "")

    @property
    def colour_degradation(self) -> tuple[str | None, int]:
        return colour_degradation(self.degradation, self.severity)

    def manifest(self, dataset: Dataset) -> dict[str, Any]:
        p = self.preprocessing
        return {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "backbone": self.backbone,
            "weights_sha256": self.weights_sha256,
            "preprocessing": _without_later_fields(
                {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}
            ),
            "degradation": self.degradation,
            "severity": self.severity,
            "dataset": dataset.name,
            "classes": dataset.classes,
        }


@dataclass
class SequenceFeatures:
    """One sequence's cached inputs (arrays kept in float16 until a batch is built)."""

    id: str
    rgb: np.ndarray  # (T, F x colour views) float16
    depth: np.ndarray  # (T, D, h, w) float16
    labels: np.ndarray  # (T,) int64, -1 = unknown
    timestamps: np.ndarray  # (T,) float64 seconds
    has_color: bool = True  # False: a depth-only sequence, whose rgb rows are the no-colour image's features

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir(dataset_root: str | Path, spec: CacheSpec, cache_root: str | Path | None = None) -> Path:
    root = Path(cache_root) if cache_root else Path(dataset_root) / "features"
    return root / spec.key


def _encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _label_indices(labels: Sequence[str | None], classes: list[str], seq_id: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab is not None and lab not in index})
    if unknown:
        raise ValueError(f"sequence {seq_id!r}: labels {unknown} are not in the dataset classes {classes}")
    return np.array([-1 if lab is None else index[lab] for lab in labels], dtype=np.int16)


class FeatureExtractor:
    """Backbone + preprocessing, applied to batches of raw frames."""

    def __init__(
        self, backbone: PooledBackbone, digest: str, backbone_name: str, pre: Preprocessing, device: torch.device
    ) -> None:
        self.backbone, self.digest, self.name, self.pre, self.device = backbone, digest, backbone_name, pre, device
        self._no_color: np.ndarray | None = None

    @classmethod
    def build(
        cls, backbone_name: str, pre: Preprocessing, weights: str | Path | None = None, device: str = "auto"
    ) -> FeatureExtractor:
        """The frozen backbone on `device` ("auto": CUDA when available, else CPU)."""
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu"))
        backbone, digest = build_backbone(backbone_name, pre.image_size, weights)
        return cls(backbone.eval().to(dev), digest, backbone_name, pre, dev)

    def spec(self, degradation: str | None = None, severity: int = 0) -> CacheSpec:
        return CacheSpec(self.name, self.digest, self.pre, degradation, severity)

    def inputs(
        self, color: np.ndarray | bytes | None, depth: np.ndarray, scale: float, locator: PersonLocator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame (JPEG bytes, RGB uint8 or None: no colour; depth uint16) -> model.prepare_inputs: image
        (3, h, w), depth. locator: the sequence's (Preprocessing.locator()), fed every frame in order."""
        return prepare_inputs(color, depth, scale, self.pre, locator)

    @torch.inference_mode()
    def rgb(self, images: np.ndarray, depths: np.ndarray, frame_features: np.ndarray | None = None) -> np.ndarray:
        """Prepared images float32 (N, 3, h, w) and their depth inputs (N, D, h', w') -> pooled backbone features
        float16 (N, F x colour views), model.r3d.color_features. frame_features: the whole frames' (N, F), when
        known already (the backbone then runs on the other views only)."""
        x, d = torch.from_numpy(images).to(self.device), torch.from_numpy(depths).to(self.device)
        views = color_views(x, d, self.pre.color_view)
        parts = [self.backbone(v).float().cpu().numpy().astype(np.float16) for v in views[frame_features is not None :]]
        return np.concatenate(([] if frame_features is None else [frame_features]) + parts, axis=1)

    def no_color_features(self, n: int) -> np.ndarray:
        """(n, F x colour views) features of the image a depth-only frame is given (model.prepare_inputs with no
        colour)."""
        if self._no_color is None:
            # a throwaway locator serves a preprocessing with a person mask (it finds no person in no depth)
            image, depth = prepare_inputs(None, np.zeros((1, 1), np.uint16), 0.001, self.pre, self.pre.locator())
            self._no_color = self.rgb(image[None], depth[None])
        return np.repeat(self._no_color, n, axis=0)


def _without_later_fields(preprocessing: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in preprocessing.items() if LATER_FIELDS.get(k, object()) != v}


def _prepare_dir(path: Path, manifest: dict[str, Any]) -> None:
    man_path = path / "cache.json"
    if man_path.is_file():
        old = json.loads(man_path.read_text())
        if isinstance(old.get("preprocessing"), dict):  # written with a later field at its off value, or without it
            old["preprocessing"] = _without_later_fields(old["preprocessing"])
        if old != manifest:
            raise ValueError(f"feature cache {path} was built for {old}, expected {manifest}; remove it or use --out")
        return
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(man_path, manifest)


def build_cache(
    dataset: Dataset,
    extractor: FeatureExtractor,
    *,
    seq_ids: Iterable[str] | None = None,
    cache_root: str | Path | None = None,
    degradation: str | None = None,
    severity: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> Path:
    """Write the missing sequence files of a cache; returns the cache folder. Finished sequences are skipped."""
    spec = extractor.spec(degradation, severity)
    out = cache_dir(dataset.root, spec, cache_root)
    _prepare_dir(out, spec.manifest(dataset))
    ids = list(dataset.sequence_ids if seq_ids is None else seq_ids)
    todo = [s for s in ids if not (out / f"{s}.npz").is_file()]
    if not todo:
        return out
    sources = _frame_feature_sources(out, spec, dataset)
    total = sum(dataset.meta(s).num_frames for s in todo)
    logger.info("feature cache %s: %d of %d sequences to compute (%d frames)", out, len(todo), len(ids), total)
    with tqdm(total=total, unit="frame", desc=f"features {spec.key}", disable=not progress) as bar:
        for seq_id in todo:
            frame_rgb = _known_frame_features(sources, seq_id, dataset.meta(seq_id).num_frames, extractor)
            arrays = _sequence_arrays(dataset, seq_id, extractor, degradation, severity, batch_size, frame_rgb, bar)
            write_bytes_atomic(out / f"{seq_id}.npz", _encode_npz(arrays))
    return out


def _frame_feature_sources(out: Path, spec: CacheSpec, dataset: Dataset) -> list[Path]:
    """The other caches beside `out` whose whole-frame colour features are this cache's: the same dataset, backbone,
    weights, image size and colour degradation (module docstring)."""
    sources = []
    for folder in sorted(out.parent.iterdir()) if out.parent.is_dir() else []:
        try:
            man = json.loads((folder / "cache.json").read_text())
            same = (
                folder != out
                and (man["format"], man["version"], man["dataset"]) == (CACHE_FORMAT, CACHE_VERSION, dataset.name)
                and (man["backbone"], man["weights_sha256"]) == (spec.backbone, spec.weights_sha256)
                and man["preprocessing"]["image_size"] == list(spec.preprocessing.image_size)
                and colour_degradation(man["degradation"], man["severity"]) == spec.colour_degradation
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a cache of this version: nothing to take from it
        if same:
            sources.append(folder)
    return sources


def _known_frame_features(sources: list[Path], seq_id: str, frames: int, ex: FeatureExtractor) -> np.ndarray | None:
    """The sequence's whole-frame features (T, F) from the first source cache that has them, else None."""
    for folder in sources:
        path = folder / f"{seq_id}.npz"
        if path.is_file():
            with np.load(path) as z:
                rgb: np.ndarray = z["rgb"][:, : ex.backbone.feature_dim]
            if len(rgb) == frames:
                return rgb
    return None


def _sequence_arrays(
    dataset: Dataset,
    seq_id: str,
    ex: FeatureExtractor,
    degradation: str | None,
    severity: int,
    batch_size: int,
    frame_rgb: np.ndarray | None,
    bar: tqdm,
) -> dict[str, np.ndarray]:
    """frame_rgb: the sequence's whole-frame features (model.r3d.color_views' first view), when known already."""
    meta = dataset.meta(seq_id)
    times, labels = dataset.labels(seq_id)
    rgb_known = frame_rgb if ex.pre.color_views == 1 else None
    if not meta.has_color:
        rgb_known = ex.no_color_features(meta.num_frames)
    rgb_parts: list[np.ndarray] = []
    images: list[np.ndarray] = []
    batch_depths: list[np.ndarray] = []
    depths: list[np.ndarray] = []

    def flush() -> None:
        if rgb_known is None:  # colour features are computed only where they are not known already
            start = len(depths) - len(images)
            known = None if frame_rgb is None else frame_rgb[start : len(depths)]
            rgb_parts.append(ex.rgb(np.stack(images), np.stack(batch_depths), known))
        bar.update(len(images))
        images.clear()
        batch_depths.clear()

    locator = ex.pre.locator()  # one per sequence, as one per streaming session
    for color, depth in _raw_frames(dataset, seq_id, meta, degradation, severity):
        image, depth_in = ex.inputs(color, depth, meta.depth_scale, locator)  # every frame arrives at model size
        images.append(image)
        batch_depths.append(depth_in)
        depths.append(depth_in.astype(np.float16))
        if len(images) >= batch_size:
            flush()
    if images:
        flush()
    rgb_all = rgb_known if rgb_known is not None else np.concatenate(rgb_parts)
    return {
        "rgb": rgb_all,
        "depth": np.stack(depths),
        "labels": _label_indices(labels, dataset.classes, seq_id),
        "timestamps": np.asarray(times, dtype=np.float64),
        "has_color": np.asarray(meta.has_color),
    }


def _raw_frames(
    dataset: Dataset, seq_id: str, meta: SequenceMeta, degradation: str | None, severity: int
) -> Iterator[tuple[np.ndarray | bytes | None, np.ndarray]]:
    """(colour, depth uint16) per frame: the JPEG bytes as stored (clean; None for a depth-only sequence), or the
    degraded decoded RGB."""
    if degradation is None:
        for stored in dataset.stored_frames(seq_id):
            yield stored.jpeg, stored.depth
        return
    if not meta.has_color and DEGRADATIONS[degradation].modality != "depth":
        raise MissingColorError(
            f"degradation {degradation!r} alters colour, but sequence {seq_id!r} is depth-only (no colour camera)"
        )
    scale = dataset.meta(seq_id).depth_scale
    for frame in dataset.frames(seq_id):
        yield degrade_frame(frame.rgb, frame.depth, scale, degradation, severity, seq_id, frame.index)


def load_sequence(path: Path, seq_id: str) -> SequenceFeatures:
    try:
        with np.load(path) as z:
            return SequenceFeatures(
                seq_id,
                z["rgb"],
                z["depth"],
                z["labels"].astype(np.int64),
                z["timestamps"].astype(np.float64),
                bool(z["has_color"]) if "has_color" in z.files else True,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"feature file {path} is unreadable ({exc}); delete it and rebuild the cache") from exc


def load_cache(folder: Path, seq_ids: Iterable[str]) -> dict[str, SequenceFeatures]:
    """The named sequences of a built cache, in memory."""
    out: dict[str, SequenceFeatures] = {}
    for seq_id in seq_ids:
        path = folder / f"{seq_id}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"feature cache {folder} has no file for sequence {seq_id!r}; build the cache")
        out[seq_id] = load_sequence(path, seq_id)
    return out


def ensure_features(
    dataset: Dataset,
    backbone: str,
    pre: Preprocessing,
    seq_ids: Sequence[str],
    *,
    expected_sha256: str | None = None,
    cache_root: str | Path | None = None,
    degradation: str | None = None,
    severity: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    device: str = "auto",
) -> tuple[CacheSpec, dict[str, SequenceFeatures]]:
    """Build whatever is missing of a cache for these sequences (the backbone is only run when needed), then load."""
    extractor = FeatureExtractor.build(backbone, pre, device=device)
    if expected_sha256 and extractor.digest != expected_sha256:
        raise ValueError(
            f"the model was trained on {backbone} weights with SHA-256 {expected_sha256[:12]}..., but the installed "
            f"weights hash to {extractor.digest[:12]}...; install the same weights"
        )
    folder = build_cache(
        dataset,
        extractor,
        seq_ids=seq_ids,
        cache_root=cache_root,
        degradation=degradation,
        severity=severity,
        batch_size=batch_size,
        progress=progress,
    )
    return extractor.spec(degradation, severity), load_cache(folder, seq_ids)


def register(subparsers: argparse._SubParsersAction) -> None:
    """The `r3d-data features` verb."""
    p = subparsers.add_parser(
        "features",
        help="run the frozen backbone over a dataset once and cache features and depth maps",
        description="Cache backbone RGB features and preprocessed depth maps per sequence (resumable).",
    )
    p.add_argument("dataset", type=Path, help="dataset folder in the common format")
    p.add_argument("--backbone", default=None, help="backbone name (default: the recipe's, else efficientnet_lite0)")
    p.add_argument("--backbone-weights", default=None, help="weights file for the backbone (resnet50 needs one)")
    p.add_argument("--out", type=Path, default=None, help="root of the caches (default: DATASET/features)")
    p.add_argument("--config", type=Path, default=None, help="training recipe to take backbone and preprocessing from")
    p.add_argument("--depth-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None)
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    p.add_argument("--batch-size", type=int, default=32, help="frames per backbone batch (default: 32)")
    p.add_argument(
        "--degrade",
        action="append",
        default=[],
        metavar="NAME:SEVERITY",
        help=f"also build degraded caches; NAME in {sorted(DEGRADATIONS)}",
    )
    p.add_argument("--device", default="auto", help="where the backbone runs: auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy shared machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.config import ModelConfig, load_config

    model = load_config(args.config, {"data.dataset": str(args.dataset)}).model if args.config else ModelConfig()
    pre = model.preprocessing()
    pre = dataclasses.replace(
        pre,
        image_size=tuple(args.image_size) if args.image_size else pre.image_size,
        depth_size=tuple(args.depth_size) if args.depth_size else pre.depth_size,
    )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected an integer >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    degradations = [parse_degradation(d) for d in args.degrade]
    dataset = Dataset(args.dataset)
    ids = dataset.split(args.split)
    extractor = FeatureExtractor.build(args.backbone or model.backbone, pre, args.backbone_weights, args.device)
    for name, severity in [(None, 0), *degradations]:
        folder = build_cache(
            dataset,
            extractor,
            seq_ids=ids,
            cache_root=args.out,
            degradation=name,
            severity=severity,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        logger.info("feature cache ready: %s (%d sequences)", folder, len(ids))
    return 0
