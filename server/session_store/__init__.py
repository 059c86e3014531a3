"""Session stores: where a session's token window and counters are journaled so that the session outlives the process
that streams it (docs/scale-out.md, "Durable sessions (Redis)").

A session is journaled as two parts, both in the existing snapshot format (server/streaming/snapshot.py):

- the **head**: the snapshot document without ``processor.window`` (stream, model and frame-encoder ids, resampling
  and tick grids, counters), rewritten at every write;
- the **log**: the window's entries, one msgpack ``[seq, ts, tokens]`` per used frame (tokens: float32 little-endian
  bytes of shape (2, C)), appended and trimmed to the window's frame bound.

``load`` joins them back into snapshot bytes, which the registry validates with ``parse_snapshot`` like any
uploaded snapshot (so a window whose tokens came from another frame encoder is refused).

Ownership: every write carries the writer's **owner epoch**. A write with ``epoch=None`` claims the session (a new
epoch, which fences every earlier owner) and replaces what was stored; any other write is refused (``0`` in the
answer) unless the stored epoch is still the writer's, so a process that lost a session cannot overwrite its new
owner's journal. Closing a session (``delete``) bumps the epoch as it removes the data, fencing any writer left.

Stores: ``MemorySessionStore`` (the default: the journal lives in this process and dies with it, as sessions always
did) and ``RedisSessionStore`` (server/session_store/redis_store.py; survives the process). ``open_session_store(url)``
picks one from ``memory://`` or ``redis://`` / ``rediss://`` / ``unix://`` URLs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from server.session_store.store import (
    FENCED,
    LOST,
    REDIS_SCHEMES,
    JournalWrite,
    MemorySessionStore,
    SessionStore,
    StoreUnavailable,
    check_store_url,
    encode_entry,
    join_journal,
    public_url,
)

__all__ = [
    "FENCED",
    "LOST",
    "REDIS_SCHEMES",
    "JournalWrite",
    "MemorySessionStore",
    "SessionStore",
    "StoreUnavailable",
    "check_store_url",
    "encode_entry",
    "join_journal",
    "open_session_store",
    "public_url",
]


def open_session_store(url: str, *, ttl_s: float = 3600.0, timeout_s: float = 0.5) -> SessionStore:
    """The store a URL names (``memory://`` or a Redis URL); ValueError for a malformed URL. Nothing is reached
    yet: call ``check()`` to see whether a remote store answers. ``ttl_s``: how long Redis keeps a session nobody
    writes; ``timeout_s``: how long one Redis call may take before the store counts as unavailable."""
    check_store_url(url)
    if urlsplit(url).scheme == "memory":
        return MemorySessionStore()
    from server.session_store.redis_store import RedisSessionStore  # redis-py is needed only for a Redis store

    return RedisSessionStore(url, ttl_s=ttl_s, timeout_s=timeout_s)
