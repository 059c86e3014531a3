"""The Redis session store (redis-py): each session's journal in three keys, written by one Lua script per session
so that the ownership check and the write are atomic, and every session of one write in one pipelined round trip.

Keys (``{id}`` is a Redis Cluster hash tag: a session's keys share a slot, as a multi-key script needs):

    r3d:session:{id}:epoch   the owner epoch (an integer; INCR claims)
    r3d:session:{id}:head    the snapshot document without its window (msgpack)
    r3d:session:{id}:log     the window entries, oldest first (a list of msgpack [seq, ts, tokens])

Every write refreshes the keys' time to live (``ttl_s``): a session that nobody writes (its process died and no
client resumed it) disappears on its own. redis-py's own retries are off: an unreachable store must fail within
``timeout_s`` (the caller keeps streaming in memory and retries later), not stall the inference worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.session_store.store import JournalWrite, SessionStore, StoreUnavailable, join_journal, public_url

__all__ = ["RedisSessionStore", "session_keys"]

# KEYS: epoch, head, log. ARGV: epoch ('' claims), replace ('1' or '0'), max entries, ttl (ms), head, entries...
# Answers the epoch now held, 0 when fenced (another epoch is stored), -1 when an append finds no journal.
_WRITE = """
local stored = redis.call('GET', KEYS[1])
local epoch
if ARGV[1] == '' then
  epoch = redis.call('INCR', KEYS[1])
elseif not stored then
  if ARGV[2] ~= '1' then return -1 end
  epoch = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1])
elseif stored ~= ARGV[1] then
  return 0
else
  epoch = tonumber(ARGV[1])
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[3]) end
if #ARGV > 5 then redis.call('RPUSH', KEYS[3], unpack(ARGV, 6)) end
local keep = tonumber(ARGV[3])
if keep > 0 then redis.call('LTRIM', KEYS[3], -keep, -1) else redis.call('DEL', KEYS[3]) end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return epoch
"""

# KEYS: epoch, head, log. ARGV: epoch, ttl (ms). The epoch is bumped, not removed: it fences any writer left.
_DELETE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def session_keys(session_id: str) -> tuple[str, str, str]:
    """The epoch, head and log keys of a session."""
    base = f"r3d:session:{{{session_id}}}"
    return f"{base}:epoch", f"{base}:head", f"{base}:log"


class RedisSessionStore(SessionStore):
    def __init__(self, url: str, *, ttl_s: float = 3600.0, timeout_s: float = 0.5) -> None:
        self.url = public_url(url)
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._write = self.client.register_script(_WRITE)
        self._delete = self.client.register_script(_DELETE)

    def _unavailable(self, exc: redis.RedisError) -> StoreUnavailable:
        return StoreUnavailable(f"session store {self.url} unavailable: {type(exc).__name__}: {exc}")

    def write(self, writes: Sequence[JournalWrite]) -> list[int]:
        if not writes:
            return []
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for w in writes:
                    args = ["" if w.epoch is None else str(w.epoch), "1" if w.replace else "0", w.max_entries,
                            self.ttl_ms, w.head, *w.entries]  # fmt: skip
                    self._write(keys=session_keys(w.session_id), args=args, client=pipe)
                return [int(r) for r in pipe.execute()]
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def load(self, session_id: str) -> bytes | None:
        _, head_key, log_key = session_keys(session_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.get(head_key)
                pipe.lrange(log_key, 0, -1)
                head, log = pipe.execute()
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if head is None else join_journal(head, log)

    def epoch(self, session_id: str) -> int | None:
        try:
            stored = self.client.get(session_keys(session_id)[0])
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if stored is None else int(stored)

    def delete(self, session_id: str, epoch: int) -> bool:
        try:
            return bool(self._delete(keys=session_keys(session_id), args=[epoch, self.ttl_ms]))
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def check(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        self.client.close()
