"""Session stores (server/session_store/): the in-process store and a real redis-server answer the same journal
writes the same way: claims, appends trimmed to the window, ownership fencing, closing, a lost journal re-established
by a whole-window write; an unreachable Redis fails fast; a malformed URL is refused saying what was expected."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgpack
import numpy as np
import pytest

from server.session_store import (
    FENCED,
    LOST,
    JournalWrite,
    SessionStore,
    StoreUnavailable,
    check_store_url,
    encode_entry,
    open_session_store,
)
from tests.redis_server import RedisServer, free_port

HEAD = msgpack.packb({"format": "r3d-session-snapshot", "version": 1, "processor": {"last_ts": 1.0}})


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    s = open_session_store(url)
    yield s
    s.close()


def entries(first: int, n: int) -> tuple[bytes, ...]:
    return tuple(encode_entry(i, i / 15, np.full((2, 4), i, "<f4").tobytes()) for i in range(first, first + n))


def write(sid: str, epoch: int | None, es: tuple[bytes, ...], *, replace: bool = False, keep: int = 5) -> JournalWrite:
    return JournalWrite(sid, epoch, HEAD, es, replace=replace or epoch is None, max_entries=keep)


def window(store: SessionStore, sid: str) -> tuple[list[int], np.ndarray]:
    data = store.load(sid)
    assert data is not None
    w = msgpack.unpackb(data)["processor"]["window"]
    return w["seq"], np.frombuffer(w["tokens"], "<f4").reshape(w["shape"])


def test_claim_append_and_load_give_the_window_trimmed_to_its_bound(store: SessionStore) -> None:
    sid = f"s{time.monotonic_ns()}"
    assert store.load(sid) is None
    [epoch] = store.write([write(sid, None, entries(0, 3))])
    assert epoch >= 1
    assert store.write([write(sid, epoch, entries(3, 4))]) == [epoch]
    seqs, tokens = window(store, sid)
    assert seqs == [2, 3, 4, 5, 6]  # the last 5 (max_entries)
    assert tokens.shape == (5, 2, 4) and tokens[0, 0, 0] == 2 and tokens[-1, 1, 3] == 6
    assert msgpack.unpackb(store.load(sid) or b"")["processor"]["last_ts"] == 1.0  # the head came back


def test_a_stale_owner_is_fenced_and_changes_nothing(store: SessionStore) -> None:
    sid = f"s{time.monotonic_ns()}"
    [old] = store.write([write(sid, None, entries(0, 2))])
    [new] = store.write([write(sid, None, entries(0, 3))])  # another process took the session over
    assert new > old
    assert store.write([write(sid, old, entries(10, 1)), write(sid, new, entries(3, 1))]) == [FENCED, new]
    assert store.write([write(sid, old, entries(20, 2), replace=True)]) == [FENCED]
    assert window(store, sid)[0] == [0, 1, 2, 3]
    assert not store.delete(sid, old)  # a stale owner cannot close it either
    assert store.delete(sid, new)
    assert store.load(sid) is None
    assert store.write([write(sid, new, entries(4, 1)), write(sid, new, entries(4, 1), replace=True)]) == [FENCED] * 2


def test_the_stored_epoch_is_the_last_claim_and_outlives_a_delete_bumped(store: SessionStore) -> None:
    sid = f"s{time.monotonic_ns()}"
    assert store.epoch(sid) is None
    [old] = store.write([write(sid, None, entries(0, 1))])
    assert store.epoch(sid) == old
    [new] = store.write([write(sid, None, entries(0, 2))])
    assert store.epoch(sid) == new == old + 1
    assert store.write([write(sid, old, entries(2, 1))]) == [FENCED] and store.epoch(sid) == new
    assert store.delete(sid, new)
    assert store.epoch(sid) == new + 1  # a closed session's bumped epoch fences its last writers


def test_a_journal_the_store_lost_is_reestablished_by_a_whole_window(store: SessionStore) -> None:
    sid = f"s{time.monotonic_ns()}"
    assert store.write([write(sid, 7, entries(0, 1))]) == [LOST]  # an append needs a journal to append to
    assert store.write([write(sid, 7, entries(0, 2), replace=True)]) == [7]
    assert window(store, sid)[0] == [0, 1]
    assert store.write([write(sid, 6, entries(2, 1))]) == [FENCED]


def test_an_unreachable_redis_fails_within_its_timeout() -> None:
    store = open_session_store(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.check()
    with pytest.raises(StoreUnavailable):
        store.write([write("x", None, entries(0, 1))])
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("postgres://db/0", "expected a session store URL memory:// or redis://"),
        ("redis://:hunter2@cache:port/0", r"expected a port number .*\*\*\*"),
        ("redis://127.0.0.1:6379/sessions", "expected a database number"),
        ("memory://elsewhere", "expected memory:// with nothing after it"),
    ],
)
def test_a_malformed_store_url_is_refused_saying_what_was_expected(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        check_store_url(url)
    assert "hunter2" not in str(info.value)
