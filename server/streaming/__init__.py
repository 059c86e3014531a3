"""Streaming sessions: what happens to a frame between the WebSocket (or HTTP) and a prediction.

StreamConnection   one WebSocket client: hello / welcome, frames in, predictions out (connection.py)
ingest_frame       timestamp checks and resampling, decode in the pool, the session's queue (ingest.py)
Session            lifecycle state machine, bounded input queue, delivery of messages (session.py)
SessionRegistry    the server's sessions: create, attach, detach, close, reap, model switch, snapshots
InferenceWorker    the thread that owns the model: batches frames across sessions, runs due ticks (worker.py)
SessionJournal     writes sessions' windows to the session store (server/session_store/) so they survive (journal.py)
StreamProcessor    per-stream logic shared with batch scoring: resampling, window, tick grid (processor.py)
SlotGrid           resampling and tick decisions by timestamp (resampler.py); TokenWindow the token window
"""

from server.streaming.connection import StreamConnection
from server.streaming.ingest import ingest_frame, prepare_frame
from server.streaming.journal import SessionJournal
from server.streaming.processor import (
    Counters,
    FrameOutcome,
    OutcomeObserver,
    StreamProcessor,
    TickOutcome,
    TickRequest,
    modality_health,
)
from server.streaming.registry import SessionRegistry
from server.streaming.resampler import SlotGrid
from server.streaming.session import PreparedFrame, Session, SessionEvent, SessionState
from server.streaming.window import TokenWindow, WindowEntry
from server.streaming.worker import InferenceWorker

__all__ = [
    "Counters",
    "FrameOutcome",
    "InferenceWorker",
    "OutcomeObserver",
    "PreparedFrame",
    "Session",
    "SessionEvent",
    "SessionJournal",
    "SessionRegistry",
    "SessionState",
    "SlotGrid",
    "StreamConnection",
    "StreamProcessor",
    "TickOutcome",
    "TickRequest",
    "TokenWindow",
    "WindowEntry",
    "ingest_frame",
    "modality_health",
    "prepare_frame",
]
