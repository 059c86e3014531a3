"""Batch scoring jobs: submit (multipart upload or a JSON path under the data root), poll, fetch results, cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from server.deps import ServiceDep, SettingsDep
from server.errors import JobError
from server.protocol import ErrorCode, JobCreate, JobList, JobPublic, JobResults, ProtocolError

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}, "tick_hz": {"type": "number"}},
                }
            },
        },
    }
}


@router.post("", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED, openapi_extra=SUBMIT_BODY)
async def submit_job(request: Request, runtime: ServiceDep, settings: SettingsDep) -> JobPublic:
    """Score a recording: a multipart ``file`` (zip / tar of a dataset or sequence folder, .bag, .db3, .mkv) with an
    optional ``tick_hz`` field, or JSON ``JobCreate`` naming a path under the server's data root."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"expected an upload of at most {settings.max_upload_bytes} bytes, got {int(declared)} bytes",
            )
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise JobError("expected a multipart field 'file' holding the recording", code=ErrorCode.BAD_REQUEST)
            tick = form.get("tick_hz")
            try:
                tick_hz = float(tick) if isinstance(tick, str) and tick else None
            except ValueError:
                raise JobError(f"expected tick_hz as a number, got {tick!r}", code=ErrorCode.BAD_REQUEST) from None
            job = await asyncio.to_thread(runtime.jobs.submit_upload, upload.filename, upload.file, tick_hz)
        return job.public()
    if not content_type.startswith("application/json"):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FORMAT, f"expected multipart/form-data or application/json, got {content_type!r}"
        )
    try:
        create = JobCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:6])
        raise JobError(f"invalid job request: {problems}", code=ErrorCode.BAD_REQUEST) from exc
    job = await asyncio.to_thread(runtime.jobs.submit_path, create)
    return job.public()


@router.get("", response_model=JobList)
def list_jobs(runtime: ServiceDep) -> JobList:
    return JobList(jobs=[j.public() for j in runtime.jobs.jobs.values()])


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, runtime: ServiceDep) -> JobPublic:
    """State and progress (0..1, per recording)."""
    return runtime.jobs.get(job_id).public()


@router.delete("/{job_id}", response_model=JobPublic)
def cancel_job(job_id: str, runtime: ServiceDep) -> JobPublic:
    """Cancel a queued or running job (finished jobs are left as they are)."""
    return runtime.jobs.cancel(job_id).public()


@router.get("/{job_id}/results", response_model=JobResults, response_class=FileResponse)
def job_results(job_id: str, runtime: ServiceDep) -> FileResponse:
    """Per-frame current action and per-tick anticipations of every recording (409 until the job succeeded)."""
    return FileResponse(runtime.jobs.results_path(job_id, "results.json"), media_type="application/json")


@router.get("/{job_id}/results.csv", response_class=FileResponse)
def job_results_csv(
    job_id: str,
    runtime: ServiceDep,
    table: str = Query("frames", pattern="^(frames|ticks)$", description="frames or ticks"),
) -> FileResponse:
    """``frames``: one row per input frame; ``ticks``: one row per anticipated action per tick."""
    path = runtime.jobs.results_path(job_id, f"{table}.csv")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}-{table}.csv")
