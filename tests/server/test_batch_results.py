"""The batch results schema: docs/batch_scoring.md describes every column of frames.csv and ticks.csv, in order, as
the one writer (server.batch.results) writes them; `python -m server.batch` refuses bad input with a message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.batch.results import FRAME_COLUMNS, TICK_COLUMNS

DOC = Path(__file__).resolve().parents[2] / "docs" / "batch_scoring.md"


def _documented_columns(table: str) -> list[str]:
    section = DOC.read_text().split(f"## `{table}` columns", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


@pytest.mark.parametrize(("table", "columns"), [("frames.csv", FRAME_COLUMNS), ("ticks.csv", TICK_COLUMNS)])
def test_docs_describe_every_column_in_order(table: str, columns: dict[str, str]) -> None:
    assert _documented_columns(table) == list(columns)


def test_local_scoring_of_an_unsupported_source_says_what_it_expected(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("not a recording")
    out = subprocess.run(
        [sys.executable, "-m", "server.batch", str(source), "--bundle", str(checkpoints["base"]), "--backend",
         "pytorch", "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "unsupported recording format '.txt'; expected a dataset folder, a sequence folder" in out.stderr
    assert not (tmp_path / "out").exists()
