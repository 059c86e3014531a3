"""Where the real camera recordings (../shared/fixtures/real) are: beside the repository, or named by R3D_SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path


def _find() -> Path:
    candidates = [Path(os.environ["R3D_SHARED_DIR"])] if os.environ.get("R3D_SHARED_DIR") else []
    candidates += [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
    for shared in candidates:
        if (shared / "fixtures" / "real").is_dir():
            return shared / "fixtures" / "real"
    return candidates[0] / "fixtures" / "real"


REAL_FIXTURES = _find()
