"""Problem accounting for the importers: every broken file, frame, label or sequence is logged with the sequence
and frame named, counted, and summarised at the end (on stdout and in dataset.json's provenance).

An importer skips only what is broken: a frame whose image is missing or corrupt, a label it cannot place (the
frame is kept, unlabelled), or a whole sequence when nothing usable is left in it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# Problem kinds (the keys of the summary's per-kind counts).
MISSING_FILE = "missing_file"  # an image or label file that should exist does not
CORRUPT_FILE = "corrupt_file"  # a file that exists but cannot be decoded (image, XML, video)
BAD_FRAME = "bad_frame"  # decodes, but has the wrong shape, dtype or range for its sequence
UNKNOWN_LABEL = "unknown_label"  # a label that is not in the class list
BAD_ANNOTATION = "bad_annotation"  # an annotation line that cannot be parsed or placed
COUNT_MISMATCH = "count_mismatch"  # RGB and depth hold different numbers of frames
MISSING_LABEL = "missing_label"  # a frame (or sequence) with no annotation at all
EMPTY_SEQUENCE = "empty_sequence"  # nothing usable left in a sequence: it is skipped
SHORT_CLIP = "short_clip"  # a clip shorter than the importer's minimum length: it is skipped

MAX_LISTED = 50  # problems listed one by one in the provenance; the counts cover all of them


@dataclass(frozen=True)
class Problem:
    """One problem found in the original data."""

    kind: str
    sequence: str
    frame: int | str | None
    detail: str

    def describe(self) -> str:
        where = f"sequence {self.sequence}" + (f" frame {self.frame}" if self.frame is not None else "")
        return f"{where}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sequence": self.sequence, "frame": self.frame, "detail": self.detail}


@dataclass
class ImportReport:
    """Counts of what an import read, wrote and skipped, and the problems behind every skip."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    sequences_seen: int = 0
    sequences_written: int = 0
    frames_written: int = 0
    frames_skipped: int = 0
    labels_dropped: int = 0
    skipped_sequences: list[str] = field(default_factory=list)

    def problem(
        self,
        kind: str,
        sequence: str,
        frame: int | str | None,
        detail: str,
        *,
        frames_skipped: int = 0,
        labels_dropped: int = 0,
    ) -> None:
        """Record and log one problem; `frames_skipped` / `labels_dropped` say what it cost."""
        p = Problem(kind, sequence, frame, detail)
        self.problems.append(p)
        self.frames_skipped += frames_skipped
        self.labels_dropped += labels_dropped
        logger.warning("%s [%s]", p.describe(), kind)

    def skip_sequence(self, sequence: str, detail: str, *, frames: int = 0, kind: str = EMPTY_SEQUENCE) -> None:
        """Record a sequence left out entirely; `frames` are its frames not already counted as skipped."""
        self.skipped_sequences.append(sequence)
        self.problem(kind, sequence, None, f"sequence skipped: {detail}", frames_skipped=frames)

    def wrote_sequence(self, num_frames: int) -> None:
        self.sequences_written += 1
        self.frames_written += num_frames

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def to_dict(self) -> dict[str, Any]:
        """The summary stored in dataset.json under provenance.import."""
        return {
            "source": self.source,
            "sequences_seen": self.sequences_seen,
            "sequences_written": self.sequences_written,
            "sequences_skipped": len(self.skipped_sequences),
            "frames_written": self.frames_written,
            "frames_skipped": self.frames_skipped,
            "labels_dropped": self.labels_dropped,
            "problem_counts": self.counts_by_kind(),
            "skipped_sequences": list(self.skipped_sequences),
            "problems": [p.to_dict() for p in self.problems[:MAX_LISTED]],
            "problems_listed": min(len(self.problems), MAX_LISTED),
            "problems_total": len(self.problems),
        }

    def summary(self) -> str:
        """A few human-readable lines: what was written, what was skipped and why."""
        lines = [
            f"{self.source} import: {self.sequences_written} of {self.sequences_seen} sequences written, "
            f"{len(self.skipped_sequences)} skipped; {self.frames_written} frames written, "
            f"{self.frames_skipped} frames skipped, {self.labels_dropped} frame labels dropped (kept unlabelled)"
        ]
        counts = self.counts_by_kind()
        if counts:
            lines.append("problems: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        else:
            lines.append("problems: none")
        if self.skipped_sequences:
            shown = ", ".join(self.skipped_sequences[:20])
            more = f" (+{len(self.skipped_sequences) - 20} more)" if len(self.skipped_sequences) > 20 else ""
            lines.append(f"skipped sequences: {shown}{more}")
        return "\n".join(lines) + "\n"
