"""The one results writer of batch scoring: ``results.json`` (the ``JobResults`` document), ``frames.csv`` and
``ticks.csv``. Server jobs and local scoring (``python -m server.batch``) both write their folders with
``write_results``, so the same recording scored either way gives byte-identical tables. Every column is named and
described below; docs/batch_scoring.md lists them (a test keeps the two in step).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rgbd.files import write_bytes_atomic
from server.protocol import JobResults, SequenceResult

__all__ = ["FRAME_COLUMNS", "RESULT_FILES", "TICK_COLUMNS", "frames_csv", "ticks_csv", "write_results"]

FRAME_COLUMNS: dict[str, str] = {
    "sequence": "sequence id (a recording scores as one sequence; a dataset as one per sequence)",
    "frame": "frame index in the recording, from 0",
    "timestamp": "frame time in seconds, as recorded (6 decimals)",
    "accepted": "1 when resampling to the model's frame rate used the frame, else 0 (resampled out or rejected)",
    "label": "ground-truth action of the frame when the recording has one, else empty",
    "action": "class index of the current action of the latest tick at or before this frame, empty before the first",
    "action_label": "class name of that current action",
    "probability": "its probability (6 decimals)",
    "error": "why the frame was rejected (error code: message), else empty",
}
TICK_COLUMNS: dict[str, str] = {
    "sequence": "sequence id",
    "frame": "index of the frame at which the prediction was made",
    "timestamp": "that frame's time in seconds (6 decimals)",
    "window_frames": "frames (tokens) in the window the prediction saw",
    "current": "class name of the current action",
    "current_probability": "its probability (6 decimals)",
    "rank": "0 for the next anticipated action, 1 for the one after, ...; empty when the tick anticipates none",
    "action": "class name of the anticipated action",
    "start_s": "seconds from the tick until the action starts (4 decimals)",
    "duration_s": "how long it lasts, in seconds (4 decimals)",
    "probability": "its probability (6 decimals)",
    "erank_rgb": "effective rank of the window's RGB tokens (modality health), empty when not measured",
    "erank_depth": "effective rank of the window's depth tokens, empty when not measured",
}
RESULT_FILES = ("results.json", "frames.csv", "ticks.csv")


def frames_csv(results: list[SequenceResult]) -> str:
    """One row per input frame."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FRAME_COLUMNS)
    for seq in results:
        for f in seq.frames:
            w.writerow([seq.id, f.index, f"{f.ts:.6f}", int(f.accepted), f.label or "", _opt(f.action),
                        f.action_label or "", _num(f.probability), f.error or ""])  # fmt: skip
    return buf.getvalue()


def ticks_csv(results: list[SequenceResult]) -> str:
    """One row per anticipated action per tick (rank 0 = next); a tick with no future action has one empty row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TICK_COLUMNS)
    for seq in results:
        for t in seq.ticks:
            head = [seq.id, t.frame_index, f"{t.frame_ts:.6f}", t.window.frames, t.current.label,
                    _num(t.current.probability)]  # fmt: skip
            health = [_num(t.modality.erank_rgb), _num(t.modality.erank_depth)] if t.modality else ["", ""]
            if not t.future:
                w.writerow([*head, "", "", "", "", "", *health])
            for r, a in enumerate(t.future):
                w.writerow([*head, r, a.label, f"{a.start_s:.4f}", f"{a.duration_s:.4f}", _num(a.probability), *health])
    return buf.getvalue()


def write_results(results: JobResults, folder: Path) -> dict[str, Path]:
    """Write results.json, frames.csv and ticks.csv (atomically) into ``folder``; returns their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "results.json": results.model_dump_json().encode(),
        "frames.csv": frames_csv(results.sequences).encode(),
        "ticks.csv": ticks_csv(results.sequences).encode(),
    }
    for name, data in contents.items():
        write_bytes_atomic(folder / name, data)
    return {name: folder / name for name in RESULT_FILES}


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def _opt(x: int | None) -> str:
    return "" if x is None else str(x)
