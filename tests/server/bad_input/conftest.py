"""One real ``r3d-serve`` process (uvicorn on loopback) for the bad-input suite, a healthy session that streams
beside every hostile case, and the checks each case ends with: the server answers, its peak memory stayed bounded
(VmHWM of the process), and the healthy session kept predicting. Every error body the suite received and every log
line the server wrote are kept for the last check (no absolute path of the server's own folders, no traceback)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection

from tests.server.conftest import ADMIN_KEY, API_KEY
from tests.server.helpers import API_HEADERS, frame_msg, open_ws, recv_until, start

REPO = Path(__file__).resolve().parents[3]
PEAK_GROWTH_LIMIT = 300 * 2**20  # a case may raise the server's peak memory by this much at most
SUITE_SETTINGS = {
    "R3D_API_KEYS": API_KEY, "R3D_ADMIN_KEYS": ADMIN_KEY, "R3D_BACKEND": "pytorch", "R3D_INFERENCE_THREADS": "1",
    "R3D_DECODE_THREADS": "2", "R3D_MAX_SESSIONS": "8", "R3D_MAX_SESSIONS_PER_CLIENT": "6",
    "R3D_UNSTARTED_GRACE_S": "1", "R3D_JOB_DISK_QUOTA_BYTES": str(32 * 2**20), "R3D_LOG_LEVEL": "info",
}  # fmt: skip


class HealthySession:
    """A session streaming a good recording at ~10 frames a second, one prediction per frame, in a thread."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.predictions = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthy-session", daemon=True)

    def __enter__(self) -> HealthySession:
        self._thread.start()
        self.assert_predicting()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            with open_ws(self.ws_url) as ws:
                start(ws, backpressure="block", tick_hz=15)
                i = 0
                while not self._stop.is_set():
                    self._one(ws, i)
                    i += 1
                    time.sleep(0.1)
        except BaseException as exc:  # reported by assert_predicting
            self.failure = exc

    def _one(self, ws: ClientConnection, i: int) -> None:
        ws.send(frame_msg(i, ts=i / 15))
        prediction, others = recv_until(ws, "prediction", timeout=30)
        errors = [m for m in others if m.type == "error"]
        if errors or prediction.frame_seq != i:
            raise AssertionError(f"healthy session: expected the prediction of frame {i}, got {prediction.frame_seq} "
                                 f"and errors {errors}")  # fmt: skip
        self.predictions += 1

    def assert_predicting(self, new: int = 2, timeout_s: float = 30.0) -> None:
        before = self.predictions
        deadline = time.monotonic() + timeout_s
        while self.predictions < before + new and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.failure is None, f"the healthy session failed: {self.failure!r}"
        assert self.predictions >= before + new, f"the healthy session made {self.predictions - before} predictions"


@dataclass
class Served:
    """The running server: its URL, folders, process, log, and what the suite has seen of it."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    folders: dict[str, Path]
    baseline_peak: int = 0
    bodies: list[str] = field(default_factory=list)
    healthy: HealthySession | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :] + "/v1/stream"

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        """An HTTP client whose every response body is kept for the path check."""

        def keep(response: httpx.Response) -> None:
            response.read()
            if not response.headers.get("content-type", "").startswith("application/msgpack"):
                self.bodies.append(response.text)

        return httpx.Client(base_url=self.url, headers=API_HEADERS if headers is None else headers, timeout=60,
                            event_hooks={"response": [keep]})  # fmt: skip

    def keep(self, message: Any) -> Any:
        """A WebSocket message the suite received (kept for the path check), returned as is."""
        self.bodies.append(message.model_dump_json() if hasattr(message, "model_dump_json") else str(message))
        return message

    def peak_rss(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return kib * 1024

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_still_serving(self) -> None:
        """The end of every case: the process answers, its peak memory stayed bounded, the healthy session
        predicts."""
        assert self.process.poll() is None, f"r3d-serve exited with {self.process.returncode}"
        assert httpx.get(f"{self.url}/healthz", timeout=30).status_code == 200
        growth = self.peak_rss() - self.baseline_peak
        assert growth < PEAK_GROWTH_LIMIT, f"peak memory grew by {growth / 2**20:.0f} MiB during the suite"
        assert self.healthy is not None
        self.healthy.assert_predicting()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="package")
def served(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("bad_input")
    folders = {name: root / name for name in ("models", "jobs", "data")}
    for folder in folders.values():
        folder.mkdir()
    (folders["models"] / "default").mkdir()
    shutil.copy(checkpoints["base"], folders["models"] / "default" / "model.safetensors")  # r3d-serve DIR
    port = _free_port()
    env = {**os.environ, **SUITE_SETTINGS, "PYTHONPATH": str(REPO), "R3D_MODELS_DIR": str(folders["models"]),
           "R3D_JOBS_DIR": str(folders["jobs"]), "R3D_DATA_ROOT": str(folders["data"])}  # fmt: skip
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", str(folders["models"] / "default"), "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", process, log_path, folders)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"r3d-serve exited during startup:\n{served.log()[-3000:]}"
            try:
                if httpx.get(f"{served.url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "r3d-serve was not ready within 180 s"
            time.sleep(0.2)
        with HealthySession(served.ws_url) as healthy:
            served.healthy = healthy
            served.baseline_peak = served.peak_rss()
            yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
