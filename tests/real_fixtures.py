"""Where the real camera recordings are: ``$R3D_SHARED_DIR/fixtures/real`` when the variable is set, else
``shared/fixtures/real`` beside the repository (the folder that holds it). Nothing else is searched: no machine
path. A test that needs one asks ``real_fixture("realsense_d435/...")``, which skips, naming the variable, when the
file is absent."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

SHARED_DIR_VARIABLE = "R3D_SHARED_DIR"
REPOSITORY = Path(__file__).resolve().parents[1]


def shared_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The shared folder: the variable when set (and not empty), else ../shared beside the repository."""
    named = environ.get(SHARED_DIR_VARIABLE, "")
    return Path(named).expanduser() if named else REPOSITORY.parent / "shared"


REAL_FIXTURES = shared_dir() / "fixtures" / "real"


def real_fixture(relative: str) -> Path:
    """REAL_FIXTURES / relative, or skip the calling test saying where it was looked for and how to point at it."""
    path = REAL_FIXTURES / relative
    if not path.exists():
        pytest.skip(
            f"real camera fixture {relative} not found at {path}: set {SHARED_DIR_VARIABLE} to the folder that holds "
            "fixtures/real (by default ../shared beside the repository)"
        )
    return path
