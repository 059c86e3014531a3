"""Prometheus metrics of one app (its own CollectorRegistry, so several apps in one process never collide).

Per session (label ``session``, removed when the session closes): used frames per second, queue depth, frames by
outcome, predictions, and modality health (effective rank of the recent fused, RGB and depth tokens, their balance,
and whether each camera stream looks alive). Global: encode / anticipate / frame-to-prediction / decode latency
histograms, encoder batch sizes, errors by code, sessions, jobs by state, the model in use, and the session store
(up or in an outage, failed calls, journal writes, bytes and round-trip time, sessions fenced and restored).
``NullMetrics`` records nothing (tests, tools).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from server.protocol import ModalityHealth, ModelInfo, StreamStatus

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64, 128, 256)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.sessions = Gauge("r3d_sessions", "Open sessions by state", ["state"], registry=r)
        self.frames = Counter("r3d_frames", "Frames by outcome", ["session", "outcome"], registry=r)
        self.drops = Counter("r3d_frames_dropped", "Used frames dropped, by reason", ["session", "reason"], registry=r)
        self.queue_depth = Gauge("r3d_session_queue_depth", "Frames waiting for the encoder", ["session"], registry=r)
        self.fps = Gauge("r3d_session_fps", "Used frames per second (wall clock)", ["session"], registry=r)
        self.predictions = Counter("r3d_predictions", "Predictions sent", ["session"], registry=r)
        self.erank = Gauge("r3d_modality_erank", "Effective rank of recent tokens", ["session", "tokens"], registry=r)
        self.balance = Gauge("r3d_modality_balance", "erank_rgb / erank_depth", ["session"], registry=r)
        self.stream_alive = Gauge(
            "r3d_modality_stream_ok", "1 when a camera stream looks alive (status ok), 0 when blank, noise, static or "
            "missing; not set for absent or unused colour",
            ["session", "stream"], registry=r,
        )  # fmt: skip
        self.encode_s = Histogram("r3d_encode_seconds", "FrameEncoder batch time", buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("r3d_encode_batch_frames", "Frames per encoder batch", buckets=BATCH_BUCKETS, registry=r)
        self.anticipate_s = Histogram(
            "r3d_anticipate_seconds", "Anticipator time per batch of ticks", buckets=LATENCY_BUCKETS, registry=r
        )
        self.ticks = Histogram(
            "r3d_anticipate_batch_ticks", "Ticks per Anticipator batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.latency_s = Histogram(
            "r3d_frame_to_prediction_seconds", "Frame receipt to prediction", buckets=LATENCY_BUCKETS, registry=r
        )
        self.decode_s = Histogram("r3d_decode_seconds", "Frame decoding", buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("r3d_errors", "Errors answered, by code", ["code"], registry=r)
        self.jobs = Gauge("r3d_jobs", "Batch jobs by state", ["state"], registry=r)
        self.job_frames = Counter("r3d_job_frames", "Frames scored by batch jobs", registry=r)
        self.model = Info("r3d_model", "The model in use", registry=r)
        self.reloads = Counter("r3d_model_reloads", "Model reloads", registry=r)
        self.store_up = Gauge(
            "r3d_session_store_up", "1 while the session store takes writes, 0 during an outage (sessions stream in "
            "memory meanwhile)", registry=r,
        )  # fmt: skip
        self.store_up.set(1)
        self.store_errors = Counter("r3d_session_store_errors", "Session store calls that failed", registry=r)
        self.store_writes = Counter("r3d_session_store_writes", "Session journal writes (one per session)", registry=r)
        self.store_bytes = Counter("r3d_session_store_bytes", "Bytes of session journal written", registry=r)
        self.store_write_s = Histogram(
            "r3d_session_store_write_seconds", "One journal round trip (all sessions of an encoder batch)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.fenced = Counter(
            "r3d_sessions_fenced", "Sessions closed here because another process took them over", registry=r
        )
        self.restored = Counter("r3d_sessions_restored", "Sessions restored from the session store", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def frame(self, session: str, outcome: str) -> None:
        self.frames.labels(session, outcome).inc()

    def frame_dropped(self, session: str, reason: str) -> None:
        self.drops.labels(session, reason).inc()

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def observe_decode(self, seconds: float) -> None:
        self.decode_s.observe(seconds)

    def observe_encode(self, seconds: float, frames: int) -> None:
        self.encode_s.observe(seconds)
        self.batch.observe(frames)

    def observe_anticipate(self, seconds: float, ticks: int) -> None:
        self.anticipate_s.observe(seconds)
        self.ticks.observe(ticks)

    def observe_prediction(self, session: str, latency_s: float, modality: ModalityHealth | None) -> None:
        self.latency_s.observe(latency_s)
        self.predictions.labels(session).inc()
        if modality is not None:
            ranks = {"fused": modality.erank_fused, "rgb": modality.erank_rgb, "depth": modality.erank_depth}
            for name, value in ranks.items():
                if value is not None:
                    self.erank.labels(session, name).set(value)
            if modality.balance is not None:
                self.balance.labels(session).set(modality.balance)
            for stream, status in (("rgb", modality.rgb_status), ("depth", modality.depth_status)):
                # no colour camera, or colour the model ignores, is not a dead stream (missing colour is)
                if status is not None and status not in (StreamStatus.ABSENT, StreamStatus.UNUSED):
                    self.stream_alive.labels(session, stream).set(1.0 if status is StreamStatus.OK else 0.0)

    def session_gauges(self, session: str, fps: float, queue_depth: int) -> None:
        self.fps.labels(session).set(fps)
        self.queue_depth.labels(session).set(queue_depth)

    def session_counts(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.sessions.labels(state).set(n)

    def forget_session(self, session: str) -> None:
        """Drop a closed session's labelled series (bounded cardinality)."""
        per_session = (self.frames, self.drops, self.queue_depth, self.fps, self.predictions, self.erank, self.balance,
                       self.stream_alive)  # fmt: skip
        for metric in per_session:
            for labels in [k for k in _label_sets(metric) if k and k[0] == session]:
                try:
                    metric.remove(*labels)
                except KeyError:
                    pass

    def store_written(self, sessions: int, nbytes: int, seconds: float) -> None:
        self.store_writes.inc(sessions)
        self.store_bytes.inc(nbytes)
        self.store_write_s.observe(seconds)

    def store_failed(self) -> None:
        self.store_errors.inc()
        self.store_up.set(0)

    def store_recovered(self) -> None:
        self.store_up.set(1)

    def session_fenced(self) -> None:
        self.fenced.inc()

    def session_restored(self) -> None:
        self.restored.inc()

    def job_counts(self, counts: dict[str, int]) -> None:
        for state, n in counts.items():
            self.jobs.labels(state).set(n)

    def job_frames_scored(self, n: int) -> None:
        self.job_frames.inc(n)

    def model_loaded(self, info: ModelInfo, reload: bool = False) -> None:
        self.model.info({"model_id": info.model_id, "backend": info.backend, "server_version": info.server_version,
                         "frame_encoder_id": info.frame_encoder_id, "fps": str(info.fps)})  # fmt: skip
        if reload:
            self.reloads.inc()


def _label_sets(metric: Counter | Gauge) -> list[tuple[str, ...]]:
    return [tuple(k) for k in metric._metrics]  # prometheus_client has no public listing of child label sets


class NullMetrics(Metrics):
    """Records nothing."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())

    def frame(self, session: str, outcome: str) -> None:
        pass

    def observe_prediction(self, session: str, latency_s: float, modality: ModalityHealth | None) -> None:
        pass
