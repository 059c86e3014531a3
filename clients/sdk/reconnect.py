"""How a stream comes back after its connection drops: how long it keeps trying, how it spaces the attempts, what
it does when the server answers that the session no longer exists (it restarted, or the session expired), and how many
of the frames it sent it keeps to send again after a resume (clients/sdk/replay.py).

The default budget (60 s) outlasts a graceful server drain (shutdown notices, running jobs' grace, uvicorn's
connection timeout: about 15 s with the default settings) plus a restart, so restarting a server does not end a
client's stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from clients.sdk.errors import ConnectionLost, ServerError
from clients.sdk.transport import TransportClosed

__all__ = ["ReconnectPolicy", "SessionLoss"]

logger = logging.getLogger(__name__)


class SessionLoss(StrEnum):
    """What a stream does when, on reconnecting, the server no longer knows its session."""

    NEW_SESSION = "new_session"  # open a new session (its token window starts empty) and keep streaming
    RESTORE_SNAPSHOT = "restore_snapshot"  # restore the last snapshot fetched (fetch_snapshot), else a new session
    FAIL = "fail"  # end the stream with ConnectionLost


@dataclass(frozen=True)
class ReconnectPolicy:
    """Reconnect attempts: exponential backoff from `backoff_s` up to `max_backoff_s`, each delay drawn uniformly
    from its upper half (jitter, so clients dropped together do not come back together), for `timeout_s` in all.

    Replay: the stream keeps the encoded frames of the last `replay_s` seconds (by frame timestamp), at most
    `replay_bytes` bytes, and after a resume sends again those after the server's last frame (`session_resumed`'s
    `last_ts`): a server restored from its session store after a crash lost its newest frames. The defaults cover a
    journal written every few frames plus a full server queue: memory at most 64 MiB per stream, which holds the
    5 s at model send size (about 10 KB a frame: 1.5 MB at 30 fps) and about 4.5 s of full-size 640x480 frames
    (about 480 KB each at 30 fps; docs/protocol.md). `replay_s` 0 keeps nothing (frames after last_ts are lost,
    and counted)."""

    timeout_s: float = 60.0  # give up (ConnectionLost) after trying this long
    backoff_s: float = 0.2  # the first delay
    max_backoff_s: float = 5.0  # the longest delay
    on_session_lost: SessionLoss = SessionLoss.NEW_SESSION
    replay_s: float = 5.0  # keep the frames sent in the last this many seconds (frame timestamps) for a replay
    replay_bytes: int = 64 * 2**20  # and at most this many bytes of them

    def __post_init__(self) -> None:
        values = {"timeout_s": self.timeout_s, "backoff_s": self.backoff_s, "max_backoff_s": self.max_backoff_s}
        problems = [f"{name} must be > 0, got {value!r}" for name, value in values.items() if not value > 0]
        replay = {"replay_s": self.replay_s, "replay_bytes": self.replay_bytes}
        problems += [f"{name} must be >= 0, got {value!r}" for name, value in replay.items() if not value >= 0]
        if self.max_backoff_s < self.backoff_s:
            problems.append(f"max_backoff_s ({self.max_backoff_s!r}) must be >= backoff_s ({self.backoff_s!r})")
        if problems:
            raise ValueError("invalid reconnect policy: " + "; ".join(problems))
        object.__setattr__(self, "on_session_lost", SessionLoss(self.on_session_lost))

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts (endless; the caller stops at its deadline)."""
        rng = rng or random.Random()
        ceiling = self.backoff_s
        while True:
            yield rng.uniform(ceiling / 2, ceiling)
            ceiling = min(ceiling * 2, self.max_backoff_s)

    async def retry(
        self,
        handshake: Callable[[], Awaitable[None]],
        replace_lost_session: Callable[[], Awaitable[None]],
        session_id: Callable[[], str | None],
    ) -> str | None:
        """Call `handshake` until it works, waiting `delays()` between attempts, for `timeout_s` (then
        ConnectionLost). When the server answers session_not_found, `replace_lost_session` points the next hello
        elsewhere (unless on_session_lost is FAIL). Returns the id of the session the server lost, or None."""
        deadline = time.monotonic() + self.timeout_s
        delays = self.delays()
        lost: str | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                await handshake()
                return lost
            except ServerError as exc:
                if exc.code == "session_not_found" and self.on_session_lost is not SessionLoss.FAIL:
                    lost = lost or session_id()
                    await replace_lost_session()
                    continue  # at once: the server is up
                if exc.code in ("unauthorized", "session_not_found"):
                    raise ConnectionLost(f"could not resume session {session_id()}: {exc}") from exc
                failure: BaseException = exc
            except (TransportClosed, OSError) as exc:
                failure = exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionLost(
                    f"could not resume session {session_id()} within {self.timeout_s:g} s ({attempt} attempts; "
                    f"ReconnectPolicy.timeout_s): {failure}"
                ) from failure
            delay = min(next(delays), left)
            logger.warning("reconnect attempt %d failed (%s); next in %.1f s, giving up in %.0f s", attempt, failure,
                           delay, left)  # fmt: skip
            await asyncio.sleep(delay)
