"""R3D: depth-informed action anticipation with the Rank-enhancing Token Fuser.

Kim, Kokilepersaud, Prabhushankar, AlRegib, "Countering Multi-modal Representation Collapse through Rank-targeted
Fusion", WACV 2026. The network (docs/paper.md section 2), split for real-time use (docs/architecture.md):

  FrameEncoder   per frame:  RGB image -> frozen ImageNet CNN -> Linear(F, C) + ReLU      = r_t
                               (color_view "frame+person": the CNN also pools a crop around the person, found
                               from depth, and Linear(2F, C) takes both)
                             depth map -> depth encoder                                   = d_t
                               "linear" (the paper): flatten -> Linear(h*w*ch, C) + LayerNorm + ReLU
                               "conv": strided convolutions + GroupNorm + GELU -> spatial pooling -> Linear
  Anticipator    per window: (r_t, d_t) -> TokenFuser (RTF) -> f_t -> + positions -> temporal encoder (memory)
                             -> decoder with N_q action queries -> action logits, duration logits per query
                             memory -> segmentation logits per observed frame

Classes are the dataset's labels plus NONE (the last index), the end-of-transcript class of the action queries.
The anticipator divides its current-action (segmentation) and action-query logits by temperatures fitted on the
validation split after training (1.0 until then), so every consumer (evaluation, export, the service) gets the
calibrated probabilities from the model itself.
Padded frames (valid = False) never influence an un-padded frame's or sample's outputs.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from model.backbones import PooledBackbone, backbone_spec, build_backbone
from model.errors import ConfigError, WindowTooLongError
from model.preprocess import Preprocessing
from model.rtf import EXCHANGES, MIXERS, SELECTIONS, FusionOutput, TokenFuser

# name -> (exchange, mixer): the paper's comparisons as configurations of one fuser
FUSIONS: dict[str, tuple[str, str]] = {
    "rtf": ("blend", "cross"),  # R3D
    "cen": ("hard", "cross"),  # hard channel exchange without blending (CEN-style)
    "attention": ("none", "cross"),  # cross-modal attention without exchange (AFFT-style)
    "concat": ("none", "concat"),  # concatenation fusion
    "rgb": ("none", "rgb"),  # RGB only (FUTR)
    "depth": ("none", "depth"),  # depth only
}


class TemporalEncoderLayer(nn.Module):
    """DETR post-norm encoder layer: positions added to queries and keys, not values."""

    def __init__(self, c: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(c, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, c))
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor, blocked: torch.Tensor | None = None
    ) -> torch.Tensor:
        """blocked: None, or (B * heads, T, T) True where a frame may not attend to a key (causal_blocks)."""
        q = x + pos
        attended = self.attn(q, q, x, key_padding_mask=pad, attn_mask=blocked, need_weights=False)[0]
        x = self.norm1(x + self.drop(attended))
        out: torch.Tensor = self.norm2(x + self.drop(self.ffn(x)))
        return out


def causal_blocks(valid: torch.Tensor, heads: int) -> torch.Tensor:
    """valid (B, T) -> (B * heads, T, T) attention mask, True where a frame may not look: every later frame. A
    padding row is left free (padding keys are masked anyway), so that no row is left with no key to attend to."""
    t = valid.shape[1]
    later = torch.ones(t, t, dtype=torch.bool, device=valid.device).triu(diagonal=1)
    return (later.unsqueeze(0) & valid.unsqueeze(2)).repeat_interleave(heads, dim=0)


class ActionDecoder(nn.Module):
    """One DETR decoder layer with learned action queries (the target starts at zero) and a final LayerNorm.

    With `value_positions` the self-attention's values are target + query position too, not the target alone: the
    target starts at zero, so without it every query leaves self-attention with the same state (an ablation flag).
    """

    def __init__(self, c: int, heads: int, ffn: int, dropout: float, n_queries: int, value_positions: bool) -> None:
        super().__init__()
        self.value_positions = value_positions
        self.queries = nn.Embedding(n_queries, c)
        self.self_attn = nn.MultiheadAttention(c, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(c, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, c))
        self.norm1, self.norm2, self.norm3, self.norm_f = (nn.LayerNorm(c) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, memory: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """memory (B, T, C) -> query states (B, Q, C)."""
        qpos = self.queries.weight.unsqueeze(0).expand(memory.shape[0], -1, -1)  # (B, Q, C)
        tgt = torch.zeros_like(qpos)
        q = tgt + qpos
        values = q if self.value_positions else tgt
        tgt = self.norm1(tgt + self.drop(self.self_attn(q, q, values, need_weights=False)[0]))
        attended = self.cross_attn(tgt + qpos, memory + pos, memory, key_padding_mask=pad, need_weights=False)[0]
        tgt = self.norm2(tgt + self.drop(attended))
        tgt = self.norm3(tgt + self.drop(self.ffn(tgt)))
        out: torch.Tensor = self.norm_f(tgt)
        return out


DEPTH_ENCODERS = ("linear", "conv", "person")


class ConvDepthEncoder(nn.Module):
    """Depth map (N, ch, h, w) -> token (N, C): a 4x4 stride-4 patch stem and two stride-2 3x3 convolutions, each with
    GroupNorm and GELU, average pooling to a coarse 3x4 grid (where the person is, not only what the room averages
    to), then Linear. The patch stem keeps it cheap: 0.57 ms per 60x80 frame forward + backward on one CPU core, the
    cost that decides that it trains end to end from the cached depth maps (a 3x3 stride-2 stem cost 3.4 ms).

    Nothing is dead by construction: GELU passes negative inputs (unlike ReLU after a normalisation) and the token is
    the Linear output itself.
    """

    WIDTHS = (16, 32, 64)
    GRID = (3, 4)

    def __init__(self, in_channels: int, c: int) -> None:
        super().__init__()
        stem, *rest = self.WIDTHS
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 4, stride=4), nn.GroupNorm(8, stem), nn.GELU()]
        width_in = stem
        for width in rest:
            layers += [nn.Conv2d(width_in, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU()]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(self.GRID)
        self.proj = nn.Linear(width_in * self.GRID[0] * self.GRID[1], c)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(self.pool(self.features(depth)).flatten(1))  # (N, 64, 3, 4) -> (N, C)
        return out


class PersonBox(NamedTuple):
    """Where the person mask of a batch of frames is, each (N, 1, 1, 1), in grid_sample's normalised coordinates."""

    cx: torch.Tensor  # centroid
    cy: torch.Tensor
    sx: torch.Tensor  # spread (standard deviation)
    sy: torch.Tensor
    area: torch.Tensor  # pixels of the mask
    found: torch.Tensor  # 1.0 where the mask has a pixel, else 0.0
    half_w: torch.Tensor  # the crop box around the centroid: twice as tall as wide, covering the spread
    half_h: torch.Tensor


# a uniform box of height H has std H / sqrt(12), so +-1.73 std spans it; 20 % margin around that
BOX_SPREADS = 1.73 * 1.2
PERSON_CROP = (32, 16)  # (H, W) the person depth encoder resamples the person to, unless configured otherwise


def person_box(mask: torch.Tensor) -> PersonBox:
    """Person mask (N, 1, h, w) in {0, 1} -> its PersonBox. Tensor arithmetic only (no data-dependent shapes), so
    it exports to ONNX and runs batched; an empty mask gives found 0 and a small box at the centre."""
    _, _, h, w = mask.shape
    # pixel centres in grid_sample's normalised coordinates (align_corners=False)
    ys = ((torch.arange(h, dtype=mask.dtype, device=mask.device) + 0.5) / h * 2 - 1).view(1, 1, h, 1)
    xs = ((torch.arange(w, dtype=mask.dtype, device=mask.device) + 0.5) / w * 2 - 1).view(1, 1, 1, w)
    area = mask.sum(dim=(2, 3), keepdim=True)  # (N, 1, 1, 1)
    found = (area > 0).to(mask.dtype)
    total = area.clamp_min(1.0)
    cx = (mask * xs).sum(dim=(2, 3), keepdim=True) / total
    cy = (mask * ys).sum(dim=(2, 3), keepdim=True) / total
    sx = ((mask * (xs - cx) ** 2).sum(dim=(2, 3), keepdim=True) / total).clamp_min(1e-6).sqrt()
    sy = ((mask * (ys - cy) ** 2).sum(dim=(2, 3), keepdim=True) / total).clamp_min(1e-6).sqrt()
    # half-height in normalised y (at least two pixels), tall enough that the half-width (half as many pixels)
    # also covers the horizontal spread: one normalised x unit is w / h normalised y units
    half_h = torch.maximum(sy, 2 * sx * w / h) * BOX_SPREADS + 2.0 / h
    half_w = half_h * h / (2 * w)
    return PersonBox(cx, cy, sx, sy, area, found, half_w, half_h)


def crop_offsets(size: tuple[int, int]) -> torch.Tensor:
    """A crop's sampling offsets in units of the box's half-size: (ch, cw, 2) as (x, y), for crop_around."""
    ch, cw = size
    ys = (torch.arange(ch, dtype=torch.float32) + 0.5) / ch * 2 - 1
    xs = (torch.arange(cw, dtype=torch.float32) + 0.5) / cw * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def crop_around(x: torch.Tensor, box: PersonBox, offsets: torch.Tensor) -> torch.Tensor:
    """x (N, ch, H, W) -> the box resampled (bilinear) to the offsets' size (N, ch, h', w'), zero where no
    person was found. Normalised coordinates do not depend on resolution: a box found on the depth map crops the
    aligned colour image as well."""
    n = x.shape[0]
    grid = torch.stack(
        [
            box.cx.view(n, 1, 1) + box.half_w.view(n, 1, 1) * offsets[..., 0],
            box.cy.view(n, 1, 1) + box.half_h.view(n, 1, 1) * offsets[..., 1],
        ],
        dim=-1,
    )  # (N, h', w', 2)
    out: torch.Tensor = F.grid_sample(x, grid, align_corners=False) * box.found
    return out


class PersonDepthEncoder(nn.Module):
    """Depth map with a person mask (N, 3, h, w): standardised metres, validity, person (model/person.py) ->
    token (N, C). The whole map goes through ConvDepthEncoder's layers (the room: where the crates and the table
    are); the person, a few pixels of it, is cropped around the mask (person_box) and looked at closely:

    - where: the mask's centroid and spread (first and second moments), mean depth, area, and whether a person
      was found at all (7 numbers; zeros when the mask is empty);
    - what pose: the person box resampled to `crop` (H, W) from depth relative to the person's mean depth (clipped
      to +-1 standardised unit) and the mask, then a small CNN.
    """

    WIDTHS = (16, 32, 64)
    CROP_GRID = (4, 2)

    def __init__(self, c: int, crop: tuple[int, int] = PERSON_CROP) -> None:
        super().__init__()
        self.room = ConvDepthEncoder(3, c)
        layers: list[nn.Module] = []
        width_in = 2
        for i, width in enumerate(self.WIDTHS):
            layers += [nn.Conv2d(width_in, width, 3, padding=1), nn.GroupNorm(8, width), nn.GELU()]
            if i < len(self.WIDTHS) - 1:
                layers.append(nn.MaxPool2d(2))
            width_in = width
        self.pose = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(self.CROP_GRID), nn.Flatten(1))
        room_dim = ConvDepthEncoder.WIDTHS[-1] * ConvDepthEncoder.GRID[0] * ConvDepthEncoder.GRID[1]
        pose_dim = width_in * self.CROP_GRID[0] * self.CROP_GRID[1]
        self.proj = nn.Linear(room_dim + pose_dim + 7, c)
        self.register_buffer("offsets", crop_offsets(crop), persistent=False)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        _, _, h, w = depth.shape
        metres, valid, mask = depth[:, 0:1], depth[:, 1:2], depth[:, 2:3]
        box = person_box(mask)
        person_depth = (mask * metres).sum(dim=(2, 3), keepdim=True) / box.area.clamp_min(1.0)
        relative = ((metres - person_depth) * valid).clamp(-1.0, 1.0)
        crop = crop_around(torch.cat([relative, mask], dim=1), box, self.get_buffer("offsets"))
        where = torch.cat([box.cx, box.cy, box.sx, box.sy, person_depth, box.area / (h * w), box.found], dim=1)
        where = where.flatten(1) * box.found.flatten(1)
        room = self.room.pool(self.room.features(depth)).flatten(1)
        out: torch.Tensor = self.proj(torch.cat([room, self.pose(crop), where], dim=1))
        return out


COLOR_CROP = (96, 48)  # (H, W) the backbone sees of the person: 24 % of a 120x160 frame's pixels


def color_views(image: torch.Tensor, depth: torch.Tensor, view: str) -> list[torch.Tensor]:
    """The images the frozen backbone pools for a frame's colour: [images (N, 3, H, W)] for "frame"; for
    "frame+person" also the image cropped around the person mask (depth channel 2, model/person.py) and resampled
    to COLOR_CROP."""
    if view == "frame":
        return [image]
    return [image, crop_around(image, person_box(depth[:, 2:3]), crop_offsets(COLOR_CROP).to(image))]


def color_features(backbone: PooledBackbone, image: torch.Tensor, depth: torch.Tensor, view: str) -> torch.Tensor:
    """The backbone's pooled features of the colour views, side by side: (N, F x views). One function for the
    FrameEncoder and the feature cache, so cached features are the served ones."""
    return torch.cat([backbone(v) for v in color_views(image, depth, view)], dim=1)


def build_depth_encoder(
    name: str, channels: int, size: tuple[int, int], c: int, person_crop: tuple[int, int] = PERSON_CROP
) -> nn.Module:
    """The depth branch: "linear" (the paper's Linear(h*w*ch -> C) + LayerNorm + ReLU), "conv", or "person" (needs
    the person-mask channel: Preprocessing.person_mask; person_crop is the (H, W) it resamples the person to)."""
    if name == "conv":
        return ConvDepthEncoder(channels, c)
    if name == "person":
        return PersonDepthEncoder(c, person_crop)
    h, w = size
    return nn.Sequential(nn.Flatten(1), nn.Linear(h * w * channels, c), nn.LayerNorm(c), nn.ReLU())


@dataclass
class R3DConfig:
    """Everything needed to rebuild an R3D model; serialised into every checkpoint."""

    classes: list[str]  # action labels of the dataset; NONE is appended internally as the last index
    fusion: str = "rtf"  # "rtf" (R3D), "cen", "attention", "concat", "rgb" or "depth" (FUSIONS)
    exchange_ratio: float = 0.1  # rho: share of channels exchanged per modality (paper ablates 0.1 / 0.2 / 0.3)
    selection: str = "gamma"  # "gamma": smallest |BatchNorm gamma|, fixed at inference; "variance": per sample
    hidden: int = 128  # C
    backbone: str = "efficientnet_lite0"
    backbone_weights_sha256: str = ""  # filled when the backbone is built; checked when a checkpoint loads
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    depth_encoder: str = "linear"  # one of DEPTH_ENCODERS; "linear" is the paper's branch
    person_crop: tuple[int, int] = PERSON_CROP  # (H, W) the person depth encoder resamples the person to
    temporal_encoder: bool = True  # False: memory = fused tokens (the authors' last code version; ablation)
    # the temporal encoder lets a frame attend only to itself and earlier frames, as the served last frame does
    # (False: every frame of the window, later ones too, as the paper's encoder)
    causal_encoder: bool = False
    encoder_layers: int = 2
    heads: int = 8
    ffn: int = 512
    dropout: float = 0.1
    n_queries: int = 8
    max_len: int = 2000  # positional table size: the longest token window
    position_init_std: float = 1.0  # std of the positional table at initialisation (1.0: nn.Embedding's default)
    decoder_value_positions: bool = False  # decoder self-attention values carry the query positions (ablation)
    segment_temperature: float = 1.0  # current-action logits are divided by it (fitted on validation after training)
    action_temperature: float = 1.0  # action-query logits are divided by it (fitted on validation after training)
    fps: float = 15.0  # frame rate the model was trained at; streams are resampled to it
    window_s: float = 8.0  # observation window of the streaming protocol (seconds)
    horizon_s: float = 8.0  # anticipation horizon of the streaming protocol (seconds)

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, dict):
            pre: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in self.preprocessing.items()}
            self.preprocessing = Preprocessing(**pre)
        self.person_crop = tuple(int(x) for x in self.person_crop)  # type: ignore[assignment]  # a list, from JSON
        problems = []
        if not self.classes or len(set(self.classes)) != len(self.classes) or "NONE" in self.classes:
            problems.append(f"classes: expected distinct names without 'NONE', got {self.classes!r}")
        if self.fusion not in FUSIONS:
            problems.append(f"fusion: expected one of {sorted(FUSIONS)}, got {self.fusion!r}")
        if self.selection not in SELECTIONS:
            problems.append(f"selection: expected one of {SELECTIONS}, got {self.selection!r}")
        if not 0 < self.exchange_ratio < 1:
            problems.append(f"exchange_ratio: expected a value in (0, 1), got {self.exchange_ratio!r}")
        if self.depth_encoder not in DEPTH_ENCODERS:
            problems.append(f"depth_encoder: expected one of {DEPTH_ENCODERS}, got {self.depth_encoder!r}")
        elif (self.depth_encoder == "person") != (self.preprocessing.person_mask != "none"):
            problems.append(
                f"depth_encoder 'person' goes with a person mask and only with it; got depth_encoder "
                f"{self.depth_encoder!r} and preprocessing.person_mask {self.preprocessing.person_mask!r}"
            )
        if len(self.person_crop) != 2 or min(self.person_crop) < 4:
            problems.append(f"person_crop: expected (H, W) of at least 4 pixels each, got {self.person_crop}")
        for name in ("position_init_std", "segment_temperature", "action_temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        if self.hidden % self.heads:
            problems.append(f"hidden: expected a multiple of heads={self.heads}, got {self.hidden}")
        for name in ("fps", "window_s", "horizon_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        if self.window_frames > self.max_len:
            problems.append(f"window_s: {self.window_s} s at {self.fps} fps exceeds max_len={self.max_len} frames")
        if problems:
            raise ConfigError("invalid R3DConfig: " + "; ".join(problems))
        self.classes = list(self.classes)
        backbone_spec(self.backbone)  # unknown names fail here, with the list of known ones

    @property
    def uses_color(self) -> bool:
        """False for the depth-only fusion, whose output ignores the colour token: it serves depth-only cameras."""
        return FUSIONS[self.fusion][1] != "depth"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def none_index(self) -> int:
        return len(self.classes)

    @property
    def window_frames(self) -> int:
        return max(1, round(self.window_s * self.fps))

    @property
    def feature_dim(self) -> int:
        return backbone_spec(self.backbone).feature_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> R3DConfig:
        known = cls.__dataclass_fields__
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown R3DConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)


class FrameEncoder(nn.Module):
    """One frame's RGB image and depth map -> its two modality tokens (B, 2, C), run once per arriving frame."""

    def __init__(self, cfg: R3DConfig, backbone: PooledBackbone | None) -> None:
        super().__init__()
        pre = cfg.preprocessing
        self.backbone = backbone  # frozen; None when training from cached features
        self.color_view = pre.color_view
        self.rgb_proj = nn.Sequential(nn.Linear(cfg.feature_dim * pre.color_views, cfg.hidden), nn.ReLU())
        self.depth_proj = build_depth_encoder(
            cfg.depth_encoder, pre.depth_channels, pre.depth_size, cfg.hidden, cfg.person_crop
        )

    def project(self, features: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, F x colour views) and depth maps (N, ch, h, w) -> tokens (N, 2, C)."""
        return torch.stack([self.rgb_proj(features), self.depth_proj(depth)], dim=1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) and depth maps (N, ch, h, w) -> tokens (N, 2, C)."""
        if self.backbone is None:
            raise RuntimeError("this FrameEncoder was built without its backbone; use project() on cached features")
        return self.project(color_features(self.backbone, image, depth, self.color_view), depth)


class AnticipatorOutput(NamedTuple):
    action_logits: torch.Tensor  # (B, Q, K + 1), NONE last
    duration_logits: torch.Tensor  # (B, Q)
    segment_logits: torch.Tensor  # (B, T, K), per observed frame
    fused: torch.Tensor  # (B, T, C) fused tokens, for the modality-health and rank analyses


class Anticipator(nn.Module):
    """A window of buffered modality tokens -> what is happening now and what comes next."""

    def __init__(self, cfg: R3DConfig) -> None:
        super().__init__()
        c, k = cfg.hidden, cfg.n_classes
        exchange, mixer = FUSIONS[cfg.fusion]
        assert exchange in EXCHANGES and mixer in MIXERS
        self.max_len, self.heads, self.causal = cfg.max_len, cfg.heads, cfg.causal_encoder
        self.segment_temperature, self.action_temperature = cfg.segment_temperature, cfg.action_temperature
        self.fuser = TokenFuser(c, exchange, mixer, cfg.selection, cfg.exchange_ratio, cfg.dropout)
        self.positions = nn.Embedding(cfg.max_len, c)
        nn.init.normal_(self.positions.weight, std=cfg.position_init_std)
        self.encoder = nn.ModuleList(
            TemporalEncoderLayer(c, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.encoder_layers)
        ) if cfg.temporal_encoder else nn.ModuleList()  # fmt: skip
        self.decoder = ActionDecoder(c, cfg.heads, cfg.ffn, cfg.dropout, cfg.n_queries, cfg.decoder_value_positions)
        self.action_head = nn.Linear(c, k + 1)
        self.duration_head = nn.Linear(c, 1)
        self.segment_head = nn.Linear(c, k)

    def fuse(self, tokens: torch.Tensor, valid: torch.Tensor) -> FusionOutput:
        fused: FusionOutput = self.fuser(tokens, valid)
        return fused

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> AnticipatorOutput:
        """tokens (B, T, 2, C), valid (B, T) bool with at least one True per row -> AnticipatorOutput."""
        t = tokens.shape[1]
        if t > self.max_len:
            raise WindowTooLongError(f"token window of {t} frames exceeds the positional table ({self.max_len})")
        fused = self.fuser(tokens, valid).fused  # (B, T, C)
        pos = self.positions.weight[:t].unsqueeze(0)  # (1, T, C)
        pad = ~valid
        memory = fused
        blocked = causal_blocks(valid, self.heads) if self.causal and len(self.encoder) else None
        for layer in self.encoder:
            memory = layer(memory, pos, pad, blocked)
        queries = self.decoder(memory, pos, pad)  # (B, Q, C)
        return AnticipatorOutput(
            self.action_head(queries) / self.action_temperature,
            self.duration_head(queries).squeeze(-1),
            self.segment_head(memory) / self.segment_temperature,
            fused,
        )


class R3D(nn.Module):
    """The full model: FrameEncoder over every frame, then the Anticipator over the window."""

    def __init__(self, cfg: R3DConfig, *, with_backbone: bool = True, backbone_weights: str | Path | None = None):
        super().__init__()
        cfg = copy.deepcopy(cfg)  # the model owns its config: filling in the weights hash never edits the caller's
        backbone = None
        if with_backbone:
            backbone, digest = build_backbone(cfg.backbone, cfg.preprocessing.image_size, backbone_weights)
            cfg.backbone_weights_sha256 = cfg.backbone_weights_sha256 or digest
        self.cfg = cfg
        self.frame_encoder = FrameEncoder(cfg, backbone)
        self.anticipator = Anticipator(cfg)

    def set_temperatures(self, segment: float, action: float) -> None:
        """Install calibration temperatures (fitted on validation): config and anticipator change together."""
        if not (segment > 0 and action > 0):
            raise ValueError(f"expected positive temperatures, got segment={segment!r}, action={action!r}")
        self.cfg.segment_temperature, self.cfg.action_temperature = float(segment), float(action)
        self.anticipator.segment_temperature, self.anticipator.action_temperature = float(segment), float(action)

    def forward(self, images: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor) -> AnticipatorOutput:
        """images (B, T, 3, H, W), depths (B, T, ch, h, w), valid (B, T) -> AnticipatorOutput."""
        b, t = valid.shape
        tokens = self.frame_encoder(images.flatten(0, 1), depths.flatten(0, 1))  # (B*T, 2, C)
        outputs: AnticipatorOutput = self.anticipator(tokens.view(b, t, 2, -1), valid)  # (B, T, 2, C)
        return outputs

    def forward_features(self, features: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor) -> AnticipatorOutput:
        """Training from cached backbone features (B, T, F x colour views) and depth maps (B, T, ch, h, w)."""
        b, t = valid.shape
        tokens = self.frame_encoder.project(features.flatten(0, 1), depths.flatten(0, 1))  # (B*T, 2, C)
        outputs: AnticipatorOutput = self.anticipator(tokens.view(b, t, 2, -1), valid)
        return outputs
