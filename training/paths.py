"""How paths are recorded in files meant to be kept or committed (evaluation reports, the comparisons report):
relative to the working directory, never absolute, so a result names no machine's folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def recorded_path(path: str | Path) -> str:
    """`path` relative to the working directory ("data/synth", "../runs/a/best.safetensors"); a relative path is
    kept as given."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    return os.path.relpath(p, Path.cwd())


def recorded_command(program: str, argv: Sequence[str]) -> str:
    """The command line `program argv...` with every absolute path in it recorded relative (recorded_path)."""
    return " ".join([program, *(recorded_path(a) if os.path.isabs(a) else a for a in argv)])
