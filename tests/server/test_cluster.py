"""The service on a local Ray cluster (server.cluster) with a real redis-server: streams through Serve's HTTP proxy
with a real WebSocket client, predictions equal to one r3d-serve process, a session that survives the SIGKILL of
the replica that owns it (its window restored from Redis by the new owner, nothing lost with k = 1), model reloads
that a live session streams through as it does in one process; the rest of the service on the same ingress (health,
model, /metrics, session listing, predictions, viewer, batch jobs).

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

import httpx
import msgpack
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from model import R3D, save_checkpoint
from server.protocol import encode_frame
from tests.redis_server import RedisServer, free_port
from tests.server.conftest import ServerFactory, make_settings, tiny_config
from tests.server.helpers import (
    ADMIN_HEADERS,
    API_HEADERS,
    BYE,
    frame_msg,
    hello,
    open_ws,
    recv,
    recv_until,
    write_recording,
)
from tests.server.test_person_stream import PRE as PERSON_PRE
from tests.server.test_person_stream import walker_frame

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
    url: str
    sessions: Any  # the SessionTier's DeploymentHandle
    redis: RedisServer


@pytest.fixture(scope="module")
def cluster(
    checkpoints: dict[str, Path], data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from server.cluster.app import APP_NAME, build_app
    from server.cluster.options import ClusterOptions

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
            yield Cluster(f"ws://127.0.0.1:{port}/v1/stream", f"http://127.0.0.1:{port}", handle, redis)
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
            ws.send(BYE)
    on_cluster, local = results
    assert [p.frame_seq for p in on_cluster] == [p.frame_seq for p in local] == list(range(12))
    assert on_cluster[-1].counters == local[-1].counters  # on the way, they depend on when frames arrived
    for a, b in zip(on_cluster, local, strict=True):
        assert a.window == b.window
        np.testing.assert_allclose(list(a.current.probabilities.values()), list(b.current.probabilities.values()),
                                   atol=1e-5)  # fmt: skip


def stream_through_reloads(url: str, reloads: dict[int, str]) -> tuple[list[Any], list[Any], dict[int, Any]]:
    """Stream 18 frames one by one on ``url``, reloading to ``reloads[i]`` before frame i: predictions, notices and
    the reload answers."""
    predictions, notices, answers = [], [], {}
    with open_ws("ws" + url[len("http") :] + "/v1/stream") as ws, httpx.Client(base_url=url, timeout=300) as http:
        ws.send(hello(backpressure="block"))
        recv_until(ws, "welcome", timeout=120)
        for i in range(18):
            if i in reloads:
                answers[i] = http.post("/v1/model/reload", json={"model": reloads[i]}, headers=ADMIN_HEADERS)
            ws.send(frame_msg(i))
            prediction, others = recv_until(ws, "prediction", timeout=120)
            assert [m for m in others if m.type == "error"] == []
            predictions.append(prediction)
            notices += [m for m in others if m.type == "notice"]
        ws.send(BYE)
    return predictions, notices, answers


def test_cluster_reload_keeps_sessions_as_one_process_does(
    cluster: Cluster, server_factory: ServerFactory, checkpoints: dict[str, Path]
) -> None:
    """Reload to other anticipator weights (window kept), then to another frame encoder (window reset with a notice),
    under a live stream: the same messages and predictions as one r3d-serve doing the same. Before the kill test:
    docs/scale-out.md, "Found while testing"."""
    reloads = {6: checkpoints["same_encoder"].name, 12: checkpoints["other_encoder"].name}
    with httpx.Client(base_url=cluster.url, timeout=300) as http:
        before = http.get("/v1/model", headers=API_HEADERS).json()
        stream_key = http.post("/v1/model/reload", json={}, headers=API_HEADERS)
        missing = http.post("/v1/model/reload", json={"model": "missing.safetensors"}, headers=ADMIN_HEADERS)
    try:
        on_cluster, cluster_notices, answers = stream_through_reloads(cluster.url, reloads)
    finally:  # the tests after this one (and a second module run) expect the base model
        with httpx.Client(base_url=cluster.url, timeout=300) as http:
            back = http.post("/v1/model/reload", json={"model": checkpoints["base"].name}, headers=ADMIN_HEADERS)
    with server_factory() as url:
        local, local_notices, local_answers = stream_through_reloads(url, reloads)
    assert back.status_code == 200 and back.json()["model"]["model_id"] == before["model_id"]
    assert stream_key.status_code == 403 and stream_key.json()["code"] == "forbidden"
    assert missing.status_code == 404 and missing.json()["code"] == "model_not_found"
    assert "no model 'missing.safetensors' to reload; available: ['base.safetensors'," in missing.json()["message"]
    assert [a.status_code for a in answers.values()] == [200, 200]
    same, other = answers[6].json(), answers[12].json()
    assert same["previous_model_id"] == before["model_id"]
    # every session the replicas hold counts: this one and those earlier tests left detached (kept for a reconnect)
    assert same["sessions_kept"] >= 1 and same["sessions_reset"] == 0
    assert other["sessions_kept"] == 0 and other["sessions_reset"] >= 1
    models = [[{**a.json()["model"], "backend_info": None} for a in run.values()] for run in (answers, local_answers)]
    assert models[0] == models[1]  # but backend_info: its torch thread count is the process's
    # the session stayed with its owner through both reloads: a session moved to another replica (restored from the
    # store) would miss the notices its owner sent
    assert [n.code for n in cluster_notices] == [n.code for n in local_notices] == [
        "model_reloaded", "window_reset", "model_reloaded"
    ]  # fmt: skip
    for a, b in zip(cluster_notices, local_notices, strict=True):
        assert {**a.details, "model": None} == {**b.details, "model": None}
    assert [p.window.frames for p in on_cluster] == [*range(1, 13), *range(1, 7)]  # kept, then reset
    assert [p.model_id for p in on_cluster] == [p.model_id for p in local]
    assert len({p.model_id for p in on_cluster}) == 3
    for a, b in zip(on_cluster, local, strict=True):
        assert a.window == b.window and a.counters == b.counters
        np.testing.assert_allclose(list(a.current.probabilities.values()), list(b.current.probabilities.values()),
                                   atol=1e-5)  # fmt: skip
        assert [f.action for f in a.future] == [f.action for f in b.future]
        np.testing.assert_allclose([(f.probability, f.start_s) for f in a.future],
                                   [(f.probability, f.start_s) for f in b.future], atol=1e-5)  # fmt: skip


def test_cluster_latest_wins_drops_the_oldest_waiting_frames_as_one_process_does(cluster: Cluster) -> None:
    """Frames sent faster than the cluster encodes them: the ingress's queue (session_queue_size 4) drops the oldest,
    the owner counts them (dropped, reason queue_full) and says so with a frames_dropped notice, as one process's
    session queue does (the same Session method); the newest frame is encoded."""
    n = 40
    with open_ws(cluster.ws_url) as ws:
        ws.send(hello(backpressure="latest_wins"))
        welcome, _ = recv_until(ws, "welcome", timeout=120)
        for i in range(n):
            ws.send(frame_msg(i))
        messages: list[Any] = []
        while not any(m.type == "prediction" and m.frame_seq == n - 1 for m in messages):
            messages.append(recv(ws, timeout=120))
        ws.send(BYE)
    predictions = [m for m in messages if m.type == "prediction"]
    notices = [m for m in messages if m.type == "notice"]
    last = predictions[-1].counters
    assert welcome.backpressure == "latest_wins" and welcome.queue_size == 4
    assert not [m for m in messages if m.type == "error"]
    assert last.received == last.accepted == n and last.rejected == last.resampled_out == 0
    assert last.dropped > 0 and len(predictions) == n - last.dropped  # every frame encoded or counted dropped
    seqs = [p.frame_seq for p in predictions]
    assert seqs == sorted(seqs) and seqs[-1] == n - 1  # the newest frame is encoded
    assert notices and {n.code for n in notices} == {"frames_dropped"}
    first = notices[0]
    assert first.details["queue_size"] == 4 and 0 < first.details["dropped"] <= last.dropped
    assert first.message == (f"the session's queue of 4 frames was full: {first.details['dropped']} frames dropped so "
                             "far (latest wins); send fewer frames or use backpressure 'block'")  # fmt: skip


def test_cluster_person_mask_model_gives_the_predictions_of_one_process(
    cluster: Cluster, server_factory: ServerFactory, checkpoints: dict[str, Path]
) -> None:
    """A model with a person mask (model/person.py) reloaded on the cluster: the session's PersonLocator travels to the
    stateless FrameEncoder with its frames and back, so its masks, and the predictions, are those of one process. The
    base model is reloaded after it, for the tests that follow."""
    cfg = tiny_config()
    cfg.preprocessing, cfg.depth_encoder = PERSON_PRE, "person"
    torch.manual_seed(0)
    path = save_checkpoint(checkpoints["base"].parent / "person_mask.safetensors", R3D(cfg).eval())
    with httpx.Client(base_url=cluster.url, timeout=300) as http:
        reload = http.post("/v1/model/reload", json={"model": path.name}, headers=ADMIN_HEADERS)
    assert reload.status_code == 200, reload.text

    def predictions(url: str) -> list[Any]:
        out = []
        with open_ws(url) as ws:
            ws.send(hello(backpressure="block"))
            recv_until(ws, "welcome", timeout=120)
            for i in range(8):
                ws.send(encode_frame(*walker_frame(i), i / 15.0, i))
                out.append(recv_until(ws, "prediction", timeout=120)[0])
            ws.send(BYE)
        return out

    try:
        on_cluster = predictions(cluster.ws_url)
    finally:
        with httpx.Client(base_url=cluster.url, timeout=300) as http:
            back = http.post("/v1/model/reload", json={"model": checkpoints["base"].name}, headers=ADMIN_HEADERS)
    with server_factory(model_path=path) as url:
        local = predictions("ws" + url[len("http") :] + "/v1/stream")
    assert back.status_code == 200
    assert reload.json()["model"]["model_id"] == on_cluster[0].model_id == local[0].model_id
    assert [p.frame_seq for p in on_cluster] == [p.frame_seq for p in local] == list(range(8))
    for a, b in zip(on_cluster, local, strict=True):
        assert a.window == b.window and a.counters == b.counters
        np.testing.assert_allclose(list(a.current.probabilities.values()), list(b.current.probabilities.values()),
                                   atol=1e-5)  # fmt: skip
        np.testing.assert_allclose([f.probability for f in a.future], [f.probability for f in b.future], atol=1e-5)


def routing_keys(cluster: Cluster, timeout_s: float = 120.0) -> dict[int, str]:
    """Session replica pid -> a session id that the ring maps to it (probing ids), once the ring has two replicas."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        keys: dict[int, str] = {}
        for key in (f"probe-{i}" for i in range(50)):
            keys.setdefault(cluster.sessions.options(session_id=key).replica_state.remote().result().pid, key)
        if len(keys) == 2:
            return keys
        time.sleep(1.0)
    raise AssertionError(f"the ring did not map ids to two session replicas within {timeout_s:g} s")


def test_cluster_session_moved_away_and_back_continues_from_the_store(cluster: Cluster) -> None:
    """The ring moves a session to replica B (which restores and claims it) and back to A, which still holds its
    copy: A must continue from what B journaled (as after two replica kills in a row), not from its stale copy.

    The kill test comes last in this module, so the rings should not change here. Should one change anyway (the
    ingress's router taking in a replica Serve restarted moves some sessions once), a session moved while its first
    frames streamed is held twice; the scenario then starts again with a new session, after a pause for the rings
    to settle, with the routing keys probed again."""
    from server.protocol import parse_client_message

    tries: list[str] = []
    for _ in range(6):
        keys = routing_keys(cluster)
        with open_ws(cluster.ws_url) as ws:
            ws.send(hello())
            welcome, _ = recv_until(ws, "welcome", timeout=120)
            sid = welcome.session_id
            stream(ws, range(5))
            states = {
                pid: cluster.sessions.options(session_id=key).replica_state.remote().result()
                for pid, key in keys.items()
            }
            holders = [pid for pid, state in states.items() if sid in state.sessions]
            if len(holders) != 1:  # moved by the ingress's ring update: not the scenario under test
                tries.append(f"{sid} held by {len(holders)} of replicas {sorted(states)}")
                ws.send(BYE)
                time.sleep(10.0)
                continue
            other = next(key for pid, key in keys.items() if pid != holders[0])
            # what B answers a call the ring sent it for this session: restored from Redis, claimed, frame 5 taken
            on_b = cluster.sessions.options(session_id=other).frames.remote(
                sid, "the connection B was handed", [parse_client_message(frame_msg(5))], []
            ).result()  # fmt: skip
            after = stream(ws, range(6, 9))  # the ring still maps the session to A
            on_a = cluster.sessions.options(session_id=keys[holders[0]]).replica_state.remote().result()
        break
    else:
        raise AssertionError(f"no session was held by exactly one replica after its first frames: {tries}")
    assert [m.window.frames for m in on_b if m.type == "prediction"] == [6]
    assert sid in on_a.sessions
    assert [(p.frame_seq, p.window.frames) for p in after] == [(6, 7), (7, 8), (8, 9)]
    assert after[-1].counters.accepted == 9


def test_cluster_session_streams_through_a_redis_outage_and_is_journaled_after(cluster: Cluster) -> None:
    from server.session_store.redis_store import RedisSessionStore

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
            # the resync happens at a flush after the retry interval (1 s): paced, so that it comes within a few
            # frames and not after a window's worth (30), which would have trimmed the first frames (a CI run did)
            time.sleep(0.25)
            stream(ws, range(seq, seq + 1))
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


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples ``name`` whose labels include ``labels``."""
    return [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name and labels.items() <= s.labels.items()]  # fmt: skip


def test_cluster_ingress_serves_health_model_metrics_sessions_and_the_viewer(cluster: Cluster) -> None:
    with open_ws(cluster.ws_url) as ws, httpx.Client(base_url=cluster.url, headers=API_HEADERS, timeout=60) as http:
        ws.send(hello())
        sid = recv_until(ws, "welcome", timeout=120)[0].session_id
        sent = stream(ws, range(6))
        health, ready, model = http.get("/healthz"), http.get("/readyz"), http.get("/v1/model")
        metrics = http.get("/metrics").text
        listed = http.get("/v1/sessions").json()["sessions"]
        latest = http.get(f"/v1/sessions/{sid}/prediction", params={"after": sent[-2].seq})
        page, depth = http.get("/viewer/"), http.get(f"/viewer/api/sessions/{sid}/depth.jpg")
        rest_session = http.get(f"/v1/sessions/{sid}")
        unknown = http.get("/v1/sessions/nosuchsession/prediction")
    served = cluster.sessions.model_info.remote().result()
    assert health.status_code == ready.status_code == 200 and ready.json()["model_id"] == served.model_id
    assert model.json() == served.model_dump(mode="json")
    # /metrics: the session replicas' counters of the stream just sent, each sample naming its replica
    assert sum(samples(metrics, "r3d_predictions_total", session=sid)) == 6
    assert sum(samples(metrics, "r3d_frames_total", session=sid, outcome="accepted")) == 6
    store_up = {s.labels["replica"]: s.value for f in text_string_to_metric_families(metrics) for s in f.samples
                if s.name == "r3d_session_store_up"}  # fmt: skip
    # every session replica's
    assert store_up and set(store_up.values()) == {1.0} and all(r.startswith("session-") for r in store_up)
    mine = [s for s in listed if s["id"] == sid]
    assert len(mine) == 1 and mine[0]["counters"]["accepted"] == 6
    assert latest.status_code == 200 and latest.json()["seq"] == sent[-1].seq
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert (
        depth.status_code == 200 and depth.headers["content-type"] == "image/jpeg" and depth.content[:2] == b"\xff\xd8"
    )
    assert rest_session.status_code == 501 and rest_session.json()["code"] == "not_supported"
    assert "/v1/stream" in rest_session.json()["message"]
    assert unknown.status_code == 404 and unknown.json()["code"] == "session_not_found"


def test_cluster_profile_has_every_stage_of_a_stream(cluster: Cluster) -> None:
    from server.cluster.app import APP_NAME
    from server.cluster.profile import STAGES, medians_ms

    with open_ws(cluster.ws_url) as ws:
        ws.send(hello())
        recv_until(ws, "welcome", timeout=120)
        stream(ws, range(4))
    profile = medians_ms(serve.get_deployment_handle("Ingress", APP_NAME).stage_samples.remote().result())
    assert list(profile) == list(STAGES)  # each stage measured, in the order a frame meets them
    assert all(median_ms >= 0 and n >= 4 for median_ms, n in profile.values())


def test_cluster_batch_job_scores_like_one_process(cluster: Cluster, live_server: str, data_root: Path) -> None:
    write_recording(data_root, "cluster_rec", 12)
    results = []
    for url in (cluster.url, live_server):
        with httpx.Client(base_url=url, headers=API_HEADERS, timeout=60) as http:
            job = http.post("/v1/jobs", json={"path": "cluster_rec", "tick_hz": 5.0}).json()
            deadline = time.monotonic() + 180
            while (state := http.get(f"/v1/jobs/{job['id']}").json()["state"]) in ("queued", "running"):
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.2)
            assert state == "succeeded"
            results.append(http.get(f"/v1/jobs/{job['id']}/results").json()["sequences"][0])
    on_cluster, local = results
    assert [t["frame_index"] for t in on_cluster["ticks"]] == [t["frame_index"] for t in local["ticks"]] == [0, 3, 6, 9]
    assert on_cluster["counters"] == local["counters"]
    for a, b in zip(on_cluster["ticks"], local["ticks"], strict=True):
        assert a["current"]["action"] == b["current"]["action"] and a["window"] == b["window"]
        np.testing.assert_allclose(list(a["current"]["probabilities"].values()),
                                   list(b["current"]["probabilities"].values()), atol=1e-5)  # fmt: skip


def test_cluster_session_survives_the_kill_of_its_replica(cluster: Cluster) -> None:
    """Last in this module: Serve replaces the killed replica, and each router takes the replacement into its ring
    on its own, at its own time; sessions may move when one does, so a test after this one could see its session
    move while it streams (docs/scale-out.md, "Found while testing")."""
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
