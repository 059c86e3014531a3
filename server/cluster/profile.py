"""Where a frame's time goes on the cluster path, stage by stage (``python -m benchmarks.cluster_scale
--profile-tiers`` prints the medians; docs/scale-out.md has a measured table).

Each frame carries timestamps from tier to tier (``CallStamps`` from the ingress to its session's owner,
``EncodeJob.sent_at`` and ``Encoded.stamps`` to the FrameEncoder and back); each replica keeps the last
``SAMPLES`` durations of each stage it can compute. The stamps are ``time.perf_counter()``, one clock for every
process of a machine on Linux (CLOCK_MONOTONIC): a hop between machines mixes two clocks, so the one-way hops
(``to_session``, ``to_encoder``, ``from_encoder``, ``ingress_wait`` as the owner computes it) mean something on one
machine only.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

SAMPLES = 4096

# stage -> what it measures, in the order a frame meets them
STAGES: dict[str, str] = {
    "ingress_parse": "ingress: message read from the socket -> parsed and checked (msgpack, limits)",
    "ingress_wait": "ingress: frame read from the socket -> its call to the owner leaves (one call in flight)",
    "to_session": "Ray hop ingress -> session replica: call leaves -> the owner starts it",
    "to_encoder": "Ray hop session replica -> FrameEncoder: request sent -> the replica has it",
    "encoder_queue": "FrameEncoder: request received -> its @serve.batch starts",
    "decode": "FrameEncoder: decoding and preprocessing of the frame (prepare_frame)",
    "encode": "FrameEncoder: the batch's model call",
    "from_encoder": "Ray hop FrameEncoder -> session replica: batch done -> the owner has the tokens",
    "anticipate": "session replica: the call's Anticipator batches (queue + model)",
    "journal": "session replica: the journal write to the session store",
    "session_call": "session replica: the whole call (start -> reply)",
    "call_round_trip": "ingress: call leaves -> reply back (both Ray hops and the owner's call)",
}


@dataclass(frozen=True)
class CallStamps:
    """The ingress's stamps of one call: when each frame was read, and when the call left."""

    received: list[float]
    sent_at: float


@dataclass(frozen=True)
class EncodeStamps:
    """A FrameEncoder's stamps of one frame: when the session replica sent it, the request arrived, its batch started
    and ended, and the frame's own decoding and preprocessing seconds."""

    sent_at: float
    arrived: float
    started: float
    done: float
    prepare_s: float


class StageClock:
    """The last SAMPLES durations (seconds) of each stage, in one replica."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[float]] = {}

    def observe(self, stage: str, seconds: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=SAMPLES)).append(seconds)

    def samples(self) -> dict[str, list[float]]:
        return {stage: list(values) for stage, values in self._samples.items()}


def medians_ms(parts: list[dict[str, list[float]]]) -> dict[str, tuple[float, int]]:
    """Samples of several replicas -> per stage (median ms, sample count), in STAGES order."""
    merged: dict[str, list[float]] = {}
    for part in parts:
        for stage, values in part.items():
            merged.setdefault(stage, []).extend(values)
    return {s: (1e3 * statistics.median(merged[s]), len(merged[s])) for s in STAGES if merged.get(s)}
