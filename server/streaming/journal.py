"""The session journal: what a server writes to its session store (server/session_store/) so that a session's
window and counters outlive the process (docs/scale-out.md, "Durable sessions (Redis)").

The inference worker calls ``flush`` after each encoder batch, once its ticks are decoded and before their
predictions go out: every session of the batch with at least ``every_frames`` (k) window entries not yet written
sends them, with its head (the snapshot document without the window, as of its newest encoded frame), in one store
round trip for the whole batch. A crash therefore loses fewer than k encoded frames of any session (none with the
default k = 1), plus the frames still queued for the encoder, which the client re-sends (``last_ts`` in the
``session_resumed`` notice).

Ownership: a session's first write claims it (a new owner epoch); a session restored here from the store is claimed
at once (``claim``), which fences the process that had it. A write refused because another process claimed the
session since (fenced) ends the session here (``on_fenced``): two processes never both journal one session. Before
a copy held here is used again after the session may have been claimed elsewhere (a resume, or a cluster replica
that the ring hands the session back to), ``owns`` asks the store whether the epoch is still this process's.

Outage: when the store cannot be reached the sessions keep streaming in memory; the journal logs one warning, sets
``r3d_session_store_up`` to 0 and stops writing from the inference worker; the runtime's housekeeping retries every
``retry_s`` (``retry``), and when the store answers again writes every session's whole window (a resync), then logs
the recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgpack

from server.metrics import Metrics
from server.session_store import FENCED, LOST, JournalWrite, SessionStore, StoreUnavailable, encode_entry
from server.streaming.session import Session
from server.streaming.snapshot import snapshot_document

__all__ = ["SessionJournal"]

logger = logging.getLogger(__name__)
RETRY_S = 1.0


@dataclass
class _Durability:
    epoch: int | None = None  # None until the session is claimed
    written_seq: int | None = None  # the newest window entry in the store
    whole: bool = True  # the next write replaces the stored window (new, resumed, after an outage or a reset)


class SessionJournal:
    def __init__(
        self,
        store: SessionStore,
        metrics: Metrics,
        *,
        every_frames: int = 1,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_frames < 1:
            raise ValueError(f"expected every_frames of at least 1, got {every_frames}")
        self.store = store
        self.metrics = metrics
        self.every_frames = every_frames
        self.retry_s = retry_s
        self.clock = clock
        self.on_fenced: Callable[[Session], None] = lambda session: None  # the registry closes such a session
        self._lock = threading.Lock()  # guards the table of sessions (short holds only)
        self._write_lock = threading.Lock()  # one writer at a time: the worker's flush, a claim, the housekeeping retry
        self._sessions: dict[str, tuple[Session, _Durability]] = {}
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def available(self) -> bool:
        """False during an outage of the store."""
        return self._down_since is None

    def track(self, session: Session) -> None:
        """Journal this session from now on (its first write claims it)."""
        with self._lock:
            self._sessions[session.id] = (session, _Durability())

    def claim(self, session: Session, frame_encoder_id: str) -> None:
        """Take a session restored from the store over now: a whole-window write under a new epoch fences the
        process that had it. During an outage the claim waits for the resync."""
        with self._lock:
            self._sessions[session.id] = (session, _Durability())
        with self._write_lock:
            self._write([session.id], frame_encoder_id, force=True)

    def owns(self, session: Session) -> bool:
        """Whether the store still names this process the session's owner: False when another process claimed it
        since this one last wrote it (the copy here is stale) or a write was already fenced. True before the first
        write (nothing claimed yet), during an outage (sessions stream in memory) and when the store lost it."""
        with self._lock:
            entry = self._sessions.get(session.id)
        if entry is None:
            return False
        epoch = entry[1].epoch
        if epoch is None or self._down_since is not None:
            return True
        try:
            stored = self.store.epoch(session.id)
        except StoreUnavailable:  # the next write starts the outage; the copy here is the best there is
            return True
        return stored is None or stored == epoch

    def forget(self, session: Session) -> None:
        """A closed session: removed from the store (a failure only logs: its keys expire on their own)."""
        with self._lock:
            _, durable = self._sessions.pop(session.id, (None, _Durability()))
        if durable.epoch is None:
            return
        try:
            self.store.delete(session.id, durable.epoch)
        except StoreUnavailable as exc:
            logger.info("session %s closed; the store could not forget it (its keys expire): %s", session.id, exc)

    def reset(self) -> None:
        """Every session writes its whole window next (windows were reset: another frame encoder)."""
        with self._lock:
            for _, durable in self._sessions.values():
                durable.whole = True

    def flush(self, sessions: Iterable[Session], frame_encoder_id: str) -> None:
        """Write these sessions' new entries where k are due (the inference worker, after a batch). Nothing during
        an outage: ``retry`` (another thread) probes the store, so the worker never waits on a store that is down."""
        if self._down_since is not None:
            return
        with self._write_lock:
            self._write([s.id for s in sessions], frame_encoder_id, force=False)

    def check(self) -> bool:
        """Whether the store answers now; an outage starts (or goes on) when it does not."""
        with self._write_lock:
            try:
                self.store.check()
            except StoreUnavailable as exc:
                self._outage(exc)
                return False
            self._recovered(0)
            return True

    def retry(self, frame_encoder_id: str) -> None:
        """During an outage, once ``retry_s`` has passed since the last failure, try to write every session's whole
        window (the resync); called every second by the runtime's housekeeping, off the event loop."""
        with self._write_lock:
            if self._down_since is not None and self.clock() >= self._retry_at:
                self._resync(frame_encoder_id)

    # --- writing (with self._write_lock held) ----------------------------------------------------------------------

    def _resync(self, frame_encoder_id: str) -> None:
        with self._lock:
            ids = list(self._sessions)
        if ids:
            self._write(ids, frame_encoder_id, force=True)
            return
        try:  # no session to write: whether the store answers decides the outage's end
            self.store.check()
        except StoreUnavailable as exc:
            self._outage(exc)
            return
        self._recovered(0)

    def _recovered(self, resynced: int) -> None:
        if self._down_since is not None:
            logger.warning("session store %s answers again after %.1f s: %d sessions resynced", self.store.url,
                           self.clock() - self._down_since, resynced)  # fmt: skip
            self._down_since = None
            self.metrics.store_recovered()

    def _write(self, ids: list[str], frame_encoder_id: str, *, force: bool) -> None:
        with self._lock:
            tracked = [self._sessions[sid] for sid in ids if sid in self._sessions]
        pending = []
        for session, durable in tracked:
            if session.closed:
                continue
            write = self._journal_write(session, durable, frame_encoder_id, force=force)
            if write is not None:
                pending.append((session, durable, *write))
        if not pending:
            return
        started = time.perf_counter()
        try:
            answers = self.store.write([w for _, _, w, _ in pending])
        except StoreUnavailable as exc:
            self._outage(exc)
            return
        nbytes = sum(len(w.head) + sum(map(len, w.entries)) for _, _, w, _ in pending)
        self.metrics.store_written(len(pending), nbytes, time.perf_counter() - started)
        lost = []
        for (session, durable, _, last_seq), answer in zip(pending, answers, strict=True):
            if answer == FENCED and session.closed:  # closed here meanwhile: its own delete bumped the epoch
                continue
            if answer == FENCED:
                with self._lock:
                    self._sessions.pop(session.id, None)
                logger.warning("session %s: another process took it over; it ends here", session.id)
                self.metrics.session_fenced()
                self.on_fenced(session)
            elif answer == LOST:
                durable.whole = True
                lost.append(session.id)
            else:
                durable.epoch, durable.whole, durable.written_seq = answer, False, last_seq
        if lost:  # the store lost these journals (a restart without persistence): the whole windows, now
            logger.warning("session store %s had lost %d sessions' journals; writing them whole", self.store.url,
                           len(lost))  # fmt: skip
            self._write(lost, frame_encoder_id, force=True)
        self._recovered(len(pending))

    def _journal_write(
        self, session: Session, durable: _Durability, frame_encoder_id: str, *, force: bool
    ) -> tuple[JournalWrite, int | None] | None:
        """The session's write and the newest entry seq it leaves in the store; None when nothing is due."""
        with session.lock:
            window = session.processor.window
            entries = window.entries()
            new = [e for e in entries if durable.written_seq is None or e.seq > durable.written_seq]
            whole = durable.whole or durable.epoch is None
            if not whole and (not new or (len(new) < self.every_frames and not force)):
                return None
            head = snapshot_document(session.id, session.stream, session.model_id, frame_encoder_id,
                                     session.processor.durable_state())  # fmt: skip
            chosen = entries if whole else new
            last_seq = chosen[-1].seq if chosen else (None if whole else durable.written_seq)
            write = JournalWrite(
                session_id=session.id,
                epoch=durable.epoch,
                head=msgpack.packb(head, use_bin_type=True),
                entries=tuple(encode_entry(e.seq, e.ts, e.tokens.astype("<f4").tobytes()) for e in chosen),
                replace=whole,
                max_entries=window.max_frames,
            )
        return write, last_seq

    def _outage(self, exc: StoreUnavailable) -> None:
        self.metrics.store_failed()
        now = self.clock()
        self._retry_at = now + self.retry_s
        with self._lock:
            for _, durable in self._sessions.values():
                durable.whole = True
        if self._down_since is None:
            self._down_since = now
            logger.warning("%s; %d sessions keep streaming in memory, not durable until it answers (retried every "
                           "%g s, then resynced)", exc, len(self._sessions), self.retry_s)  # fmt: skip
