"""The service on a local Ray cluster (server.cluster) with a real redis-server: streams through Serve's HTTP proxy
with a real WebSocket client, predictions equal to one r3d-serve process, and a session that survives the SIGKILL of
the replica that owns it (its window restored from Redis by the new owner, nothing lost with k = 1).

One cluster for the module (starting Ray and the three deployments costs tens of seconds on 2 busy cores). The
cluster is started with ``ray.init`` on loopback rather than ``ray start --head``: the same processes, but
``ray.shutdown`` ends exactly those, where ``ray stop`` would end every Ray process of the machine by name.
Skipped, naming what is missing, without ray[serve] (pip install -e '.[cluster]') or redis-server.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from tests.redis_server import RedisServer, free_port
from tests.server.conftest import make_settings
from tests.server.helpers import frame_msg, hello, open_ws, recv_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install -e '.[cluster]')")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[cluster]')")


@dataclass(frozen=True)
class Cluster:
    ws_url: str
    sessions: Any  # the SessionTier's DeploymentHandle
    redis: RedisServer


@pytest.fixture(scope="module")
def cluster(
    checkpoints: dict[str, Path], data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from server.cluster.app import APP_NAME, ClusterOptions, build_app

    with RedisServer(tmp_path_factory.mktemp("redis")) as redis:
        temp = tempfile.mkdtemp(prefix="r3d-ray-", dir="/tmp")  # Ray's socket paths must stay short
        ray.init(num_cpus=2, _node_ip_address="127.0.0.1", _temp_dir=temp, include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            settings = make_settings(
                checkpoints["base"], data_root, tmp_path_factory.mktemp("jobs"), session_store=redis.url,
                inference_threads=1, session_journal_frames=1,
            )  # fmt: skip
            options = ClusterOptions(session_replicas=2, session_cpus=0.5, encoder_cpus=0.5)
            serve.run(build_app(settings, options), name=APP_NAME, route_prefix="/")
            handle = serve.get_deployment_handle("SessionTier", APP_NAME)
            yield Cluster(f"ws://127.0.0.1:{port}/v1/stream", handle, redis)
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def stream(ws: Any, frames: range) -> list[Any]:
    """Send frames one by one, each answered by its prediction (tick_hz 15 = the model's fps: one per frame)."""
    out = []
    for i in frames:
        ws.send(frame_msg(i))
        prediction, others = recv_until(ws, "prediction", timeout=120)
        assert [m.type for m in others if m.type == "error"] == [], others
        out.append(prediction)
    return out


def stream_at_once(ws: Any, frames: range) -> list[Any]:
    """Send every frame without waiting, then take one prediction per frame (the ingress batches what waits)."""
    for i in frames:
        ws.send(frame_msg(i))
    out = []
    for _ in frames:
        prediction, others = recv_until(ws, "prediction", timeout=120)
        assert [m for m in others if m.type == "error"] == []
        out.append(prediction)
    return out


def test_cluster_stream_gives_the_predictions_of_one_process(cluster: Cluster, ws_url: str) -> None:
    results = []
    for url in (cluster.ws_url, ws_url):
        with open_ws(url) as ws:
            ws.send(hello(backpressure="block"))  # no frame dropped by either server's queue
            recv_until(ws, "welcome", timeout=120)
            results.append(stream_at_once(ws, range(12)))
            ws.send(b"\x81\xa4type\xa3bye")
    on_cluster, local = results
    assert [p.frame_seq for p in on_cluster] == [p.frame_seq for p in local] == list(range(12))
    assert on_cluster[-1].counters == local[-1].counters  # on the way, they depend on when frames arrived
    for a, b in zip(on_cluster, local, strict=True):
        assert a.window == b.window
        np.testing.assert_allclose(list(a.current.probabilities.values()), list(b.current.probabilities.values()),
                                   atol=1e-5)  # fmt: skip


def test_cluster_session_survives_the_kill_of_its_replica(cluster: Cluster) -> None:
    with open_ws(cluster.ws_url) as ws:
        ws.send(hello())
        welcome, _ = recv_until(ws, "welcome", timeout=120)
        sid = welcome.session_id
        before = stream(ws, range(10))
        owner = cluster.sessions.options(session_id=sid).replica_state.remote().result()
        assert sid in owner.sessions
        os.kill(owner.pid, signal.SIGKILL)
        started = time.monotonic()
        after = stream(ws, range(10, 20))
        recovered_s = time.monotonic() - started
        new_owner = cluster.sessions.options(session_id=sid).replica_state.remote().result()
    assert new_owner.pid != owner.pid and sid in new_owner.sessions
    # k = 1: no encoded frame lost; every prediction's window holds every frame so far (30-frame window)
    for p in before + after:
        assert p.window.frames == p.frame_seq + 1 and p.window.start_ts == 0.0
        assert p.counters.accepted == p.frame_seq + 1 and p.counters.received == p.frame_seq + 1
    assert recovered_s < 120


def test_cluster_session_streams_through_a_redis_outage_and_is_journaled_after(cluster: Cluster) -> None:
    from server.redis_session_store import RedisSessionStore

    with open_ws(cluster.ws_url) as ws:
        ws.send(hello())
        welcome, _ = recv_until(ws, "welcome", timeout=120)
        stream(ws, range(5))
        cluster.redis.stop()
        try:
            during = stream(ws, range(5, 10))  # in memory: predictions go on, no error
        finally:
            cluster.redis.start()  # same port, empty (no persistence): the journal rewrites whole windows
        deadline = time.monotonic() + 60
        stored = None
        seq = 10
        while stored is None and time.monotonic() < deadline:
            stream(ws, range(seq, seq + 1))  # the resync happens at a flush after the retry interval
            seq += 1
            stored = RedisSessionStore(cluster.redis.url).load(welcome.session_id)
    assert [p.window.frames for p in during] == [6, 7, 8, 9, 10]
    assert stored is not None
    window = msgpack.unpackb(stored)["processor"]["window"]
    assert window["seq"] == list(range(seq))  # every frame since the start, the outage's included


def test_cluster_resume_on_a_new_socket_takes_the_session_over(cluster: Cluster) -> None:
    with open_ws(cluster.ws_url) as first, open_ws(cluster.ws_url) as second:
        first.send(hello())
        welcome, _ = recv_until(first, "welcome", timeout=120)
        stream(first, range(3))
        second.send(hello(session_id=welcome.session_id))
        resumed, _ = recv_until(second, "welcome", timeout=120)
        first.send(frame_msg(3))
        error, _ = recv_until(first, "error", timeout=120)
        after = stream(second, range(3, 5))
    assert resumed.resumed and resumed.window_frames == 3
    assert error.code == "session_taken_over" and error.fatal
    assert [p.window.frames for p in after] == [4, 5]
