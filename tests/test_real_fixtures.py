"""The shared camera fixtures are found only through R3D_SHARED_DIR or beside the repository: no machine path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.real_fixtures import REPOSITORY, SHARED_DIR_VARIABLE, shared_dir


def test_shared_dir_is_the_variable_when_set(tmp_path: Path) -> None:
    assert shared_dir({SHARED_DIR_VARIABLE: str(tmp_path)}) == tmp_path


def test_shared_dir_without_the_variable_is_beside_the_repository() -> None:
    assert shared_dir({}) == REPOSITORY.parent / "shared"
    assert shared_dir({SHARED_DIR_VARIABLE: ""}) == REPOSITORY.parent / "shared"


def test_a_missing_fixture_skips_naming_the_variable(tmp_path: Path) -> None:
    test = tmp_path / "test_needs_fixture.py"
    test.write_text(
        "from tests.real_fixtures import real_fixture\n\n"
        "def test_it():\n    real_fixture('realsense_d435/nothing.bag')\n"
    )
    env = {"PATH": "/usr/bin:/bin", SHARED_DIR_VARIABLE: str(tmp_path / "nowhere"), "PYTHONPATH": str(REPOSITORY)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout
    assert f"set {SHARED_DIR_VARIABLE}" in out.stdout and str(tmp_path / "nowhere") in out.stdout
