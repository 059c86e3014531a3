"""Frame sources: cameras, recordings and datasets, all yielding `Frame` records. Torch-free."""

from __future__ import annotations

from clients.sources.dataset import Dataset, DatasetFormatError, DatasetWriter, SequenceMeta
from clients.sources.frame import Frame, Intrinsics

__all__ = ["Dataset", "DatasetFormatError", "DatasetWriter", "Frame", "Intrinsics", "SequenceMeta"]
