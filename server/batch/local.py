"""Batch scoring without a server: the server's batch-job path (``score_sequence``, the inference worker, the results
writer) run in this process on a model file. ``python -m server.batch`` runs it; ``r3d-score --bundle`` re-executes
that command, so the camera-side package never imports this one.

Threads are set once, to the cores this process may use (``os.sched_getaffinity``), by the server's own
``load_engine`` and ``configure_threads``: the model runtime's intra-op pool (ONNX Runtime or torch) gets all of
them, OpenCV one. Left to their defaults, ONNX Runtime sized a pool per graph to every core of the host and torch
and OpenCV each took the machine again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from server.batch.scoring import score_sequence
from server.batch.sources import open_sequences
from server.metrics import NullMetrics
from server.protocol import JobPublic, JobResults, JobState, SequenceProgress, SequenceResult
from server.runtime import configure_threads, load_engine
from server.settings import Settings
from server.streaming.worker import InferenceWorker

__all__ = ["score_locally"]

logger = logging.getLogger(__name__)


def score_locally(
    source: Path,
    bundle: Path,
    *,
    backend: str = "auto",
    tick_hz: float | None = None,
    sequences: list[str] | None = None,
    progress: bool = True,
) -> JobResults:
    """Score every sequence under ``source`` (recording, dataset or sequence folder, archive) with the model at
    ``bundle`` (export bundle or checkpoint); returns what GET /v1/jobs/{id}/results of a server job would."""
    if not bundle.exists():
        raise ValueError(f"expected an export bundle folder or a checkpoint file at {str(bundle)!r}; it does not exist")
    settings = Settings.model_validate({"model_path": bundle, "backend": backend})
    created = time.time()
    engine = asyncio.run(load_engine(bundle, backend, settings, str(bundle)))  # its failure is logged with the reason
    configure_threads(settings, engine)
    worker = InferenceWorker(engine, NullMetrics(), max_batch=settings.encoder_max_batch, max_delay_s=0.0)
    worker.start()
    results: list[SequenceResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="r3d-score-") as work:
            for seq in open_sequences(source, Path(work), sequences):
                with tqdm(total=seq.total, desc=seq.id, unit="frame", disable=not progress, file=sys.stderr) as bar:

                    def advance(n: int, bar: tqdm = bar) -> None:
                        bar.update(n - bar.n)

                    results.append(
                        score_sequence(
                            seq, worker=worker, engine=engine, settings=settings, tick_hz=tick_hz, progress=advance
                        )
                    )
    finally:
        worker.stop()
    done = [
        SequenceProgress(id=r.id, frames_total=len(r.frames), frames_done=len(r.frames), state=JobState.SUCCEEDED)
        for r in results
    ]
    job = JobPublic(
        id="local", state=JobState.SUCCEEDED, source=str(source), created_at=created, started_at=created,
        finished_at=time.time(), progress=1.0, sequences=done, error=None, model_id=engine.model_id,
    )  # fmt: skip
    return JobResults(job=job, model=engine.info, sequences=results)
