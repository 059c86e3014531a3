from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model import R3D, Preprocessing, R3DConfig, build_backbone, prepare_inputs, save_checkpoint
from model.r3d import color_features
from rgbd.dataset import Dataset, read_depth
from server.batch.scoring import prepare_source_frame
from server.batch.sources import open_sequences
from server.engine import Engine, load_engine_backend
from server.protocol import FrameIn, SessionCreate, encode_frame, parse_client_message
from server.streaming.ingest import prepare_frame
from tests.training.train_fixtures import CLASSES, FRAMES, one_thread, shared_tiny_dataset, tiny_config
from training import features
from training.features import FeatureExtractor, build_cache, cache_dir, load_cache


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_dataset(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


PRE = Preprocessing(image_size=(60, 80), depth_size=(30, 40))


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor.build("efficientnet_lite0", PRE)


def test_cache_holds_float16_features_depth_maps_and_labels(tiny_dataset: Path, extractor: FeatureExtractor) -> None:
    folder = cache_dir(tiny_dataset, extractor.spec())
    assert folder.name == f"efficientnet_lite0-{extractor.digest[:12]}-img60x80-depth30x40-0.1-10m-minmax-v3"
    manifest = json.loads((folder / "cache.json").read_text())
    assert manifest["weights_sha256"] == extractor.digest and manifest["classes"] == CLASSES
    seq = load_cache(folder, ["seq00"])["seq00"]
    assert seq.rgb.shape == (FRAMES, 1280) and seq.rgb.dtype == np.float16
    assert seq.depth.shape == (FRAMES, 1, 30, 40) and seq.depth.dtype == np.float16
    assert seq.labels[3] == -1 and set(seq.labels.tolist()) - {-1} <= {0, 1, 2}
    np.testing.assert_allclose(seq.timestamps[:3], [0.0, 0.1, 0.2])


def test_cache_entries_equal_the_models_own_preprocessing(tiny_dataset: Path, extractor: FeatureExtractor) -> None:
    seq = load_cache(cache_dir(tiny_dataset, extractor.spec()), ["seq01"])["seq01"]
    ds = Dataset(tiny_dataset)
    rgb_path, depth_path = ds.frame_files("seq01", 5)
    image, depth = prepare_inputs(rgb_path.read_bytes(), read_depth(depth_path), ds.meta("seq01").depth_scale, PRE)
    np.testing.assert_array_equal(seq.depth[5], depth.astype(np.float16))
    backbone, _ = build_backbone("efficientnet_lite0", PRE.image_size)
    with torch.no_grad():
        rgb = backbone(torch.from_numpy(image)[None])[0].numpy()
    np.testing.assert_allclose(seq.rgb[5].astype(np.float32), rgb, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("depth_codec", ["png", "zstd"])
def test_feature_cache_streaming_and_batch_scoring_prepare_bit_identical_inputs(
    tiny_dataset: Path, extractor: FeatureExtractor, tmp_path: Path, depth_codec: str
) -> None:
    """The same JPEG file and depth PNG (160x120 frames, a 80x60 model: the JPEG is decoded at 1/2 scale): the
    cache's path, the server's streaming frame path and batch scoring's dataset path give equal tensors."""
    ds = Dataset(tiny_dataset)
    meta = ds.meta("seq01")
    cached = list(features._raw_frames(ds, "seq01", meta, None, 0))[4]
    image, depth = (torch.from_numpy(a) for a in extractor.inputs(*cached, meta.depth_scale, None))
    cfg = R3DConfig(classes=list(CLASSES), window_s=1.0, max_len=32, preprocessing=PRE)
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", R3D(cfg).eval())
    engine = Engine(load_engine_backend(checkpoint, "pytorch", None, False), "test")
    jpeg, depth_map = ds.frame_files("seq01", 4)[0].read_bytes(), read_depth(ds.frame_files("seq01", 4)[1])
    wire = encode_frame(ds.frame("seq01", 4).rgb, depth_map, 0.0, 0, depth_codec=depth_codec)
    msg = parse_client_message(wire)
    assert isinstance(msg, FrameIn)
    msg = msg.model_copy(update={"color": jpeg})  # the dataset's own JPEG bytes on the wire
    h, w = depth_map.shape
    stream = SessionCreate(width=w, height=h, depth_scale=meta.depth_scale)
    served = prepare_frame(engine, stream, msg, 0.0)
    assert torch.equal(image, torch.from_numpy(served.image))
    assert torch.equal(depth, torch.from_numpy(served.depth))
    (source,) = open_sequences(tiny_dataset, tmp_path, ["seq01"])  # what a batch job over the dataset reads
    batch_image, batch_depth = prepare_source_frame(engine, list(source.frames())[4], 4)
    assert torch.equal(image, torch.from_numpy(batch_image))
    assert torch.equal(depth, torch.from_numpy(batch_depth))


def test_person_mask_is_identical_in_the_cache_a_session_and_batch_scoring(tiny_dataset: Path, tmp_path: Path) -> None:
    """The person channel depends on the frames before (model/person.py): each path runs one locator per sequence
    or session from its first frame, and the three agree frame by frame; the cache stores exactly that."""
    pre = Preprocessing(image_size=(60, 80), depth_size=(30, 40), depth_input="metric", person_mask="background")
    extractor = FeatureExtractor.build("efficientnet_lite0", pre)
    ds = Dataset(tiny_dataset)
    meta = ds.meta("seq01")
    cfg = R3DConfig(classes=list(CLASSES), window_s=1.0, max_len=32, preprocessing=pre, depth_encoder="person")
    engine = Engine(load_engine_backend(save_checkpoint(tmp_path / "p.safetensors", R3D(cfg).eval()), "pytorch",
                                        None, False), "test")  # fmt: skip
    (source,) = open_sequences(tiny_dataset, tmp_path, ["seq01"])
    cache_locator, session_locator, batch_locator = pre.locator(), pre.locator(), pre.locator()
    frames = zip(features._raw_frames(ds, "seq01", meta, None, 0), source.frames(), strict=True)
    masks = []
    for i, ((color, depth_map), stored) in enumerate(frames):
        stream = SessionCreate(width=depth_map.shape[1], height=depth_map.shape[0], depth_scale=meta.depth_scale)
        _, cached = extractor.inputs(color, depth_map, meta.depth_scale, cache_locator)
        wire = parse_client_message(encode_frame(ds.frame("seq01", i).rgb, depth_map, i / 15, i))
        assert isinstance(wire, FrameIn)
        served = prepare_frame(engine, stream, wire.model_copy(update={"color": color}), 0.0, session_locator)
        _, batch = prepare_source_frame(engine, stored, i, batch_locator)
        assert cached.shape == (3, 30, 40)
        np.testing.assert_array_equal(served.depth, cached)
        np.testing.assert_array_equal(batch, cached)
        masks.append(cached[2])
    assert masks[0].sum() == 0 and any(m.sum() > 0 for m in masks)  # the person appears once the room is seen
    folder = build_cache(ds, extractor, seq_ids=["seq01"], cache_root=tmp_path / "cache", progress=False)
    stored_masks = load_cache(folder, ["seq01"])["seq01"].depth[:, 2]
    np.testing.assert_array_equal(stored_masks, np.stack(masks).astype(np.float16))


def test_person_colour_cache_adds_crop_features_and_reuses_the_frame_cache(tiny_dataset: Path, tmp_path: Path) -> None:
    """color_view frame+person: rgb holds the whole frame's features, then the person crop's. The whole-frame half
    comes from the frame cache where it exists (bit-identical to computing it), and both halves are what the
    FrameEncoder computes from the served inputs."""
    frame_pre = Preprocessing(image_size=(60, 80), depth_size=(30, 40), depth_input="metric", person_mask="background")
    pre = dataclasses.replace(frame_pre, color_view="frame+person")
    ds = Dataset(tiny_dataset)
    frame_ex, person_ex = (
        FeatureExtractor.build("efficientnet_lite0", frame_pre),
        FeatureExtractor.build("efficientnet_lite0", pre),
    )
    frame = build_cache(ds, frame_ex, seq_ids=["seq01"], cache_root=tmp_path / "a", progress=False)
    reused = build_cache(ds, person_ex, seq_ids=["seq01"], cache_root=tmp_path / "a", progress=False)
    fresh = build_cache(ds, person_ex, seq_ids=["seq01"], cache_root=tmp_path / "b", progress=False)
    assert reused.name == frame.name.replace("-v3", "-color-frame-person-v3")
    # a whole-frame cache's manifest is the one written before colour views existed: those caches stay valid
    manifests = [json.loads((folder / "cache.json").read_text())["preprocessing"] for folder in (frame, reused)]
    assert "color_view" not in manifests[0] and manifests[1]["color_view"] == "frame+person"
    a, b, c = (load_cache(folder, ["seq01"])["seq01"] for folder in (frame, reused, fresh))
    assert b.rgb.shape == (FRAMES, 2 * 1280)
    np.testing.assert_array_equal(b.rgb[:, :1280], a.rgb)
    np.testing.assert_array_equal(b.rgb, c.rgb)
    np.testing.assert_array_equal(b.depth, a.depth)
    meta, locator = ds.meta("seq01"), pre.locator()
    inputs = [
        person_ex.inputs(*raw, meta.depth_scale, locator) for raw in features._raw_frames(ds, "seq01", meta, None, 0)
    ]
    found = [i for i, (_, depth) in enumerate(inputs) if depth[2].any()]
    assert found, "the tiny world's person should be found in some frame"
    image, depth = (torch.from_numpy(np.stack(x)) for x in zip(*inputs, strict=True))
    with torch.no_grad():
        served = color_features(person_ex.backbone, image, depth, "frame+person").numpy()
    np.testing.assert_allclose(b.rgb.astype(np.float32), served, rtol=1e-2, atol=1e-2)
    assert np.abs(served[found, 1280:] - served[found, :1280]).mean() > 0.05  # the crop is a view of its own


def test_a_cache_takes_whole_frame_features_from_another_with_the_same_colour_input(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Colour does not depend on the depth settings: a cache without the person mask takes its rgb from one with it
    (the backbone does not run); a cache of another image size is not a source."""
    ds = Dataset(tiny_dataset)
    person = Preprocessing(image_size=(60, 80), depth_size=(30, 40), depth_input="metric", person_mask="background")
    source = build_cache(ds, FeatureExtractor.build("efficientnet_lite0", person), seq_ids=["seq00"],
                         cache_root=tmp_path, progress=False)  # fmt: skip
    plain = FeatureExtractor.build("efficientnet_lite0", dataclasses.replace(person, person_mask="none"))
    calls: list[int] = []
    plain.backbone.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    folder = build_cache(ds, plain, seq_ids=["seq00"], cache_root=tmp_path, progress=False)
    assert calls == []
    a, b = load_cache(source, ["seq00"])["seq00"], load_cache(folder, ["seq00"])["seq00"]
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert a.depth.shape[1] == 3 and b.depth.shape[1] == 2
    other_size = FeatureExtractor.build("efficientnet_lite0", dataclasses.replace(person, image_size=(30, 40)))
    other_size.backbone.register_forward_hook(lambda _m, args, _out: calls.append(len(args[0])))
    build_cache(ds, other_size, seq_ids=["seq00"], cache_root=tmp_path, progress=False)
    assert sum(calls) == FRAMES


def test_build_cache_skips_finished_sequences_and_redoes_missing_ones(
    tiny_dataset: Path, extractor: FeatureExtractor, tmp_path: Path
) -> None:
    ds = Dataset(tiny_dataset)
    shared = cache_dir(tiny_dataset, extractor.spec())
    folder = cache_dir(tiny_dataset, extractor.spec(), tmp_path)
    folder.mkdir(parents=True)
    for name in ("cache.json", "seq00.npz"):  # as if a run had been killed after its first sequence
        shutil.copy2(shared / name, folder / name)
    kept, missing = folder / "seq00.npz", folder / "seq01.npz"
    stamp = kept.stat().st_mtime_ns
    build_cache(ds, extractor, seq_ids=["seq00", "seq01"], cache_root=tmp_path, progress=False)
    assert kept.stat().st_mtime_ns == stamp
    assert missing.is_file() and not list(folder.glob(".*.tmp"))
    with np.load(missing) as new, np.load(shared / "seq01.npz") as old:
        np.testing.assert_array_equal(new["rgb"], old["rgb"])


def test_cache_built_for_other_settings_is_refused(
    tiny_dataset: Path, extractor: FeatureExtractor, tmp_path: Path
) -> None:
    folder = cache_dir(tiny_dataset, extractor.spec(), tmp_path)
    folder.mkdir(parents=True)
    (folder / "cache.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="was built for"):
        build_cache(Dataset(tiny_dataset), extractor, seq_ids=["seq00"], cache_root=tmp_path, progress=False)


def test_a_manifest_with_or_without_the_later_fields_at_their_off_values_is_the_same_cache(
    tiny_dataset: Path, extractor: FeatureExtractor, tmp_path: Path
) -> None:
    """Caches written before person_mask / color_view existed lack them; caches written since with them off name
    them: both stay valid for the same settings, and a later field turned on is another cache."""
    ds = Dataset(tiny_dataset)
    folder = build_cache(ds, extractor, seq_ids=["seq00"], cache_root=tmp_path, progress=False)
    manifest = json.loads((folder / "cache.json").read_text())
    assert not {"person_mask", "color_view"} & set(manifest["preprocessing"])
    manifest["preprocessing"] |= {"person_mask": "none", "color_view": "frame"}
    (folder / "cache.json").write_text(json.dumps(manifest))
    assert build_cache(ds, extractor, seq_ids=["seq00", "seq01"], cache_root=tmp_path, progress=False) == folder
    manifest["preprocessing"]["person_mask"] = "background"
    (folder / "cache.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="was built for"):
        build_cache(ds, extractor, seq_ids=["seq02"], cache_root=tmp_path, progress=False)


def test_depth_degradation_reuses_clean_rgb_and_changes_depth(
    tiny_dataset: Path, extractor: FeatureExtractor, tmp_path: Path
) -> None:

    ds = Dataset(tiny_dataset)
    clean = build_cache(ds, extractor, seq_ids=["seq02"], cache_root=tmp_path, progress=False)
    holes = build_cache(
        ds, extractor, seq_ids=["seq02"], cache_root=tmp_path, degradation="depth_holes", severity=3, progress=False
    )
    assert holes.name == clean.name + "-depth_holes-s3"
    a, b = load_cache(clean, ["seq02"])["seq02"], load_cache(holes, ["seq02"])["seq02"]
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert np.abs(a.depth.astype(np.float32) - b.depth.astype(np.float32)).mean() > 0.05


def test_features_verb_builds_the_requested_split(tiny_dataset: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    features.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "features",
            str(tiny_dataset),
            "--out",
            str(tmp_path),
            "--split",
            "test",
            "--image-size",
            "60",
            "80",
            "--depth-size",
            "30",
            "40",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    (folder,) = tmp_path.iterdir()
    assert sorted(p.stem for p in folder.glob("*.npz")) == sorted(Dataset(tiny_dataset).split("test"))


def test_features_verb_takes_preprocessing_from_a_recipe(tiny_dataset: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  image_size: [60, 80]\n  depth_size: [30, 40]\n")
    parser = argparse.ArgumentParser()
    features.register(parser.add_subparsers())
    args = parser.parse_args(
        ["features", str(tiny_dataset), "--config", str(recipe), "--split", "val", "--no-progress"]
    )
    assert args.func(args) == 0  # the tiny dataset's own cache is already complete: nothing is recomputed
    assert tiny_config(tiny_dataset, tmp_path).model.preprocessing() == PRE


def test_features_verb_rejects_unknown_degradation(tiny_dataset: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    features.register(parser.add_subparsers())
    args = parser.parse_args(["features", str(tiny_dataset), "--out", str(tmp_path), "--degrade", "fog:2"])
    with pytest.raises(ValueError, match="unknown degradation 'fog'"):
        args.func(args)
