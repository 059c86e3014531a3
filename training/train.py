"""The training loop (`r3d-train`): cached features -> R3D's trainable parts, per-epoch validation, checkpoints.

Run folder (run.out):
  config.yaml              the resolved configuration
  best.safetensors         model.save_checkpoint of the best epoch by the selection metric (see evaluate.validate);
                           at the end its logit temperatures are fitted on the val split (training.calibration)
  last.safetensors         the same for the last completed epoch
                           (with optim.ema_decay > 0 both hold the weight average, which validation scores too)
  train_state.safetensors  weights, optimiser and RNG states and the epoch (training.train_state) for --resume
  log.csv, curves.png      one row per epoch; losses and validation metrics
  summary.json             the final figures (and, under DDP, each replica's weight digest)

Determinism: the model is initialised from run.seed; each epoch's windows, shuffling, dropout and modality dropout
(optim.rgb_dropout) draw from generators seeded by (seed, epoch, rank), so an epoch's work depends only on the state
at its start and a resumed run reproduces an uninterrupted one exactly on CPU. Distributed: under torchrun
(WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA), each rank sees its
DistributedSampler share, and only rank 0 validates and writes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model import R3D, AnticipatorOutput, ConfigError, Preprocessing, save_checkpoint
from rgbd.dataset import Dataset
from rgbd.files import write_bytes_atomic, write_json_atomic
from training.calibration import calibrate_checkpoint
from training.config import TrainConfig, config_from_dict, dump_yaml
from training.evaluate import amp_context, protocol_spec, validate
from training.features import SequenceFeatures, ensure_features
from training.losses import r3d_loss
from training.run_log import environment, git_revision, plot_curves, write_csv
from training.sampler import Window, WindowDataset, collate, evaluation_windows, training_windows
from training.train_state import read_train_state, restore_train_state, save_train_state

logger = logging.getLogger(__name__)
STATE_FILE = "train_state.safetensors"
RESUME_FREE = {"run.max_epochs", "run.progress", "run.threads", "run.num_workers", "run.device", "run.validate_every",
               "run.calibrate"}  # fmt: skip


@dataclass
class TrainResult:
    out: Path
    epochs: int  # completed epochs
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> Path:
        return self.out / "best.safetensors"

    @property
    def last(self) -> Path:
        return self.out / "last.safetensors"


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Linear warm-up from lr / warmup_steps (never 0) to lr, then cosine down to min_lr at total_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class _FeatureForward(nn.Module):
    """R3D.forward_features as forward(), so DistributedDataParallel sees the call it must synchronise."""

    def __init__(self, model: R3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor) -> AnticipatorOutput:
        return self.model.forward_features(features, depth, valid)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()


def _setup(cfg: TrainConfig) -> _Dist:
    want = cfg.run.device
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device: expected a device that exists, got {want!r} but CUDA is not available")
    cuda = want.startswith("cuda") or (want == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(device=torch.device(want if want not in ("auto",) else ("cuda" if cuda else "cpu")))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return _Dist(torch_dist.get_rank(), torch_dist.get_world_size(), device)


def _amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    p = cfg.run.precision
    if p == "fp32" or (p == "auto" and device.type != "cuda"):
        return None
    if p == "fp16" and device.type != "cuda":
        raise ConfigError("run.precision: fp16 autocast needs CUDA; expected fp32 or bf16 on CPU, got 'fp16'")
    if p == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if p == "bf16" else torch.float16


def _flat_config(d: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, body in d.items() for k, v in body.items()}


def _check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Only run.* settings that do not change the result may differ from the interrupted run's configuration."""
    old, cur = _flat_config(config_from_dict(saved).to_dict()), _flat_config(cfg.to_dict())
    changed = sorted(k for k in cur if k not in RESUME_FREE and cur[k] != old.get(k))
    if changed:
        raise ConfigError(
            "--resume: the configuration differs from the interrupted run's in "
            + ", ".join(f"{k} (was {old.get(k)!r}, now {cur[k]!r})" for k in changed)
            + f"; only {sorted(RESUME_FREE)} may change"
        )


def _digest(model: nn.Module) -> str:
    """SHA-256 of the parameters (buffers such as BatchNorm statistics are rank 0's, broadcast at each forward)."""
    h = hashlib.sha256()
    for k, v in sorted(model.named_parameters()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def drop_rgb(
    batch: dict[str, torch.Tensor],
    windows: list[Window],
    share: float,
    generator: torch.Generator,
    dark: dict[str, SequenceFeatures] | None,
) -> int:
    """Modality dropout: replace the RGB features of a `share` of the batch's windows, in place, by zeros or (with
    `dark`) by the same frames' features from the darkened-RGB cache; returns how many windows were replaced."""
    chosen = (torch.rand(len(batch["valid"]), generator=generator) < share).nonzero().flatten().tolist()
    for row in chosen:
        if dark is None:
            batch["features"][row] = 0.0
            continue
        w = windows[int(batch["index"][row])]
        batch["features"][row, : len(w.observed)] = torch.from_numpy(dark[w.seq].rgb[w.observed]).float()
    return len(chosen)


def jitter_depth(
    depth: torch.Tensor, pre: Preprocessing, scale_jitter: float, shift_jitter: float, generator: torch.Generator
) -> torch.Tensor:
    """Depth (B, T, C, h, w) as prepared by model.prepare_depth, each window seen as if its person stood elsewhere:
    zoomed by a factor s in [1 - scale_jitter, 1 + scale_jitter] and shifted by up to shift_jitter of the frame
    (nearest-neighbour resampling keeps validity and person mask binary; what comes in from outside is invalid).
    Metric depth is divided by s (a person s times larger in the picture is s times nearer); minmax depth is
    distance-free and only moved. One draw per window, the same for all its frames."""
    b, t, c, h, w = depth.shape
    scale = 1 + (torch.rand(b, generator=generator) * 2 - 1) * scale_jitter
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * shift_jitter * 2  # grid units span 2 per frame
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale  # output pixel x reads input (x - shift) / scale
    theta[:, :, 2] = -shift / scale[:, None]
    theta = theta.repeat_interleave(t, dim=0).to(depth)
    flat = depth.reshape(b * t, c, h, w)
    grid = nn.functional.affine_grid(theta, [b * t, c, h, w], align_corners=False)
    moved = nn.functional.grid_sample(flat, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    moved = moved.reshape(b, t, c, h, w)
    if pre.depth_input == "metric":  # channel 0: standardised metres where channel 1 (validity) is set
        metres = moved[:, :, 0] * pre.depth_std_m + pre.depth_mean_m
        nearer = (metres / scale.to(depth)[:, None, None, None] - pre.depth_mean_m) / pre.depth_std_m
        moved[:, :, 0] = torch.where(moved[:, :, 1] > 0, nearer, torch.zeros_like(nearer))
    return moved


def _finite_or_not_float(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to n (None or 0: left as they are) inside the block, restored after it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Train (or resume) a model as configured; returns the run folder and history."""
    cfg.validate()
    with torch_threads(cfg.run.threads):  # run.threads applies to this run only
        return _train(cfg, resume)


def _train(cfg: TrainConfig, resume: bool) -> TrainResult:
    d, o, r = cfg.data, cfg.optim, cfg.run
    dist = _setup(cfg)
    amp_dtype = _amp(cfg, dist.device)
    out = Path(r.out)
    state_path = out / STATE_FILE
    if not resume and state_path.exists():
        raise ConfigError(f"run.out: {out} already holds a run; expected a new folder, or pass --resume to continue it")

    dataset = Dataset(d.dataset)
    train_ids = dataset.split(d.train_split)[: d.max_train_sequences or None]
    val_ids = dataset.split(d.val_split)[: d.max_val_sequences or None]
    if not train_ids:
        raise ValueError(f"{dataset.root}: split {d.train_split!r} is empty; expected training sequences")
    fps = dataset.fps / d.frame_step if d.protocol == "paper" else cfg.model.fps
    model_cfg = cfg.model.to_r3d(dataset.classes, fps=fps)
    cache_kw: dict[str, Any] = {
        "cache_root": d.cache_root,
        "batch_size": d.feature_batch_size,
        "progress": r.progress,
        "device": str(dist.device),
    }
    pre = model_cfg.preprocessing
    if model_cfg.uses_color:  # a depth-only dataset trains only the depth-only fusion
        dataset.require_color(train_ids + val_ids, f"model.fusion {model_cfg.fusion!r}")
    if dist.main:  # rank 0 builds whatever is missing; the others then only load
        cache, data = ensure_features(dataset, model_cfg.backbone, pre, train_ids + val_ids, **cache_kw)
        dist.barrier()
    else:
        dist.barrier()
        cache, data = ensure_features(dataset, model_cfg.backbone, pre, train_ids + val_ids, **cache_kw)
    model_cfg.backbone_weights_sha256 = cache.weights_sha256
    dark: dict[str, SequenceFeatures] | None = None
    if o.rgb_dropout > 0 and o.rgb_dropout_mode == "dark":  # the darkened-RGB features of the training frames
        dark_kw = {**cache_kw, "degradation": "rgb_dark", "severity": o.rgb_dropout_severity}
        if not dist.main:
            dist.barrier()
        dark = ensure_features(dataset, model_cfg.backbone, pre, train_ids, **dark_kw)[1]
        if dist.main:
            dist.barrier()
    train_data = {k: data[k] for k in train_ids}
    val_data = {k: data[k] for k in val_ids}
    spec = protocol_spec(cfg, model_cfg)

    torch.manual_seed(r.seed)
    model = R3D(model_cfg, with_backbone=False).to(dist.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    # the weight average (optim.ema_decay) is what validation scores and the checkpoints hold; its buffers too
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(o.ema_decay), use_buffers=True)
        if o.ema_decay > 0
        else None
    )
    served = model if averaged is None else cast(R3D, averaged.module)
    epoch, step, best, history = 0, 0, -math.inf, []
    if resume:
        _check_resume(read_train_state(state_path)[1]["info"]["config"], cfg)
        meta = restore_train_state(state_path, model, optimizer, averaged=averaged)
        epoch, step = meta["epoch"], meta["global_step"]
        best, history = float(meta["info"]["best"]), list(meta["info"]["history"])
        if scaler.is_enabled() and meta["info"].get("scaler"):
            scaler.load_state_dict(meta["info"]["scaler"])
        logger.info("resuming %s after epoch %d (step %d)", out, epoch, step)
    provenance = {
        "git": git_revision(),
        "environment": environment(),
        "config": cfg.to_dict(),
        "dataset": {"name": dataset.name, "root": str(dataset.root), "train": len(train_ids), "val": len(val_ids)},
        "feature_cache": cache.key,
        "selection_metric": validate.__doc__,
        "world_size": dist.world,
    }
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / "config.yaml", dump_yaml(cfg).encode())
        write_json_atomic(out / "provenance.json", provenance)

    ratios = d.train_ratios
    per_epoch = len(training_windows(train_data, spec, ratios, d.windows_per_sequence, seed=0))
    if per_epoch == 0:
        raise ValueError(f"{dataset.root}: no training window fits the protocol; sequences too short for {spec}")
    steps_per_epoch = math.ceil(math.ceil(per_epoch / dist.world) / o.batch_size)
    total_steps = steps_per_epoch * o.epochs
    warmup_steps = round(o.warmup_epochs * steps_per_epoch)
    wrapped: nn.Module = _FeatureForward(model)
    if dist.world > 1:
        unused = cfg.model.fusion in ("rgb", "depth")
        wrapped = DistributedDataParallel(wrapped, find_unused_parameters=unused)
    stop = min(o.epochs, r.max_epochs) if r.max_epochs else o.epochs
    eval_kw = {"batch_size": max(o.batch_size, 16), "device": dist.device, "amp_dtype": amp_dtype}
    weights = (o.segmentation_weight, o.anticipation_weight, o.duration_weight)

    while epoch < stop:
        started = time.perf_counter()
        torch.manual_seed(r.seed * 1_000_003 + epoch * 1_009 + dist.rank)  # dropout stream of this epoch and rank
        windows = training_windows(train_data, spec, ratios, d.windows_per_sequence, seed=r.seed * 7_919 + epoch)
        ds = WindowDataset(train_data, windows, spec)
        sampler: DistributedSampler[int] | None = None
        if dist.world > 1:
            sampler = DistributedSampler(ds, dist.world, dist.rank, shuffle=True, seed=r.seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(
            ds,
            batch_size=o.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            collate_fn=collate,
            num_workers=r.num_workers,
            generator=torch.Generator().manual_seed(r.seed + epoch),
            drop_last=False,
        )
        wrapped.train()
        sums = torch.zeros(5, dtype=torch.float64)  # total, seg, ant, dur, samples
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{o.epochs}", disable=not (r.progress and dist.main), leave=False)
        dropout_gen = torch.Generator().manual_seed(r.seed * 6_007 + epoch * 101 + dist.rank)
        for batch in bar:
            if o.rgb_dropout > 0:
                drop_rgb(batch, windows, o.rgb_dropout, dropout_gen, dark)
            if o.depth_scale_jitter > 0 or o.depth_shift_jitter > 0:
                batch["depth"] = jitter_depth(
                    batch["depth"], model_cfg.preprocessing, o.depth_scale_jitter, o.depth_shift_jitter, dropout_gen
                )
            lr = lr_at(step, total_steps, warmup_steps, o.lr, o.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(dist.device) for k, v in batch.items()}
            with amp_context(dist.device, amp_dtype):
                outputs = wrapped(batch["features"], batch["depth"], batch["valid"])
            parts = r3d_loss(
                outputs, batch, none_index=model_cfg.none_index, transition_weight=o.transition_weight, weights=weights
            )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(parts.total).backward()
            if o.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if averaged is not None:
                averaged.update_parameters(model)
            step += 1
            n = len(batch["valid"])
            sums += torch.tensor([float(x.detach()) * n for x in parts] + [n], dtype=torch.float64)
            bar.set_postfix(loss=f"{float(parts.total.detach()):.4f}", lr=f"{lr:.2e}")
        if dist.world > 1:
            torch_dist.all_reduce(sums)
        epoch += 1
        row: dict[str, Any] = {"epoch": epoch, "lr": lr_at(step - 1, total_steps, warmup_steps, o.lr, o.min_lr)}
        row |= dict(
            zip(
                ("train_loss", "train_segmentation", "train_anticipation", "train_duration"),
                (sums[:4] / sums[4]).tolist(),
                strict=True,
            )
        )
        if dist.main:
            if val_data and (epoch % r.validate_every == 0 or epoch == stop):
                row |= validate(served, val_data, cfg, spec, **eval_kw)
            elif not val_data:
                row["selection"] = -row["train_loss"]  # no val split: the training loss decides (logged)
            row["time_s"] = time.perf_counter() - started
            history.append(row)
            selection = row.get("selection", math.nan)
            metrics = {k: v if _finite_or_not_float(v) else None for k, v in row.items() if k != "epoch"}
            ckpt_info = {**provenance, "epoch": epoch, "global_step": step}
            if (isinstance(selection, float) and math.isfinite(selection) and selection > best) or epoch == 1:
                best = selection if math.isfinite(selection) else best
                save_checkpoint(out / "best.safetensors", served, provenance=ckpt_info, metrics=metrics)
            save_checkpoint(out / "last.safetensors", served, provenance=ckpt_info, metrics=metrics)
            info = {"best": best, "history": history, "config": cfg.to_dict(), "scaler": scaler.state_dict()}
            save_train_state(state_path, model, optimizer, epoch=epoch, global_step=step, info=info, averaged=averaged)
            write_csv(out / "log.csv", history)
            plot_curves(out / "curves.png", history)
            logger.info(
                "epoch %d/%d %s",
                epoch,
                o.epochs,
                " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)),
            )
        dist.barrier()

    summary: dict[str, Any] = {"epochs": epoch, "best_selection": best, "out": str(out)}
    if dist.main and r.calibrate and val_data and (out / "best.safetensors").is_file():
        if spec.protocol == "paper":
            cal_windows = [w for ratio in d.val_ratios for w in evaluation_windows(val_data, spec, ratio)]
        else:
            cal_windows = evaluation_windows(val_data, spec)
        summary["calibration"] = calibrate_checkpoint(out / "best.safetensors", val_data, cal_windows, spec, **eval_kw)
        logger.info("calibrated %s: %s", out / "best.safetensors", summary["calibration"])
    if dist.world > 1:
        digests: list[Any] = [None] * dist.world
        torch_dist.all_gather_object(digests, _digest(model))
        summary["replica_digests"] = digests
    if dist.main:
        summary["last"] = history[-1] if history else {}
        write_json_atomic(out / "summary.json", summary)
    if dist.world > 1:
        torch_dist.barrier()  # no rank tears the group down while another is still writing or communicating
        torch_dist.destroy_process_group()
    return TrainResult(out, epoch, best, history)
