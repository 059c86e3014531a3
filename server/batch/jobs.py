"""Batch-scoring jobs: submit a recording (an upload or a path under the data root), poll progress, fetch results as
JSON or CSV. Recordings of a job are scored in parallel (``job_workers`` threads, one recording each); inference goes
through the shared worker. Jobs and results live under ``jobs_dir/<id>/`` (job.json, results.json, frames.csv,
ticks.csv), so finished jobs survive a restart and unfinished ones are marked ``interrupted``.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from rgbd.files import write_json_atomic
from server.batch.results import write_results
from server.batch.scoring import Cancelled, ModelCalls, score_sequence
from server.batch.sources import (
    ArchiveLimits,
    SourceSequence,
    check_archive,
    check_supported_name,
    open_sequences,
    resolve_data_path,
)
from server.engine import Engine
from server.errors import JobNotFound, JobNotReady, NotReady, ServerError, public_reason
from server.metrics import Metrics
from server.protocol import (
    ErrorCode,
    JobCreate,
    JobPublic,
    JobResults,
    JobState,
    ProtocolError,
    SequenceProgress,
    SequenceResult,
)
from server.settings import Settings

logger = logging.getLogger(__name__)

UPLOAD_DIR = "upload"
SCRATCH_DIRS = (UPLOAD_DIR, "extracted", ".check")  # removed when a job ends: uploads, extractions, archive checks
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED})


class Job:
    def __init__(self, job_id: str, source: str, work_dir: Path, model_id: str, tick_hz: float | None) -> None:
        self.id = job_id
        self.source = source
        self.work_dir = work_dir
        self.model_id = model_id
        self.tick_hz = tick_hz
        self.state = JobState.QUEUED
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: str | None = None
        self.sequences: dict[str, SequenceProgress] = {}
        self.results: dict[str, SequenceResult] = {}
        self.cancel = threading.Event()
        self.cancel_state = JobState.CANCELLED
        self.futures: list[Future[None]] = []
        self.lock = threading.Lock()
        self.remaining = 0

    def public(self) -> JobPublic:
        with self.lock:
            seqs = list(self.sequences.values())
            known = [s for s in seqs if s.frames_total]
            if self.state is JobState.SUCCEEDED:
                progress = 1.0
            elif known:
                progress = sum(min(s.frames_done / (s.frames_total or 1), 1.0) for s in known) / max(len(seqs), 1)
            else:
                progress = 0.0
            return JobPublic(
                id=self.id, state=self.state, source=self.source, created_at=self.created_at,
                started_at=self.started_at, finished_at=self.finished_at, progress=round(min(progress, 1.0), 4),
                sequences=seqs, error=self.error, model_id=self.model_id,
            )  # fmt: skip

    def update(self, seq_id: str, **changes: object) -> None:
        with self.lock:
            self.sequences[seq_id] = self.sequences[seq_id].model_copy(update=changes)


class JobManager:
    def __init__(
        self, settings: Settings, worker: ModelCalls, engine: Callable[[], Engine], metrics: Metrics, root: Path
    ) -> None:
        self.settings = settings
        self.worker = worker
        self._engine = engine
        self.metrics = metrics
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(settings.job_workers, thread_name_prefix="r3d-job")
        self.jobs: dict[str, Job] = {}
        self.accepting = True
        self._load_existing()

    # --- submission ----------------------------------------------------------------------------------------------

    def _new_job(self, source: str, tick_hz: float | None) -> Job:
        if not self.accepting:
            raise NotReady("the server is shutting down; submit the job to another replica")
        job_id = secrets.token_hex(8)
        job = Job(job_id, source, self.root / job_id, self._engine().model_id, tick_hz)
        job.work_dir.mkdir(parents=True)
        self.jobs[job_id] = job
        self._persist(job)
        return job

    def submit_path(self, request: JobCreate) -> Job:
        path = resolve_data_path(self.settings.data_root, request.path)
        if path.is_file():
            check_supported_name(path.name)
        job = self._new_job(request.path, request.tick_hz)
        self._start(job, path, request.sequences)
        return job

    def submit_upload(self, filename: str, data: BinaryIO, tick_hz: float | None) -> Job:
        """Store an uploaded file (size-limited) and start scoring it; blocking, run it in a thread."""
        check_supported_name(filename)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name) or "upload"
        job = self._new_job(f"upload:{safe}", tick_hz)
        target = job.work_dir / UPLOAD_DIR / safe
        target.parent.mkdir()
        limit = min(self.settings.max_upload_bytes, self.settings.job_disk_quota_bytes)
        size = 0
        try:
            with target.open("wb") as out:
                while chunk := data.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise ProtocolError(
                            ErrorCode.MESSAGE_TOO_LARGE,
                            f"upload {filename!r} exceeds {limit} bytes (max_upload_bytes, job_disk_quota_bytes); "
                            "score it from the data root instead",
                        )
                    out.write(chunk)
            check_archive(target, self._archive_limits(size))
        except (ServerError, ProtocolError):
            self.jobs.pop(job.id, None)  # refused outright: no job record, nothing left on disk
            shutil.rmtree(job.work_dir, ignore_errors=True)
            raise
        self._start(job, target, None)
        return job

    def _archive_limits(self, used_bytes: int) -> ArchiveLimits:
        """What extracting a job's archive may still write: the job's disk quota less what it already holds."""
        return ArchiveLimits(self.settings.job_disk_quota_bytes - used_bytes, self.settings.max_archive_members)

    def _start(self, job: Job, path: Path, only: list[str] | None) -> None:
        job.futures.append(self.pool.submit(self._prepare, job, path, only))

    def _prepare(self, job: Job, path: Path, only: list[str] | None) -> None:
        try:
            used = sum(f.stat().st_size for f in (job.work_dir / UPLOAD_DIR).glob("*"))
            sequences = open_sequences(path, job.work_dir, only, limits=self._archive_limits(used))
        except Exception as exc:
            unexpected = not isinstance(exc, ValueError | ServerError)
            logger.warning("job %s: cannot open %s: %s", job.id, job.source, public_reason(exc), exc_info=unexpected)
            self._finish(job, JobState.FAILED, public_reason(exc))
            return
        with job.lock:
            job.state = JobState.RUNNING
            job.started_at = time.time()
            job.remaining = len(sequences)
            for seq in sequences:
                job.sequences[seq.id] = SequenceProgress(
                    id=seq.id, frames_total=seq.total, frames_done=0, state=JobState.QUEUED
                )
        self._persist(job)
        for seq in sequences:
            job.futures.append(self.pool.submit(self._score, job, seq))

    def _score(self, job: Job, seq: SourceSequence) -> None:
        engine = self._engine()
        state, error = JobState.SUCCEEDED, None
        job.update(seq.id, state=JobState.RUNNING)
        try:
            if job.cancel.is_set():
                raise Cancelled("cancelled before it started")
            result = score_sequence(
                seq, worker=self.worker, engine=engine, settings=self.settings, tick_hz=job.tick_hz,
                progress=lambda n: job.update(seq.id, frames_done=n), cancelled=job.cancel.is_set,
            )  # fmt: skip
            with job.lock:
                job.results[seq.id] = result
            self.metrics.job_frames_scored(len(result.frames))
        except Cancelled as exc:
            state, error = job.cancel_state, str(exc)
        except Exception as exc:
            unexpected = not isinstance(exc, ValueError | ServerError)
            logger.warning("job %s: sequence %s failed: %s", job.id, seq.id, public_reason(exc), exc_info=unexpected)
            state, error = JobState.FAILED, public_reason(exc)
        job.update(seq.id, state=state, error=error)
        with job.lock:
            job.remaining -= 1
            last = job.remaining == 0
        if last:
            self._complete(job)

    def _complete(self, job: Job) -> None:
        states = [s.state for s in job.sequences.values()]
        if job.cancel.is_set():
            self._finish(job, job.cancel_state, "cancelled" if job.cancel_state is JobState.CANCELLED else
                         "the server shut down before the job finished")  # fmt: skip
            return
        failed = [s for s in job.sequences.values() if s.state is JobState.FAILED]
        if failed:
            self._finish(job, JobState.FAILED, f"{len(failed)} of {len(states)} recordings failed: {failed[0].error}")
            return
        results = [job.results[s] for s in job.sequences]
        doc = JobResults(job=job.public().model_copy(update={"state": JobState.SUCCEEDED, "progress": 1.0}),
                         model=self._engine().info, sequences=results)  # fmt: skip
        write_results(doc, job.work_dir)
        job.results.clear()  # served from disk from now on
        self._finish(job, JobState.SUCCEEDED, None)

    def _finish(self, job: Job, state: JobState, error: str | None) -> None:
        for scratch in SCRATCH_DIRS:  # however the job ended, only its record and results stay
            shutil.rmtree(job.work_dir / scratch, ignore_errors=True)
        with job.lock:
            job.state, job.error, job.finished_at = state, error, time.time()
        self._persist(job)
        logger.info("job %s %s%s", job.id, state.value, f": {error}" if error else "")

    def _persist(self, job: Job) -> None:
        write_json_atomic(job.work_dir / "job.json", job.public().model_dump(mode="json"))

    def _load_existing(self) -> None:
        for path in sorted(self.root.glob("*/job.json")):
            try:
                public = JobPublic.model_validate_json(path.read_text())
            except (OSError, ValueError):
                logger.warning("ignoring the unreadable record of job %s", path.parent.name)
                continue
            job = Job(public.id, public.source, path.parent, public.model_id, None)
            job.state, job.error = public.state, public.error
            job.created_at, job.started_at, job.finished_at = public.created_at, public.started_at, public.finished_at
            job.sequences = {s.id: s for s in public.sequences}
            if job.state not in TERMINAL:
                self._finish(job, JobState.INTERRUPTED, "the server stopped before the job finished")
            self.jobs[job.id] = job

    # --- queries -------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state not in TERMINAL:
            job.cancel.set()
            for fut in job.futures:
                fut.cancel()
            with job.lock:
                queued_only = job.state is JobState.QUEUED or all(
                    s.state is JobState.QUEUED for s in job.sequences.values()
                )
            if queued_only and all(f.done() for f in job.futures):
                self._finish(job, JobState.CANCELLED, "cancelled")
        return job

    def results_path(self, job_id: str, name: str) -> Path:
        job = self.get(job_id)
        if job.state is not JobState.SUCCEEDED:
            raise JobNotReady(f"job {job_id} is {job.state.value}; results exist once it has succeeded")
        return job.work_dir / name

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs (record and results) older than ``job_retention_s``; their ids."""
        now = time.time() if now is None else now
        old = [
            j for j in list(self.jobs.values())
            if j.state in TERMINAL and j.finished_at is not None and now - j.finished_at > self.settings.job_retention_s
        ]  # fmt: skip
        for job in old:
            self.jobs.pop(job.id, None)
            shutil.rmtree(job.work_dir, ignore_errors=True)
            logger.info("job %s deleted: finished more than %g s ago", job.id, self.settings.job_retention_s)
        return [j.id for j in old]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in JobState}
        for job in self.jobs.values():
            out[job.state.value] += 1
        return out

    def shutdown(self, grace_s: float) -> None:
        """Stop taking jobs, let running ones finish for ``grace_s``, then stop and mark the rest interrupted."""
        self.accepting = False
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(j.state not in TERMINAL for j in self.jobs.values()):
            time.sleep(0.05)
        for job in self.jobs.values():
            if job.state not in TERMINAL:
                job.cancel_state = JobState.INTERRUPTED
                job.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for job in self.jobs.values():
            if job.state not in TERMINAL:
                self._finish(job, JobState.INTERRUPTED, "the server shut down before the job finished")
