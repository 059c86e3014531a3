"""Batch scoring: a recording replayed through a WebSocket session without pacing and scored as a batch job gives
identical predictions; jobs from a data-root path and from an upload; results as JSON and CSV; refused inputs."""

from __future__ import annotations

import csv
import io
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.protocol import ColorCodec, DepthCodec, FrameIn, pack
from tests.real_fixtures import real_fixture
from tests.server.helpers import API_HEADERS, BYE, open_ws, recv_until, start, write_recording

N_FRAMES = 36


@pytest.fixture(scope="module")
def recording(data_root: Path) -> Path:
    return write_recording(data_root, "rec", N_FRAMES)


def wait_job(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def replay(ws_url: str, seq_dir: Path, tick_hz: float, expected: int) -> list[Any]:
    """Send the recording's own JPEG / PNG bytes, as fast as the server takes them."""
    rows = list(csv.DictReader(io.StringIO((seq_dir / "labels.csv").read_text())))
    with open_ws(ws_url) as ws:
        start(ws, backpressure="block", tick_hz=tick_hz)
        for i, row in enumerate(rows):
            msg = FrameIn(seq=i, ts=float(row["timestamp"]), color_codec=ColorCodec.JPEG,
                          color=(seq_dir / "rgb" / f"{i:06d}.jpg").read_bytes(), depth_codec=DepthCodec.PNG,
                          depth=(seq_dir / "depth" / f"{i:06d}.png").read_bytes())  # fmt: skip
            ws.send(pack(msg))
        preds = [recv_until(ws, "prediction")[0] for _ in range(expected)]
        ws.send(BYE)
    return preds


def test_streaming_replay_and_batch_job_give_identical_predictions(
    server_factory: Callable[..., Any], recording: Path
) -> None:
    with server_factory(encoder_max_batch=1) as url, httpx.Client(base_url=url, headers=API_HEADERS) as http:
        job = http.post("/v1/jobs", json={"path": "rec", "tick_hz": 5.0}).json()
        done = wait_job(http, job["id"])
        ticks = http.get(f"/v1/jobs/{job['id']}/results").json()["sequences"][0]["ticks"]
        streamed = replay("ws" + url[4:] + "/v1/stream", recording / "sequences" / "seq0", 5.0, len(ticks))
    assert done["state"] == "succeeded" and done["progress"] == 1.0
    assert [t["frame_index"] for t in ticks] == list(range(0, N_FRAMES, 3))  # 15 fps, 5 Hz: every third frame
    for p, t in zip(streamed, ticks, strict=True):
        assert p.frame_seq == t["frame_index"] and p.frame_ts == t["frame_ts"]
        assert p.current.model_dump() == t["current"]  # bit-identical probabilities
        assert [a.model_dump() for a in p.future] == t["future"]
        assert p.window.model_dump() == t["window"]
        assert p.modality.model_dump() == t["modality"]


@pytest.fixture(scope="module")
def finished_job(live_server: str, recording: Path) -> dict[str, Any]:
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=60) as http:
        job = http.post("/v1/jobs", json={"path": "rec"}).json()
        return wait_job(http, job["id"])


def test_job_results_have_every_frame_and_a_tick_per_frame_by_default(live_server: str, finished_job: dict) -> None:
    with httpx.Client(base_url=live_server, headers=API_HEADERS) as http:
        results = http.get(f"/v1/jobs/{finished_job['id']}/results").json()
        frames_csv = http.get(f"/v1/jobs/{finished_job['id']}/results.csv", params={"table": "frames"})
        ticks_csv = http.get(f"/v1/jobs/{finished_job['id']}/results.csv", params={"table": "ticks"})
    seq = results["sequences"][0]
    assert finished_job["state"] == "succeeded" and finished_job["sequences"][0]["frames_done"] == N_FRAMES
    assert len(seq["frames"]) == N_FRAMES and len(seq["ticks"]) == N_FRAMES
    assert all(f["accepted"] and f["action_label"] in ("walk", "sit", "drink") for f in seq["frames"])
    assert [f["label"] for f in seq["frames"][:11]] == ["walk"] * 10 + ["sit"]
    rows = list(csv.DictReader(io.StringIO(frames_csv.text)))
    assert frames_csv.headers["content-type"].startswith("text/csv") and len(rows) == N_FRAMES
    assert rows[0]["sequence"] == "seq0" and rows[5]["action_label"] == seq["frames"][5]["action_label"]
    tick_rows = list(csv.DictReader(io.StringIO(ticks_csv.text)))
    assert {int(r["frame"]) for r in tick_rows} == set(range(N_FRAMES))


def test_uploaded_zip_scores_like_the_data_root_path(live_server: str, recording: Path, tmp_path: Path,
                                                     finished_job: dict) -> None:  # fmt: skip
    archive = Path(shutil.make_archive(str(tmp_path / "rec"), "zip", recording.parent, "rec"))
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=60) as http:
        job = http.post("/v1/jobs", files={"file": ("rec.zip", archive.read_bytes())}).json()
        done = wait_job(http, job["id"])
        uploaded = http.get(f"/v1/jobs/{job['id']}/results").json()["sequences"]
        by_path = http.get(f"/v1/jobs/{finished_job['id']}/results").json()["sequences"]
    assert done["state"] == "succeeded" and done["source"] == "upload:rec.zip"
    assert [t["current"]["label"] for t in uploaded[0]["ticks"]] == [t["current"]["label"] for t in by_path[0]["ticks"]]


@pytest.mark.parametrize(
    ("body", "status", "code", "match"),
    [
        ({"path": "../etc"}, 403, "path_not_allowed", "without '..'"),
        ({"path": "/etc/passwd"}, 403, "path_not_allowed", "expected a relative path"),
        ({"path": "missing"}, 403, "path_not_allowed", "no file or folder 'missing'"),
        ({"path": "rec/labels.txt"}, 403, "path_not_allowed", "no file or folder"),
        ({"tick_hz": 5}, 400, "bad_request", "invalid job request: path: Field required"),
    ],
)
def test_job_bad_path_is_refused(live_server: str, recording: Path, body: dict, status: int, code: str,
                                 match: str) -> None:  # fmt: skip
    r = httpx.post(f"{live_server}/v1/jobs", json=body, headers=API_HEADERS)
    assert r.status_code == status and r.json()["code"] == code and match in r.json()["message"]


def test_job_upload_of_unsupported_format_is_refused(live_server: str) -> None:
    r = httpx.post(f"{live_server}/v1/jobs", files={"file": ("clip.avi", b"RIFF")}, headers=API_HEADERS)
    assert r.status_code == 415 and r.json()["code"] == "unsupported_format"
    assert "unsupported recording format '.avi'; expected a dataset folder" in r.json()["message"]


def test_job_upload_with_escaping_member_is_refused(live_server: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../../outside.txt", "x")
    r = httpx.post(f"{live_server}/v1/jobs", files={"file": ("evil.zip", path.read_bytes())}, headers=API_HEADERS)
    assert r.status_code == 403 and r.json()["code"] == "path_not_allowed"
    assert "'../../outside.txt' would be written outside" in r.json()["message"]


def test_job_results_before_success_and_unknown_job(live_server: str, data_root: Path) -> None:
    (data_root / "broken").mkdir(exist_ok=True)
    with httpx.Client(base_url=live_server, headers=API_HEADERS) as http:
        job = http.post("/v1/jobs", json={"path": "broken"}).json()
        failed = wait_job(http, job["id"])
        early = http.get(f"/v1/jobs/{job['id']}/results")
        unknown = http.get("/v1/jobs/nope")
    assert failed["state"] == "failed" and "neither dataset.json nor meta.json" in failed["error"]
    assert early.status_code == 409 and early.json()["code"] == "job_not_ready"
    assert "is failed" in early.json()["message"]
    assert unknown.status_code == 404 and unknown.json()["code"] == "job_not_found"


def test_job_rejects_a_frame_whose_stored_jpeg_is_corrupt_and_scores_the_others(
    live_server: str, data_root: Path
) -> None:
    """A dataset's JPEG goes to the model's input path still encoded: a damaged one rejects that frame with
    corrupt_image, as a session rejects such a streamed frame, instead of failing the job."""
    rec = write_recording(data_root, "damaged", 12)
    jpeg = rec / "sequences" / "seq0" / "rgb" / "000005.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300] + b"\x00" * 64)  # the header survives, the image data does not
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=60) as http:
        done = wait_job(http, http.post("/v1/jobs", json={"path": "damaged"}).json()["id"])
        seq = http.get(f"/v1/jobs/{done['id']}/results").json()["sequences"][0]
    assert done["state"] == "succeeded", done["error"]
    frame = seq["frames"][5]
    assert not frame["accepted"] and frame["error"].startswith("corrupt_image: colour JPEG of 364 bytes")
    assert [f["accepted"] for f in seq["frames"]] == [i != 5 for i in range(12)]
    assert seq["counters"]["rejected"] == 1 and len(seq["ticks"]) == 11


@pytest.mark.parametrize("name", ["realsense_d435/single_depth_color_640x480.bag", "azure_kinect/recording.mkv"])
def test_job_scores_a_real_camera_recording(live_server: str, data_root: Path, name: str) -> None:
    source = real_fixture(name)
    shutil.copy(source, data_root / source.name)
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=60) as http:
        job = http.post("/v1/jobs", json={"path": source.name}).json()
        done = wait_job(http, job["id"])
        assert done["state"] == "succeeded", done["error"]
        results = http.get(f"/v1/jobs/{job['id']}/results").json()
    seq = results["sequences"][0]
    assert seq["id"] == source.stem and seq["frames"] and seq["ticks"]
    assert seq["counters"]["accepted"] + seq["counters"]["resampled_out"] + seq["counters"]["rejected"] == len(
        seq["frames"]
    )


def test_finished_job_is_deleted_after_the_retention_time(server_factory: Callable[..., Any], recording: Path) -> None:
    with server_factory(job_retention_s=1.0) as url, httpx.Client(base_url=url, headers=API_HEADERS) as http:
        done = wait_job(http, http.post("/v1/jobs", json={"path": "rec"}).json()["id"])
        deadline = time.monotonic() + 10
        while (gone := http.get(f"/v1/jobs/{done['id']}")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert done["state"] == "succeeded"
    assert gone.status_code == 404 and gone.json()["code"] == "job_not_found"
