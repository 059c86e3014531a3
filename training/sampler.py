"""One sampler for both protocols: which frames a sample observes, and what its targets are.

Paper protocol (docs/paper.md section 3): the sequence, subsampled by `frame_step`, has L frames; a sample with
observation ratio o observes frames [0, int(o L)) and predicts the next round(future_fraction L) frames (cut at the
end of the sequence). Streaming protocol (docs/architecture.md, "Time, not fractions"): the sequence is resampled to
the model's fps by timestamp (frames are dropped, never invented); a window observes the last W s (fewer frames
near the start) before its end time and predicts the next H s.

Targets of a sample:
- segmentation: the class of every observed frame (-1 where unknown or padded: ignored);
- future transcript: run-length encoding of the future frames, one query slot per run with its share of the future
  as duration (the shares sum to 1), then NONE, padded to n_queries with -1 (ignored); when there are more runs than
  slots, the first n_queries - 1 runs are kept, their shares renormalised to 1, then NONE. A run of unknown frames
  keeps its slot and duration but its class is -1 (ignored by the classification loss);
- transition: whether the first future action differs from the last observed one (weighs the anticipation loss).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from training.features import SequenceFeatures

logger = logging.getLogger(__name__)
IGNORE = -1


@dataclass(frozen=True)
class Window:
    """One sample: indices (into the cached sequence) of the observed and the future frames."""

    seq: str
    observed: np.ndarray  # (T,) int64
    future: np.ndarray  # (H,) int64, may be shorter than horizon at the end of a sequence
    horizon: int  # frames the prediction covers (decode_frames' horizon)
    ratio: float  # paper: observation ratio; streaming: end time in seconds from the sequence start
    position: int  # frames of the timeline observed so far (the first future frame's timeline position)
    length: int  # frames in the sequence's timeline


@dataclass(frozen=True)
class ProtocolSpec:
    """Settings of the sampler; built from a TrainConfig by `protocol_spec`."""

    protocol: str  # "paper" | "streaming"
    n_queries: int
    none_index: int
    max_len: int
    future_fraction: float = 0.5  # paper
    frame_step: int = 1  # paper
    fps: float = 15.0  # streaming
    window_s: float = 8.0
    horizon_s: float = 8.0
    min_observed_s: float = 1.0
    stride_s: float = 2.0  # streaming evaluation windows
    speed_jitter: float = 0.0  # streaming training windows: the sequence played at a speed in [1 - j, 1 + j]

    @property
    def window_frames(self) -> int:
        return min(self.max_len, max(1, round(self.window_s * self.fps)))

    @property
    def horizon_frames(self) -> int:
        return max(1, round(self.horizon_s * self.fps))

    @property
    def min_observed_frames(self) -> int:
        return max(1, round(self.min_observed_s * self.fps))


def resample_indices(timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the frames kept when a stream is resampled to `fps` by timestamp: drop, never invent."""
    period, tol = 1.0 / fps, 0.25 / fps
    keep: list[int] = []
    due: float | None = None  # time the next frame is due
    for i, t in enumerate(timestamps.tolist()):
        if due is None or t >= due - tol:
            keep.append(i)
            due = t + period if due is None or t >= due + period - tol else due + period
    return np.asarray(keep, dtype=np.int64)


def timeline(seq: SequenceFeatures, spec: ProtocolSpec) -> np.ndarray:
    """The frames of a sequence a protocol works on (subsampled or resampled)."""
    if spec.protocol == "paper":
        return np.arange(0, len(seq), spec.frame_step, dtype=np.int64)
    return resample_indices(seq.timestamps, spec.fps)


def frames_of(fraction: float, n: int) -> int:
    """floor(fraction * n), robust to float round-off (0.29 * 100 is 28.999...)."""
    return int(fraction * n + 1e-9)


def paper_window(seq: SequenceFeatures, spec: ProtocolSpec, ratio: float) -> Window | None:
    idx = timeline(seq, spec)
    n = len(idx)
    n_obs = max(1, frames_of(ratio, n))
    horizon = max(1, frames_of(spec.future_fraction, n))
    if n_obs >= n:
        return None
    observed = idx[max(0, n_obs - spec.max_len) : n_obs]  # longer than the positional table: keep the latest frames
    return Window(seq.id, observed, idx[n_obs : n_obs + horizon], horizon, ratio, n_obs, n)


def streaming_window(seq: SequenceFeatures, spec: ProtocolSpec, idx: np.ndarray, end: int) -> Window:
    """The window whose last observed frame is idx[end - 1]."""
    return Window(
        seq.id,
        idx[max(0, end - spec.window_frames) : end],
        idx[end : end + spec.horizon_frames],
        spec.horizon_frames,
        float(seq.timestamps[idx[end - 1]] - seq.timestamps[idx[0]]),
        end,
        len(idx),
    )


def _end_range(n: int, spec: ProtocolSpec) -> tuple[int, int] | None:
    """Inclusive range of window ends (observed frame counts) with a full horizon, else with a cut one."""
    lo = min(spec.min_observed_frames, n - 1)
    hi = n - spec.horizon_frames
    if lo < 1:
        return None
    return (lo, hi) if hi >= lo else (lo, n - 1)


def training_windows(
    data: dict[str, SequenceFeatures], spec: ProtocolSpec, ratios: list[float], windows_per_sequence: int, seed: int
) -> list[Window]:
    """An epoch's samples: every (sequence, ratio) pair (paper) or random window ends (streaming, seeded)."""
    out: list[Window] = []
    rng = np.random.default_rng(seed)
    for seq_id in sorted(data):
        seq = data[seq_id]
        if spec.protocol == "paper":
            out.extend(w for r in ratios if (w := paper_window(seq, spec, r)) is not None)
            continue
        # without jitter: one timeline per sequence and the same random draws as before jitter existed, so that
        # earlier runs' windows are reproduced
        if spec.speed_jitter == 0:
            idx = timeline(seq, spec)
            span = _end_range(len(idx), spec)
            if span is None:
                continue
            for end in rng.integers(span[0], span[1] + 1, size=windows_per_sequence):
                out.append(streaming_window(seq, spec, idx, int(end)))
            continue
        for _ in range(windows_per_sequence):  # each window its own speed: timestamps / speed, then resampled
            speed = 1 + rng.uniform(-spec.speed_jitter, spec.speed_jitter)
            idx = resample_indices(seq.timestamps / speed, spec.fps)
            span = _end_range(len(idx), spec)
            if span is not None:
                out.append(streaming_window(seq, spec, idx, int(rng.integers(span[0], span[1] + 1))))
    return out


def evaluation_windows(
    data: dict[str, SequenceFeatures], spec: ProtocolSpec, ratio: float | None = None
) -> list[Window]:
    """Deterministic samples: at one observation ratio (paper), or ends every stride_s seconds (streaming)."""
    out: list[Window] = []
    skipped = 0
    for seq_id in sorted(data):
        seq = data[seq_id]
        if spec.protocol == "paper":
            if ratio is None:
                raise ValueError("the paper protocol evaluates at an observation ratio; got ratio=None")
            w = paper_window(seq, spec, ratio)
            if w is not None:
                out.append(w)
            continue
        idx = timeline(seq, spec)
        lo, hi = spec.min_observed_frames, len(idx) - spec.horizon_frames
        if hi < lo:
            skipped += 1
            continue
        stride = max(1, round(spec.stride_s * spec.fps))
        out.extend(streaming_window(seq, spec, idx, end) for end in range(lo, hi + 1, stride))
    if skipped:
        logger.warning("%d sequences are shorter than min_observed_s + horizon_s and were not evaluated", skipped)
    return out


def runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encoding: (values, lengths)."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(labels)]]))
    return labels[starts].astype(np.int64), lengths.astype(np.int64)


def future_targets(future_labels: np.ndarray, n_queries: int, none_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(actions (Q,) with NONE after the runs and -1 padding, durations (Q,) shares of the future, 0 elsewhere)."""
    values, lengths = runs(future_labels)
    if len(values) > n_queries - 1:
        values, lengths = values[: n_queries - 1], lengths[: n_queries - 1]
    actions = np.full(n_queries, IGNORE, dtype=np.int64)
    durations = np.zeros(n_queries, dtype=np.float32)
    n = len(values)
    actions[:n] = values
    if n:
        durations[:n] = lengths / lengths.sum()
    actions[n] = none_index
    return actions, durations


class WindowDataset(torch.utils.data.Dataset[dict[str, np.ndarray]]):
    """Windows -> per-sample arrays (float16 inputs, targets) for `collate`."""

    def __init__(self, data: dict[str, SequenceFeatures], windows: list[Window], spec: ProtocolSpec) -> None:
        self.data, self.windows, self.spec = data, windows, spec

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        w = self.windows[i]
        seq = self.data[w.seq]
        observed = seq.labels[w.observed]
        future = seq.labels[w.future]
        actions, durations = future_targets(future, self.spec.n_queries, self.spec.none_index)
        transition = bool(observed[-1] >= 0 and future[0] >= 0 and future[0] != observed[-1])
        return {
            "features": seq.rgb[w.observed],
            "depth": seq.depth[w.observed],
            "segmentation": observed,
            "actions": actions,
            "durations": durations,
            "transition": np.asarray(transition),
            "index": np.asarray(i),
        }


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest window: features (B, T, F), depth (B, T, 1, h, w), valid (B, T), targets."""
    b, t = len(items), max(len(x["segmentation"]) for x in items)
    f = items[0]["features"]
    d = items[0]["depth"]
    features = np.zeros((b, t, *f.shape[1:]), dtype=f.dtype)  # padded in the cache's float16, converted once below
    depth = np.zeros((b, t, *d.shape[1:]), dtype=d.dtype)
    valid = torch.zeros(b, t, dtype=torch.bool)
    seg = torch.full((b, t), IGNORE, dtype=torch.long)
    for i, x in enumerate(items):
        n = len(x["segmentation"])
        features[i, :n] = x["features"]
        depth[i, :n] = x["depth"]
        valid[i, :n] = True
        seg[i, :n] = torch.from_numpy(x["segmentation"])
    return {
        "features": torch.from_numpy(features).float(),
        "depth": torch.from_numpy(depth).float(),
        "valid": valid,
        "segmentation": seg,
        "actions": torch.from_numpy(np.stack([x["actions"] for x in items])),
        "durations": torch.from_numpy(np.stack([x["durations"] for x in items])),
        "transition": torch.from_numpy(np.stack([x["transition"] for x in items])),
        "index": torch.from_numpy(np.stack([x["index"] for x in items])),
    }
