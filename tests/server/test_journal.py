"""SessionJournal on its own, against a real redis-server: a store down from the start is an outage (a warning, the
up gauge at 0), retried once per retry_s and ended when Redis answers, without any session to write."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from benchmarks.loadtest import metric
from server.metrics import Metrics
from server.session_store import open_session_store
from server.streaming import SessionJournal
from tests.redis_server import RedisServer, free_port


def gauges(metrics: Metrics) -> tuple[float, float]:
    """r3d_session_store_up and r3d_session_store_errors_total, as /metrics shows them."""
    text = metrics.render().decode()
    return metric(text, "r3d_session_store_up"), metric(text, "r3d_session_store_errors_total")


def test_a_store_down_at_startup_is_an_outage_that_ends_when_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.streaming.journal")
    now = [100.0]
    metrics = Metrics()
    port = free_port()
    journal = SessionJournal(open_session_store(f"redis://127.0.0.1:{port}/0"), metrics, retry_s=1.0,
                             clock=lambda: now[0])  # fmt: skip
    assert not journal.check() and not journal.available
    assert gauges(metrics) == (0, 1)
    with RedisServer(tmp_path / "redis", port=port):
        now[0] += 0.5
        journal.retry("enc")  # not due yet: no call
        assert not journal.available and gauges(metrics) == (0, 1)
        now[0] += 0.6
        journal.retry("enc")
        assert journal.available and gauges(metrics) == (1, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"redis://127.0.0.1:{port}/0 unavailable" in m for m in messages)
    assert any("answers again after 1.1 s: 0 sessions resynced" in m for m in messages)
