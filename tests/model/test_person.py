"""Where the person is (model/person.py), the person-mask depth channel and the person-aware depth encoder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import export_frame_encoder
from model import R3D, ConfigError, Preprocessing, load_checkpoint, save_checkpoint
from model.person import PersonLocator, largest_region
from model.preprocess import prepare_depth, preprocess_depth
from model.r3d import COLOR_CROP, PersonDepthEncoder, color_views
from tests.model.conftest import tiny_config

PERSON = Preprocessing(depth_size=(60, 80), depth_input="metric", person_mask="background")


def _room(h: int = 120, w: int = 160) -> np.ndarray:
    """A wall at 4 m with a table at 2.5 m in the lower left, in millimetres."""
    depth = np.full((h, w), 4000, np.uint16)
    depth[80:, :50] = 2500
    return depth


def _with_person(depth: np.ndarray, top: int, left: int, height: int = 40, width: int = 14) -> np.ndarray:
    out = depth.copy()
    out[top : top + height, left : left + width] = 2000
    return out


def test_background_locator_finds_the_person_only_where_the_room_was_seen_behind_them() -> None:
    locator = PersonLocator("background")
    first = prepare_depth(_with_person(_room(), 30, 100), 0.001, PERSON, locator)
    assert first.shape == (3, 60, 80)
    assert first[2].sum() == 0  # the first frame is all the room the locator knows: nothing is in front of it
    moved = prepare_depth(_with_person(_room(), 30, 20), 0.001, PERSON, locator)
    expected = np.zeros((60, 80), np.float32)
    expected[15:35, 10:17] = 1  # 40x14 sensor pixels at 2x2 per model pixel
    np.testing.assert_array_equal(moved[2], expected)
    back = prepare_depth(_with_person(_room(), 30, 100), 0.001, PERSON, locator)
    assert back[2][15:35, 50:57].all() and back[2].sum() == 20 * 7  # the wall behind was seen meanwhile


def test_locator_keeps_the_largest_region_and_ignores_specks() -> None:
    fg = np.zeros((20, 20), bool)
    fg[2:10, 2:6] = True  # 32 pixels
    fg[15:17, 15:17] = True  # 4 pixels
    mask = largest_region(fg)
    assert mask.sum() == 32 and mask[2:10, 2:6].all()
    speck = np.zeros((20, 20), bool)
    speck[5, 5] = speck[5, 6] = True
    assert largest_region(speck).sum() == 0


def test_segmented_locator_marks_every_valid_pixel_of_a_background_removed_map() -> None:
    pre = Preprocessing(depth_size=(60, 80), depth_input="metric", person_mask="segmented")
    depth = np.zeros((120, 160), np.uint16)  # UTD-MHAD style: the background is 0
    depth[20:100, 60:90] = 2500
    out = prepare_depth(depth, 0.001, pre, pre.locator())
    assert out[2].sum() == 40 * 15 and out[2][10:50, 30:45].all()


def test_person_mask_needs_the_metric_input_and_a_locator_of_its_mode() -> None:
    with pytest.raises(ConfigError, match="person_mask 'background' needs depth_input 'metric', got 'minmax'"):
        Preprocessing(person_mask="background")
    with pytest.raises(ConfigError, match=r"person_mask: expected one of \['none', 'background', 'segmented'\]"):
        Preprocessing(depth_input="metric", person_mask="skeleton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the stream's PersonLocator"):
        prepare_depth(_room(), 0.001, PERSON)
    with pytest.raises(ValueError, match="needs the stream's PersonLocator"):
        prepare_depth(_room(), 0.001, PERSON, PersonLocator("segmented"))
    assert Preprocessing(depth_input="metric").locator() is None and PERSON.depth_channels == 3


def test_preprocess_depth_treats_a_batch_as_one_stream_in_order() -> None:
    frames = np.stack([_with_person(_room(), 30, 100), _with_person(_room(), 30, 20)])
    out = preprocess_depth(frames, 0.001, PERSON).numpy()
    locator = PERSON.locator()
    one_by_one = [prepare_depth(f, 0.001, PERSON, locator) for f in frames]
    np.testing.assert_array_equal(out, np.stack(one_by_one))
    assert out[1, 2].sum() == 20 * 7


def _maps(masks: list[tuple[slice, slice] | None], size: tuple[int, int] = (60, 80)) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(len(masks), 3, *size)
    x[:, 0] = torch.randn(len(masks), *size, generator=g) * 0.1
    x[:, 1] = 1.0
    for i, box in enumerate(masks):
        if box is not None:
            x[i, 2][box] = 1.0
    return x


def test_person_encoder_crops_around_the_mask_wherever_it_is() -> None:
    encoder = PersonDepthEncoder(32)
    captured: list[torch.Tensor] = []
    encoder.pose.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    boxes = [(slice(10, 34), slice(8, 16)), (slice(30, 54), slice(60, 68)), None]
    with torch.no_grad():
        tokens = encoder(_maps(boxes))
    crop = captured[0]  # (N, 2, 32, 16): relative depth, mask
    assert crop.shape == (3, 2, 32, 16)
    for i in (0, 1):  # the mask fills the middle of its crop, wherever it is in the frame
        mask = crop[i, 1]
        assert mask[12:20, 6:10].min() > 0.99 and mask.sum() > 0.4 * mask.numel()
    assert torch.allclose(crop[0, 1], crop[1, 1], atol=1e-5)  # same silhouette, same crop
    assert crop[2].abs().sum() == 0  # no person: an empty crop
    assert not torch.allclose(tokens[0], tokens[1])  # where the person stands still tells the tokens apart


def test_person_encoder_crop_holds_a_silhouette_wider_than_it_is_tall() -> None:
    """Someone lying down or with arms spread: the box grows with the horizontal spread so the whole silhouette
    stays inside the crop (its left and right edges are empty) instead of being cut off at the sides."""
    encoder = PersonDepthEncoder(32)
    captured: list[torch.Tensor] = []
    encoder.pose.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    with torch.no_grad():
        encoder(_maps([(slice(28, 34), slice(20, 60))]))  # 6 px tall, 40 px wide
    mask = captured[0][0, 1]  # (32, 16)
    assert mask[:, 0].max() < 0.05 and mask[:, -1].max() < 0.05  # nothing cut off at the sides
    assert mask[:, 4:12].max() > 0.99  # and the silhouette is there


def test_person_crop_size_is_configured_and_survives_a_checkpoint(tmp_path: Path) -> None:
    """A finer crop on a finer depth map (model.person_crop): the pose CNN sees the person at that size, and a
    checkpoint (whose config is JSON: lists) rebuilds the same model."""
    pre = Preprocessing(depth_size=(120, 160), depth_input="metric", person_mask="background")
    model = R3D(tiny_config(depth_encoder="person", preprocessing=pre, person_crop=(64, 32)), with_backbone=False)
    captured: list[torch.Tensor] = []
    model.frame_encoder.depth_proj.pose.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    with torch.no_grad():
        model.frame_encoder.depth_proj(_maps([(slice(20, 68), slice(16, 32))], size=(120, 160)))
    assert captured[0].shape == (1, 2, 64, 32) and captured[0][0, 1, 24:40, 12:20].min() > 0.99
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model.eval()), with_backbone=False)
    assert loaded.cfg.person_crop == (64, 32)
    with pytest.raises(ConfigError, match=r"person_crop: expected \(H, W\) of at least 4 pixels each, got \(2, 16\)"):
        tiny_config(depth_encoder="person", preprocessing=pre, person_crop=(2, 16))
    with pytest.raises(
        ConfigError, match=r"person_crop: expected \(H, W\) of at least 4 pixels each, got \(64, 32, 3\)"
    ):
        tiny_config(depth_encoder="person", preprocessing=pre, person_crop=(64, 32, 3))  # not cut silently to (H, W)


def test_person_encoder_goes_with_a_person_mask_and_only_with_it() -> None:
    with pytest.raises(ConfigError, match="depth_encoder 'person' goes with a person mask and only with it"):
        tiny_config(depth_encoder="person", preprocessing=Preprocessing(depth_size=(24, 32), depth_input="metric"))
    with pytest.raises(ConfigError, match="depth_encoder 'person' goes with a person mask and only with it"):
        tiny_config(depth_encoder="conv", preprocessing=PERSON)


def test_color_person_view_is_the_image_cropped_around_the_depth_mask() -> None:
    """The mask, found on the 60x80 depth map, crops the aligned 120x160 colour image: a bright figure where the
    mask is fills the middle of the crop, wherever it stands; no person gives an empty crop."""
    boxes = [(slice(10, 34), slice(8, 16)), (slice(30, 54), slice(60, 68)), None]
    depths = _maps(boxes)
    images = torch.zeros(3, 3, 120, 160)
    images[0, :, 20:68, 16:32] = 2.0  # the same figure at colour resolution (twice the depth map's)
    images[1, :, 60:108, 120:136] = 2.0
    images[2, :, 20:68, 16:32] = 2.0  # colour, but no person in depth
    frame, crop = color_views(images, depths, "frame+person")
    assert torch.equal(frame, images) and crop.shape == (3, 3, *COLOR_CROP)
    ch, cw = COLOR_CROP
    for i in (0, 1):
        assert crop[i, :, ch // 2 - 8 : ch // 2 + 8, cw // 2 - 4 : cw // 2 + 4].min() > 1.99
        assert crop[i, :, :, 0].max() < 0.1 and crop[i, :, :, -1].max() < 0.1  # the figure is inside, with a margin
    assert torch.allclose(crop[0], crop[1], atol=1e-5)
    assert crop[2].abs().sum() == 0
    assert color_views(images, depths, "frame") == [images]


def test_color_person_view_needs_a_person_mask() -> None:
    with pytest.raises(ConfigError, match="color_view 'frame\\+person' needs a person mask"):
        Preprocessing(depth_input="metric", color_view="frame+person")
    with pytest.raises(ConfigError, match=r"color_view: expected one of \['frame', 'frame\+person'\]"):
        Preprocessing(color_view="person")  # type: ignore[arg-type]
    assert Preprocessing(depth_input="metric", person_mask="background", color_view="frame+person").color_views == 2


@pytest.mark.parametrize("color_view", ["frame", "frame+person"])
def test_person_frame_encoder_exports_to_onnx_with_parity(tmp_path: Path, color_view: str) -> None:
    torch.manual_seed(0)
    pre = Preprocessing(depth_size=(24, 32), depth_input="metric", person_mask="background", color_view=color_view)  # type: ignore[arg-type]
    model = R3D(tiny_config(depth_encoder="person", preprocessing=pre)).eval()
    session = ort.InferenceSession(
        str(export_frame_encoder(model, tmp_path / "fe.onnx")), providers=["CPUExecutionProvider"]
    )
    images = np.random.default_rng(0).standard_normal((3, 3, 120, 160)).astype(np.float32)
    depths = _maps([(slice(4, 14), slice(10, 14)), (slice(0, 3), slice(0, 2)), None], size=(24, 32)).numpy()
    with torch.no_grad():
        ref = model.frame_encoder(torch.from_numpy(images), torch.from_numpy(depths)).numpy()
    got = session.run(None, {"image": images, "depth": depths})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_person_locator_keeps_working_after_crossing_processes_with_read_only_arrays() -> None:
    """Ray hands a cluster's FrameEncoder the session's locator by pickle with out-of-band buffers: its arrays come
    back read-only, and the next frame must still update the room (a ValueError before)."""
    valid = np.ones((6, 8), bool)
    locator = PersonLocator("background")
    locator(np.full((6, 8), 3.0, np.float32), valid)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(locator, protocol=5, buffer_callback=buffers.append)
    moved: PersonLocator = pickle.loads(data, buffers=[bytes(b.raw()) for b in buffers])
    assert moved.room is not None and not moved.room.flags.writeable
    person = np.full((6, 8), 4.0, np.float32)
    person[1:5, 2:6] = 1.5  # a person 2.5 m in front of a wall that moved back to 4 m
    mask = moved(person, valid)
    assert float(moved.room.max()) == 4.0 and mask[1:5, 2:6].all() and mask.sum() == 16
