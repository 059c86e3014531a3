"""Batch scoring without a server (`r3d-score --bundle`): the server's own batch-job code path run in-process.

Imported lazily by clients.score_cli, and only for --bundle: it needs torch and the model libraries (export, model)
through the server's Engine. It reuses server.scoring.score_sequence, the function the server's batch jobs run, so a
local score equals a server job's results for the same model (no second implementation of resampling, windows,
ticks or decoding). Importing this module never happens on the camera-side (torch-free) path.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from server.protocol import JobPublic, JobResults, JobState, SequenceProgress, SequenceResult

__all__ = ["score_locally"]

logger = logging.getLogger(__name__)


def score_locally(
    source: str | Path,
    model: str | Path,
    *,
    backend: str = "auto",
    tick_hz: float | None = None,
    sequences: list[str] | None = None,
    progress: bool = True,
) -> JobResults:
    """Score every sequence under `source` (recording, dataset or sequence folder, archive) with the model at
    `model` (export bundle or checkpoint); returns what the server's GET /v1/jobs/{id}/results would."""
    from tqdm import tqdm

    from server.engine import Engine, load_engine_backend
    from server.job_sources import open_sequences
    from server.metrics import Metrics
    from server.runtime import server_version
    from server.scoring import score_sequence
    from server.settings import Settings
    from server.streaming.worker import InferenceWorker

    source, model = Path(source), Path(model)
    if not model.exists():
        raise ValueError(f"expected an export bundle folder or a checkpoint file at {str(model)!r}; it does not exist")
    settings = Settings.model_validate({"model_path": model, "backend": backend})
    created = time.time()
    engine = Engine(load_engine_backend(model, backend, settings.device, settings.fp16), server_version(), model)
    worker = InferenceWorker(engine, Metrics(), max_batch=settings.encoder_max_batch, max_delay_s=0.0)
    worker.start()
    results: list[SequenceResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="r3d-score-") as work:
            for seq in open_sequences(source, Path(work), sequences):
                bar = tqdm(total=seq.total, desc=seq.id, unit="frame", disable=not progress, file=sys.stderr)

                def advance(n: int, bar: tqdm = bar) -> None:
                    bar.update(n - bar.n)

                try:
                    results.append(
                        score_sequence(
                            seq,
                            worker=worker,
                            engine=engine,
                            tick_hz=tick_hz or engine.spec.fps,
                            health_interval_s=settings.health_interval_s,
                            max_jump_s=settings.max_timestamp_jump_s,
                            chunk=settings.encoder_max_batch,
                            progress=advance,
                        )  # fmt: skip
                    )
                finally:
                    bar.close()
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
