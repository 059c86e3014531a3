"""A real ``redis-server`` for tests: on 127.0.0.1, a free port, its files in a temporary folder, no persistence
(a restart loses its data, as an outage without persistence does). Tests that need it skip, naming the missing
binary, where Debian's ``redis-server`` package is not installed (.ci/run installs it).

    with RedisServer(tmp_path) as server:   # server.url: redis://127.0.0.1:PORT/0
        server.stop(); server.start()         # an outage and the way back (same port)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_binary() -> str:
    """The redis-server binary, or a skip naming what is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
    return binary


class RedisServer:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.binary = redis_binary()
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (log: {self.folder / 'redis.log'})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout_s:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
