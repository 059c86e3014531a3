"""Importers from public RGB-D action datasets' original layouts (UTKinect-Action3D, NTU RGB+D, DARai) and from
labelled camera recordings into the common dataset format; `r3d-data import ...`."""

from __future__ import annotations

from training.importers.darai import import_darai
from training.importers.ntu import import_ntu
from training.importers.recordings import import_recordings
from training.importers.report import ImportReport, Problem
from training.importers.utkinect import import_utkinect

__all__ = ["ImportReport", "Problem", "import_darai", "import_ntu", "import_recordings", "import_utkinect"]
