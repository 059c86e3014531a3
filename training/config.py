"""Training configuration: typed dataclasses, loaded from a YAML or TOML recipe, then overridden from the command line.

A recipe has four sections, each a dataclass below (every field is documented where it is declared)::

    data:  {dataset: data/synth, protocol: streaming, ...}
    model: {fusion: rtf, window_s: 8.0, depth_size: [60, 80], ...}   # R3DConfig fields, classes come from the data
    optim: {lr: 1.0e-3, epochs: 60, ...}
    run:   {out: runs/service, seed: 1, ...}

Overrides: `--set optim.lr=3e-4` (the value is read as YAML, so lists work: `--set data.train_ratios=[0.2,0.3]`) or
the generated flags `--optim.lr 3e-4`. Every problem is collected and reported in one ConfigError naming the keys.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model import ConfigError, Preprocessing, R3DConfig
from model.person import PERSON_MASKS
from model.preprocess import COLOR_VIEWS, DEPTH_INPUTS

PROTOCOLS = ("paper", "streaming")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STANDARD_HORIZONS = (0.1, 0.2, 0.3, 0.5)
RGB_DROPOUT_MODES = ("zero", "dark")


@dataclass
class DataConfig:
    """Which dataset, which sampling protocol, and how samples are drawn."""

    dataset: str = ""  # folder of a dataset in the common format (rgbd.dataset)
    cache_root: str | None = None  # root of the feature caches; default DATASET/features
    protocol: str = "streaming"  # "paper": prefix alpha, next 0.5 of the length; "streaming": W s window, H s horizon
    train_split: str = "train"
    val_split: str = "val"  # checkpoint selection split; evaluation uses the test split
    # 0: the whole split; N: its first N sequences (a run sized down to a machine, e.g. training.report's)
    max_train_sequences: int = 0
    max_val_sequences: int = 0
    train_ratios: list[float] = field(default_factory=lambda: [0.2, 0.3, 0.5])  # paper: observation ratios
    val_ratios: list[float] = field(default_factory=lambda: [0.2, 0.3])  # paper: ratios of the selection metric
    future_fraction: float = 0.5  # paper: predict the next future_fraction of the sequence length
    frame_step: int = 1  # paper: keep every frame_step-th frame (DARai: 15 -> 1 fps)
    windows_per_sequence: int = 8  # streaming: random windows drawn per training sequence and epoch
    min_observed_s: float = 1.0  # streaming: shortest observed history of a window (seconds)
    # streaming: each training window sees its sequence played at a speed drawn from [1 - j, 1 + j] (resampled by
    # timestamp as the service does, so a faster speed drops more frames); 0 = off
    speed_jitter: float = 0.0
    val_stride_s: float = 2.0  # streaming: validation/evaluation windows end every val_stride_s seconds
    feature_batch_size: int = 32  # frames per backbone batch when a missing feature cache is built


def _r3d_default(name: str) -> Any:
    """R3DConfig's default for field `name`: the model owns its defaults, the training recipe only mirrors the
    fields (tests/training/test_train_config.py checks that every model field is mirrored)."""
    spec = R3DConfig.__dataclass_fields__[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    raise AssertionError(f"R3DConfig.{name} has no plain default")  # an internal invariant, not user input


_PREPROCESSING = Preprocessing()  # the model's preprocessing defaults


@dataclass
class ModelConfig:
    """R3DConfig fields (model/r3d.py) except the classes, which come from the dataset, with Preprocessing's fields
    flattened. Every default is the model's own (read from R3DConfig and Preprocessing, never re-typed here)."""

    fusion: str = _r3d_default("fusion")
    exchange_ratio: float = _r3d_default("exchange_ratio")
    selection: str = _r3d_default("selection")
    hidden: int = _r3d_default("hidden")
    backbone: str = _r3d_default("backbone")
    temporal_encoder: bool = _r3d_default("temporal_encoder")
    causal_encoder: bool = _r3d_default("causal_encoder")  # a frame attends only to itself and earlier frames
    encoder_layers: int = _r3d_default("encoder_layers")
    heads: int = _r3d_default("heads")
    ffn: int = _r3d_default("ffn")
    dropout: float = _r3d_default("dropout")
    n_queries: int = _r3d_default("n_queries")
    max_len: int = _r3d_default("max_len")
    depth_encoder: str = _r3d_default("depth_encoder")  # "linear" (the paper's Linear(h*w -> C)), "conv", "person"
    person_crop: tuple[int, int] = _r3d_default("person_crop")  # (H, W) the person depth encoder resamples to
    position_init_std: float = _r3d_default("position_init_std")  # positional table init std
    decoder_value_positions: bool = _r3d_default("decoder_value_positions")  # decoder values carry query positions
    fps: float = _r3d_default("fps")  # streaming: sequences are resampled to it; paper: set to dataset fps / frame_step
    window_s: float = _r3d_default("window_s")
    horizon_s: float = _r3d_default("horizon_s")
    image_size: tuple[int, int] = _PREPROCESSING.image_size  # (H, W) of the backbone's RGB input
    depth_size: tuple[int, int] = _PREPROCESSING.depth_size  # (H, W) of the depth map fed to the depth encoder
    depth_min_m: float = _PREPROCESSING.depth_min_m
    depth_max_m: float = _PREPROCESSING.depth_max_m
    depth_input: str = _PREPROCESSING.depth_input  # "minmax" (the paper) or "metric" (model.preprocess)
    depth_mean_m: float = _PREPROCESSING.depth_mean_m  # "metric" standardisation
    depth_std_m: float = _PREPROCESSING.depth_std_m
    person_mask: str = _PREPROCESSING.person_mask  # "none", "background" or "segmented" (model/person.py)
    color_view: str = _PREPROCESSING.color_view  # "frame" or "frame+person" (the backbone also pools a person crop)

    def preprocessing(self) -> Preprocessing:
        own: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k in PREPROCESSING_FIELDS
                               for v in [getattr(self, k)]}  # fmt: skip
        return Preprocessing(**own)

    def to_r3d(self, classes: list[str], *, fps: float | None = None) -> R3DConfig:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in PREPROCESSING_FIELDS:
            own.pop(key)
        if fps is not None:
            own["fps"] = fps
        return R3DConfig(classes=list(classes), preprocessing=self.preprocessing(), **own)


PREPROCESSING_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocessing))


@dataclass
class OptimConfig:
    """Losses and optimiser (docs/paper.md section 3): AdamW, linear warm-up from lr/warmup_steps, then cosine."""

    lr: float = 1e-3
    weight_decay: float = 5e-3
    batch_size: int = 8
    epochs: int = 60  # length of the schedule
    warmup_epochs: float = 10.0
    min_lr: float = 0.0  # end of the cosine
    grad_clip: float = 0.0  # max gradient norm; 0 = off (the paper does not clip)
    transition_weight: float = 10.0  # anticipation CE weight of samples whose next action differs from the last seen
    segmentation_weight: float = 1.0
    anticipation_weight: float = 1.0
    duration_weight: float = 1.0
    rgb_dropout: float = 0.0  # share of training windows whose RGB features are replaced (teaches fallback on depth)
    rgb_dropout_mode: str = "zero"  # "zero": RGB features zeroed; "dark": the rgb_dark cache's features (built once)
    rgb_dropout_severity: int = 3  # "dark": the rgb_dark severity (training/robustness.py: gain 0.5 / 0.25 / 0.1)
    # depth map jitter per training window (training.train.jitter_depth): the apparent size is multiplied by a
    # factor in [1 - depth_scale_jitter, 1 + depth_scale_jitter] (metric depth divided by it: nearer is larger) and the
    # map shifted by up to depth_shift_jitter of its width and height; the same for every frame of a window
    depth_scale_jitter: float = 0.0
    depth_shift_jitter: float = 0.0
    # exponential moving average of the weights, updated after every step (w_avg <- d * w_avg + (1 - d) * w): when > 0,
    # validation, best.safetensors and last.safetensors use the average (the model that is served); 0 = off
    ema_decay: float = 0.0


@dataclass
class RunConfig:
    """Where results go, seeds, devices and how long to run."""

    out: str = "runs/r3d"  # run folder: checkpoints, training state, logs, curves, resolved config
    seed: int = 1  # the paper reports the mean over seeds 1, 10, 13452
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"
    precision: str = "auto"  # "auto": bf16 (fp16 without bf16 support) autocast on CUDA, fp32 on CPU
    max_epochs: int | None = None  # stop after this many completed epochs (the schedule still spans optim.epochs)
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    num_workers: int = 0  # DataLoader workers (features are in memory; 0 is usually fastest)
    progress: bool = True  # tqdm progress bars
    validate_every: int = 1  # epochs between validations (the last epoch is always validated)
    calibrate: bool = True  # after training, fit the logit temperatures of best.safetensors on the val split


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Raise one ConfigError listing every problem; returns self when valid."""
        d, m, o, r = self.data, self.model, self.optim, self.run
        problems: list[str] = []

        def need(ok: bool, key: str, expected: str, got: Any) -> None:
            if not ok:
                problems.append(f"{key}: expected {expected}, got {got!r}")

        need(bool(d.dataset), "data.dataset", "a dataset folder", d.dataset)
        need(d.protocol in PROTOCOLS, "data.protocol", f"one of {PROTOCOLS}", d.protocol)
        for key in ("train_ratios", "val_ratios"):
            ratios = getattr(d, key)
            need(bool(ratios) and all(0 < x < 1 for x in ratios), f"data.{key}", "a list of ratios in (0, 1)", ratios)
        need(0 < d.future_fraction <= 1, "data.future_fraction", "a value in (0, 1]", d.future_fraction)
        for key in ("frame_step", "windows_per_sequence", "feature_batch_size"):
            need(getattr(d, key) >= 1, f"data.{key}", "an integer >= 1", getattr(d, key))
        need(0 <= d.speed_jitter < 0.5, "data.speed_jitter", "a share in [0, 0.5)", d.speed_jitter)
        for key in ("max_train_sequences", "max_val_sequences"):
            need(getattr(d, key) >= 0, f"data.{key}", "0 (the whole split) or a number of sequences", getattr(d, key))
        need(d.min_observed_s > 0, "data.min_observed_s", "a positive number of seconds", d.min_observed_s)
        need(d.val_stride_s > 0, "data.val_stride_s", "a positive number of seconds", d.val_stride_s)
        for key in ("image_size", "depth_size"):
            size = getattr(m, key)
            need(len(size) == 2 and min(size) >= 1, f"model.{key}", "two positive integers (H, W)", size)
        need(0 <= m.depth_min_m < m.depth_max_m, "model.depth_min_m", "0 <= depth_min_m < depth_max_m", m.depth_min_m)
        need(m.depth_input in DEPTH_INPUTS, "model.depth_input", f"one of {list(DEPTH_INPUTS)}", m.depth_input)
        need(m.depth_std_m > 0, "model.depth_std_m", "a positive number of metres", m.depth_std_m)
        need(m.person_mask in PERSON_MASKS, "model.person_mask", f"one of {list(PERSON_MASKS)}", m.person_mask)
        need(m.color_view in COLOR_VIEWS, "model.color_view", f"one of {list(COLOR_VIEWS)}", m.color_view)
        need(m.color_view == "frame" or m.person_mask != "none", "model.color_view",
             "'frame' when model.person_mask is 'none' (the crop is found by the mask)", m.color_view)  # fmt: skip
        need(o.lr > 0, "optim.lr", "a positive learning rate", o.lr)
        need(o.weight_decay >= 0, "optim.weight_decay", "a non-negative number", o.weight_decay)
        need(o.batch_size >= 1, "optim.batch_size", "an integer >= 1", o.batch_size)
        need(o.epochs >= 1, "optim.epochs", "an integer >= 1", o.epochs)
        need(0 <= o.warmup_epochs < o.epochs, "optim.warmup_epochs", "a value in [0, epochs)", o.warmup_epochs)
        need(0 <= o.min_lr <= o.lr, "optim.min_lr", "a value in [0, lr]", o.min_lr)
        need(o.grad_clip >= 0, "optim.grad_clip", "0 (off) or a positive norm", o.grad_clip)
        need(0 <= o.rgb_dropout <= 1, "optim.rgb_dropout", "a share in [0, 1]", o.rgb_dropout)
        need(o.rgb_dropout_mode in RGB_DROPOUT_MODES, "optim.rgb_dropout_mode", f"one of {RGB_DROPOUT_MODES}",
             o.rgb_dropout_mode)  # fmt: skip
        need(o.rgb_dropout_severity in (1, 2, 3), "optim.rgb_dropout_severity", "1, 2 or 3", o.rgb_dropout_severity)
        need(0 <= o.depth_scale_jitter < 0.5, "optim.depth_scale_jitter", "a share in [0, 0.5)", o.depth_scale_jitter)
        need(0 <= o.depth_shift_jitter < 0.5, "optim.depth_shift_jitter", "a share in [0, 0.5)", o.depth_shift_jitter)
        need(0 <= o.ema_decay < 1, "optim.ema_decay", "a decay in [0, 1) (0 = no weight average)", o.ema_decay)
        need(o.transition_weight > 0, "optim.transition_weight", "a positive weight", o.transition_weight)
        need(r.precision in PRECISIONS, "run.precision", f"one of {PRECISIONS}", r.precision)
        need(r.max_epochs is None or r.max_epochs >= 1, "run.max_epochs", "None or an integer >= 1", r.max_epochs)
        need(r.threads is None or r.threads >= 1, "run.threads", "None or an integer >= 1", r.threads)
        need(r.num_workers >= 0, "run.num_workers", "an integer >= 0", r.num_workers)
        need(r.validate_every >= 1, "run.validate_every", "an integer >= 1", r.validate_every)
        try:  # the model's own checks (fusion names, window vs max_len, ...)
            m.to_r3d(["a"])
        except ConfigError as exc:
            problems.append(f"model: {exc}")
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))
        return self


_SECTION_TYPES: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/TOML/CLI value to the field's annotated type, or raise ValueError naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, key) for v in value]
        if origin is tuple:
            if len(args) == 2 and args[1] is not Ellipsis and len(items) != 2:
                raise ValueError(f"{key}: expected 2 values, got {value!r}")
            return tuple(items)
        return items
    if hint is bool:
        if isinstance(value, str):
            low = value.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_overrides(cfg: TrainConfig, values: dict[str, Any], problems: list[str]) -> None:
    """Set dotted keys (`optim.lr`) on cfg, appending a problem for each unknown key or bad value."""
    for key, raw in values.items():
        section, _, name = key.partition(".")
        if section not in _SECTION_TYPES or not name:
            problems.append(f"{key}: unknown key; expected SECTION.FIELD with SECTION in {sorted(_SECTION_TYPES)}")
            continue
        hints = _hints(_SECTION_TYPES[section])
        if name not in hints:
            problems.append(f"{key}: unknown field; {section} has {sorted(hints)}")
            continue
        try:
            setattr(getattr(cfg, section), name, _coerce(raw, hints[name], key))
        except ValueError as exc:
            problems.append(str(exc))


def _flatten(recipe: dict[str, Any], problems: list[str], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in recipe.items():
        if section not in _SECTION_TYPES:
            problems.append(f"{source}: unknown section {section!r}; expected {sorted(_SECTION_TYPES)}")
        elif not isinstance(body, dict):
            problems.append(f"{source}: section {section!r} must be a mapping, got {type(body).__name__}")
        else:
            flat.update({f"{section}.{k}": v for k, v in body.items()})
    return flat


RECIPES = Path(__file__).resolve().parent / "configs"


def recipe_path(path: str | Path) -> Path:
    """A recipe file, or the name of a shipped recipe (`service` -> training/configs/service.yaml)."""
    p = Path(path)
    if not p.is_file() and p.suffix == "" and (RECIPES / f"{p.name}.yaml").is_file():
        return RECIPES / f"{p.name}.yaml"
    return p


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file (.yaml, .yml or .toml) or a shipped recipe's name, as a nested dict."""
    path = recipe_path(path)
    if not path.is_file():
        shipped = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise ConfigError(f"config file {path} does not exist; expected a .yaml/.toml file or one of {shipped}")
    text = path.read_text()
    if path.suffix == ".toml":
        data: Any = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ConfigError(f"config file {path}: expected a .yaml, .yml or .toml file, got {path.suffix!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def parse_set(items: list[str], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(f"--set {item!r}: expected KEY=VALUE such as optim.lr=3e-4")
            continue
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """Defaults <- recipe file <- generated-flag overrides <- `--set` items; validated."""
    cfg = TrainConfig()
    problems: list[str] = []
    if path is not None:
        apply_overrides(cfg, _flatten(read_recipe(path), problems, str(path)), problems)
    apply_overrides(cfg, dict(overrides or {}), problems)
    apply_overrides(cfg, parse_set(list(sets or []), problems), problems)
    if problems:
        raise ConfigError("invalid training configuration: " + "; ".join(problems))
    return cfg.validate()


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a resolved configuration (as saved by to_dict) without validation errors being swallowed."""
    cfg = TrainConfig()
    problems: list[str] = []
    apply_overrides(cfg, _flatten(d, problems, "saved config"), problems)
    if problems:
        raise ConfigError("invalid saved training configuration: " + "; ".join(problems))
    return cfg


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--SECTION.FIELD VALUE` flag per config field (default: not given), its help the field's comment."""
    for section, cls in _SECTION_TYPES.items():
        group = parser.add_argument_group(f"{section} ({cls.__doc__ or ''}".rstrip() + ")")
        defaults = cls()
        # the model section mirrors R3DConfig and Preprocessing, whose fields are documented where they are declared
        comments = field_comments(cls)
        if cls is ModelConfig:
            comments = field_comments(Preprocessing) | field_comments(R3DConfig) | comments
        for name, hint in _hints(cls).items():
            default = getattr(defaults, name)
            about = comments.get(name, "").replace("%", "%%")  # argparse formats help with %
            group.add_argument(
                f"--{section}.{name}",
                dest=f"cfg:{section}.{name}",
                metavar=_metavar(hint),
                default=argparse.SUPPRESS,
                help=f"{about} (default: {default!r})" if about else f"default: {default!r}",
            )


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment where the class declares it: the comment lines just above the field, then the one beside
    it. The help of `--SECTION.FIELD`, so that a field is documented in one place."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen build): flags without help text
        return {}
    lines = source.splitlines()
    comments = {
        tok.start[0]: text
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
        for text in [tok.string.lstrip("#").strip()]
        if not text.startswith(("fmt:", "noqa", "type:"))  # tool directives are not documentation
    }
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        parts: list[str] = []
        n = node.lineno - 1
        while n in comments and lines[n - 1].lstrip().startswith("#"):  # the block of comment lines above
            parts.insert(0, comments[n])
            n -= 1
        if node.end_lineno in comments:
            parts.append(comments[node.end_lineno])
        if parts:
            out[node.target.id] = " ".join(parts)
    return out


def _metavar(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "[A,B,...]"
    names = {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}
    for a in typing.get_args(hint) or (hint,):
        if a in names:
            return names[a]
    return "VALUE"


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k.removeprefix("cfg:"): v for k, v in vars(args).items() if k.startswith("cfg:")}


def dump_yaml(cfg: TrainConfig) -> str:
    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return list(x)
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x

    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False)
