"""What every session store is (``SessionStore``, its answers and errors), the journal's format, URL checks and
the in-memory store; the package's docstring (server/session_store/__init__.py) says how sessions are journaled."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgpack

REDIS_SCHEMES = ("redis", "rediss", "unix")
FENCED = 0  # a write's answer: another owner holds the session (or it was closed); nothing was written
LOST = -1  # a write's answer: an append found no journal (the store lost it); write the whole window instead


class StoreUnavailable(Exception):
    """The session store cannot be reached (connection refused, timeout); nothing of the call was applied."""


@dataclass(frozen=True)
class JournalWrite:
    """One session's part of a store write."""

    session_id: str
    epoch: int | None  # the writer's owner epoch; None claims the session: a new epoch, fencing every earlier owner
    head: bytes  # msgpack: the snapshot document without processor.window
    entries: tuple[bytes, ...]  # window entries, oldest first (encode_entry)
    replace: bool  # True: ``entries`` are the whole window; False: appended to the stored ones
    max_entries: int  # the window's frame bound: older stored entries are trimmed


class SessionStore(ABC):
    """Where sessions are journaled. Thread-safe: the inference worker writes, the event loop loads and deletes."""

    url: str  # for logs: the store's URL without any password

    @abstractmethod
    def write(self, writes: Sequence[JournalWrite]) -> list[int]:
        """Apply every write (one round trip where the store is remote). Returns, per write, the owner epoch the
        writer now holds (its own, or the new one for a claim); FENCED (0) when another owner claimed the session
        (or it was closed) and nothing was written; LOST (-1) when an append found no journal to append to (the
        store lost its data, e.g. a Redis restart without persistence): write the whole window (``replace``), which
        re-establishes the journal under the writer's epoch. StoreUnavailable when the store cannot be reached."""

    @abstractmethod
    def load(self, session_id: str) -> bytes | None:
        """The session as snapshot bytes (``r3d-session-snapshot``), or None when the store has none."""

    @abstractmethod
    def epoch(self, session_id: str) -> int | None:
        """The owner epoch stored for the session (the last claim's), None when the store has none."""

    @abstractmethod
    def delete(self, session_id: str, epoch: int) -> bool:
        """Forget a closed session and fence any other writer; False when ``epoch`` no longer owned it."""

    @abstractmethod
    def check(self) -> None:
        """StoreUnavailable unless the store answers."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def encode_entry(seq: int, ts: float, tokens: bytes) -> bytes:
    """One window entry as stored in the log: msgpack ``[seq, ts, tokens]`` (tokens float32 little-endian (2, C))."""
    return msgpack.packb([seq, ts, tokens], use_bin_type=True)


def join_journal(head: bytes, entries: Sequence[bytes]) -> bytes:
    """A stored head and log -> the session's snapshot bytes (the format ``parse_snapshot`` validates)."""
    doc: dict[str, Any] = msgpack.unpackb(head, raw=False)
    seqs, stamps, tokens = [], [], []
    for raw in entries:
        seq, ts, tok = msgpack.unpackb(raw, raw=False)
        seqs.append(seq)
        stamps.append(ts)
        tokens.append(tok)
    channels = len(tokens[0]) // 8 if tokens else 0  # (2, C) float32
    processor = doc.get("processor")
    if isinstance(processor, dict):
        processor["window"] = {"seq": seqs, "ts": stamps, "shape": [len(tokens), 2, channels],
                               "tokens": b"".join(tokens)}  # fmt: skip
    return msgpack.packb(doc, use_bin_type=True)


@dataclass
class _Journal:
    epoch: int
    head: bytes | None = None
    log: list[bytes] | None = None


class MemorySessionStore(SessionStore):
    """The journal in this process (the default): the same ownership rules as Redis, no survival past the process.
    One instance may be shared by several registries in one process (tests, Serve's local testing mode)."""

    def __init__(self, closed_kept: int = 4096) -> None:
        self.url = "memory://"
        self._lock = threading.Lock()
        self._journals: dict[str, _Journal] = {}
        self._closed: OrderedDict[str, int] = OrderedDict()  # closed sessions' bumped epochs: fence late writers
        self._closed_kept = closed_kept  # bounded, as Redis bounds them with a time to live

    def write(self, writes: Sequence[JournalWrite]) -> list[int]:
        out = []
        with self._lock:
            for w in writes:
                j = self._journals.get(w.session_id)
                if w.session_id in self._closed and w.epoch is not None:
                    out.append(FENCED)
                    continue
                if j is None:  # never written, or lost by the store: a claim or a whole window re-establishes it
                    if w.epoch is not None and not w.replace:
                        out.append(LOST)
                        continue
                    j = self._journals[w.session_id] = _Journal(epoch=w.epoch or self._closed.pop(w.session_id, 0))
                if w.epoch is None:
                    j.epoch += 1
                elif w.epoch != j.epoch:
                    out.append(FENCED)
                    continue
                log = [] if w.replace or j.log is None else j.log
                j.log = (log + list(w.entries))[-w.max_entries :] if w.max_entries else []
                j.head = w.head
                out.append(j.epoch)
        return out

    def load(self, session_id: str) -> bytes | None:
        with self._lock:
            j = self._journals.get(session_id)
            if j is None or j.head is None:
                return None
            head, log = j.head, list(j.log or [])
        return join_journal(head, log)

    def epoch(self, session_id: str) -> int | None:
        with self._lock:
            j = self._journals.get(session_id)
            return j.epoch if j is not None else self._closed.get(session_id)

    def delete(self, session_id: str, epoch: int) -> bool:
        with self._lock:
            j = self._journals.get(session_id)
            if j is None or j.epoch != epoch:
                return False
            del self._journals[session_id]
            self._closed[session_id] = epoch + 1
            while len(self._closed) > self._closed_kept:
                self._closed.popitem(last=False)
            return True

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None


def check_store_url(url: str) -> str:
    """A session-store URL, checked for its form (not reached): ValueError saying what was expected."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        if parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"expected memory:// with nothing after it, got {public_url(url)!r}")
        return url
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(
            f"expected a session store URL memory:// or redis://HOST:PORT/DB (also rediss://, unix://PATH), "
            f"got {public_url(url)!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"expected unix://PATH to a Redis socket, got {public_url(url)!r}")
        return url
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ValueError(f"expected a port number (0-65535) in {public_url(url)!r}") from None
    if not parts.hostname:
        raise ValueError(f"expected a host in {public_url(url)!r} (e.g. redis://127.0.0.1:6379/0)")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"expected a database number after the host (redis://HOST:PORT/0), got /{db}")
    return url


def public_url(url: str) -> str:
    """The URL without its password (for logs and error messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, _, location = parts.netloc.rpartition("@")
    user = credentials.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{location}", parts.path, parts.query, parts.fragment))
