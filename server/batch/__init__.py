"""Batch scoring: what a recording can be (sources.py), scoring it through the streaming code (scoring.py), the one
results writer (results.py), server jobs (jobs.py) and local scoring without a server (local.py, run by
``python -m server.batch``; not imported here, it loads a model runtime of its own).
"""

from server.batch.jobs import Job, JobManager
from server.batch.results import FRAME_COLUMNS, RESULT_FILES, TICK_COLUMNS, frames_csv, ticks_csv, write_results
from server.batch.scoring import Cancelled, score_sequence
from server.batch.sources import SourceSequence, open_sequences

__all__ = [
    "FRAME_COLUMNS",
    "RESULT_FILES",
    "TICK_COLUMNS",
    "Cancelled",
    "Job",
    "JobManager",
    "SourceSequence",
    "frames_csv",
    "open_sequences",
    "score_sequence",
    "ticks_csv",
    "write_results",
]
