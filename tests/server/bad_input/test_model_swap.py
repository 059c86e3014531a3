"""Finding 1: no API client can swap the model. A failed upload job shows no server path and leaves no files; reload
takes a model id from the operator's models_dir, never a path, and only with an admin key."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.server.bad_input.conftest import Served
from tests.server.bad_input.wire import zip_of_zeros
from tests.server.helpers import ADMIN_HEADERS


def _wait_finished(served: Served, job_id: str) -> dict[str, object]:
    with served.client() as http:
        deadline = time.monotonic() + 60
        while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    return job


def test_failed_upload_job_shows_no_server_path_and_leaves_no_files(
    served: Served, checkpoints: dict[str, Path]
) -> None:
    # given an upload holding a model file and a dataset.json that is not one
    members = {"evil/dataset.json": b'{"name": 1}', "evil/model.safetensors": checkpoints["other_encoder"].read_bytes()}
    evil = zip_of_zeros("evil/pad.bin", 0, members)
    with served.client() as http:
        submitted = http.post("/v1/jobs", files={"file": ("evil.zip", evil)})
    job = _wait_finished(served, submitted.json()["id"])
    job_dir = served.folders["jobs"] / str(job["id"])
    deadline = time.monotonic() + 5  # the record is written (atomically, via a temporary file) after the state changes
    while sorted(p.name for p in job_dir.iterdir()) != ["job.json"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert submitted.status_code == 202 and job["state"] == "failed"
    assert "expected format 'r3d-dataset' version 1" in str(job["error"])
    assert str(served.folders["jobs"]) not in str(job["error"]) and "/" not in str(job["error"])
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json"]  # upload and extraction removed
    served.assert_still_serving()


def test_reload_takes_a_model_id_from_models_dir_never_a_path(served: Served, checkpoints: dict[str, Path]) -> None:
    # given a loadable model planted where uploads live (what an extracted upload used to leave behind)
    planted = served.folders["jobs"] / "planted" / "model.safetensors"
    planted.parent.mkdir(exist_ok=True)
    shutil.copy(checkpoints["other_encoder"], planted)
    with served.client() as http:
        before = http.get("/v1/model").json()["model_id"]
        by_stream_key = http.post("/v1/model/reload", json={"path": str(planted)})
        by_path = http.post("/v1/model/reload", json={"path": str(planted)}, headers=ADMIN_HEADERS)
        by_escape = http.post("/v1/model/reload", json={"model": "../jobs/planted"}, headers=ADMIN_HEADERS)
        listed = http.get("/v1/model/available", headers=ADMIN_HEADERS)
        by_id = http.post("/v1/model/reload", json={"model": "default"}, headers=ADMIN_HEADERS)
        after = http.get("/v1/model").json()["model_id"]
    shutil.rmtree(planted.parent)
    assert by_stream_key.status_code == 403 and by_stream_key.json()["code"] == "forbidden"
    assert by_path.status_code == 400 and "model_id" not in by_path.text and "Extra inputs" in by_path.text
    assert by_escape.status_code == 404 and by_escape.json()["code"] == "model_not_found"
    assert "available: ['default']" in by_escape.json()["message"]
    assert listed.json() == {"current": before, "available": ["default"]}
    assert by_id.status_code == 200 and after == before  # the operator's model, reloaded; nothing else
    served.assert_still_serving()
