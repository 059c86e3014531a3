"""Decoding of the action queries into (a) frame labels over a horizon (the paper's protocol) and (b) timed segments
in seconds (the service).

Per query: argmax action; the transcript stops at the first NONE; durations are the exp of the duration logits
normalised over the queries before it. Unlike the authors' code, frames are assigned by rounding the cumulative
boundaries, so the horizon is filled exactly (no leftover frames copied from the last query), and an empty
transcript predicts "no action" (-1) rather than an arbitrary class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NO_PREDICTION = -1


@dataclass(frozen=True)
class Transcript:
    """The decoded future of one sample: actions with their share of the horizon and their probability."""

    actions: list[int]
    fractions: list[float]  # sum to 1 when actions is non-empty
    probabilities: list[float]


def decode_transcript(action_logits: torch.Tensor, duration_logits: torch.Tensor, none_index: int) -> Transcript:
    """One sample's query outputs (Q, K + 1) and (Q,) -> its transcript."""
    probs = action_logits.detach().float().softmax(-1)
    p, actions = probs.max(-1)
    stops = (actions == none_index).nonzero()
    n = int(stops[0]) if len(stops) else len(actions)
    if n == 0:
        return Transcript([], [], [])
    fractions = duration_logits.detach().float()[:n].softmax(-1)
    return Transcript(actions[:n].tolist(), fractions.tolist(), p[:n].tolist())


def transcript_to_frames(transcript: Transcript, horizon: int) -> np.ndarray:
    """Fill `horizon` frames in order with the transcript's actions; (horizon,) int64, -1 where nothing is predicted."""
    out = np.full(horizon, NO_PREDICTION, dtype=np.int64)
    if not transcript.actions or horizon <= 0:
        return out
    bounds = np.rint(np.cumsum(transcript.fractions) * horizon).astype(int)
    bounds[-1] = horizon  # the fractions sum to 1: absorb float round-off
    start = 0
    for action, end in zip(transcript.actions, bounds, strict=True):
        out[start:end] = action
        start = max(start, end)
    return out


def decode_frames(
    action_logits: torch.Tensor, duration_logits: torch.Tensor, none_index: int, horizon: int
) -> np.ndarray:
    """Paper protocol: (Q, K + 1), (Q,) -> predicted labels of the next `horizon` frames."""
    return transcript_to_frames(decode_transcript(action_logits, duration_logits, none_index), horizon)


@dataclass(frozen=True)
class TimedAction:
    """An anticipated action, timed relative to the last observed frame."""

    action: int
    start_s: float
    duration_s: float
    probability: float


def decode_timed(
    action_logits: torch.Tensor, duration_logits: torch.Tensor, none_index: int, horizon_s: float
) -> list[TimedAction]:
    """Service protocol: (Q, K + 1), (Q,) -> anticipated actions with start offsets and durations in seconds."""
    tr = decode_transcript(action_logits, duration_logits, none_index)
    out, start = [], 0.0
    for action, frac, p in zip(tr.actions, tr.fractions, tr.probabilities, strict=True):
        out.append(TimedAction(action, start * horizon_s, frac * horizon_s, p))
        start += frac
    return out
