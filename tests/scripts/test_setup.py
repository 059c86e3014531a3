"""The newcomer's two commands: scripts/test.sh picks its environment (the active one, else .venv, created and
installed when missing), scripts/setup.sh installs system packages through apt-get only when it may, and demo.sh
goes on to the demo when libusb cannot be installed.

Each test copies the real scripts into a fake repository and runs them with stand-in executables (python, id, sudo,
apt-get) that record how they were called; nothing is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
# python -m venv DIR: make DIR/bin/python a copy of this script; python -c CODE: succeed (an import of pyrealsense2
# fails with FAKE_IMPORT_ERROR when set); anything else: record it
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = "-c" ]; then
    case "$2" in *pyrealsense2*) [ -z "$FAKE_IMPORT_ERROR" ] || { echo "$FAKE_IMPORT_ERROR" >&2; exit 1; } ;; esac
    exit 0
fi
echo "$0 $*" >> "$FAKE_LOG"
"""
FAKE_ID = '#!/bin/sh\necho "$FAKE_UID"\n'
FAKE_SUDO = """#!/bin/sh
[ "$FAKE_SUDO" = "allowed" ] || exit 1
[ "$1" = "-n" ] && shift
[ "$1" = "true" ] && exit 0
FAKE_VIA=sudo exec "$@"
"""
FAKE_APT = '#!/bin/sh\necho "${FAKE_VIA:-direct} apt-get $*" >> "$FAKE_LOG"\n[ "$FAKE_APT" != "fails" ]\n'


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with the real scripts and a pyproject.toml, and stand-in executables in tmp_path/bin."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in ("test.sh", "setup.sh", "install.sh"):
        shutil.copy2(REPOSITORY / "scripts" / name, root / "scripts" / name)
    shutil.copy2(REPOSITORY / "demo.sh", root / "demo.sh")
    (root / "pyproject.toml").write_text('[project]\nname = "fake"\n')
    _executable(tmp_path / "bin" / "python3", FAKE_PYTHON)
    _executable(tmp_path / "bin" / "id", FAKE_ID)
    _executable(tmp_path / "bin" / "sudo", FAKE_SUDO)
    _executable(tmp_path / "bin" / "apt-get", FAKE_APT)
    return root


def _run(repo: Path, command: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = repo.parent / "calls.log"
    base = {"PATH": f"{repo.parent / 'bin'}:/usr/bin:/bin", "HOME": str(repo.parent), "FAKE_LOG": str(log)}
    done = subprocess.run(command, cwd=repo, env=base | env, capture_output=True, text=True, timeout=60, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return done, calls


def _stamp(repo: Path) -> str:
    return subprocess.run("cksum < pyproject.toml", shell=True, cwd=repo, capture_output=True, text=True).stdout


def _installed_venv(repo: Path) -> None:
    """.venv with the stand-in python, installed for the current pyproject.toml."""
    _executable(repo / ".venv" / "bin" / "python", FAKE_PYTHON)
    (repo / ".venv" / ".r3d-installed").write_text(_stamp(repo))


LIBUSB_MISSING = "ImportError: libusb-1.0.so.0: cannot open shared object file: No such file or directory"


def test_test_sh_uses_the_active_environment_when_one_is_active(repo: Path) -> None:
    active = repo.parent / "active"
    _executable(active / "bin" / "python", FAKE_PYTHON)
    done, calls = _run(repo, ["./scripts/test.sh", "-k", "x"], VIRTUAL_ENV=str(active))
    assert done.returncode == 0, done.stderr
    assert calls == [f"{active}/bin/python -m pytest -q -k x"]
    assert not (repo / ".venv").exists()


def test_test_sh_without_an_active_environment_uses_the_installed_project_venv(repo: Path) -> None:
    _installed_venv(repo)
    done, calls = _run(repo, ["./scripts/test.sh"])
    assert done.returncode == 0, done.stderr
    assert calls == [f"{repo}/.venv/bin/python -m pytest -q"]


def test_test_sh_without_any_environment_creates_and_installs_venv_then_tests(repo: Path) -> None:
    done, calls = _run(repo, ["./scripts/test.sh"], PYTHON=str(repo.parent / "bin" / "python3"))
    assert done.returncode == 0, done.stderr
    venv_python = f"{repo}/.venv/bin/python"
    assert calls == [
        f"{venv_python} -m pip install -q --upgrade pip",
        f"{venv_python} -m pip install -q torch==2.13.0",
        f"{venv_python} -m pip install -q -e .[dev]",
        f"{venv_python} -m pytest -q",
    ]
    assert (repo / ".venv" / ".r3d-installed").read_text() == _stamp(repo)


def test_test_sh_reinstalls_when_pyproject_changed_since_the_last_install(repo: Path) -> None:
    _executable(repo / ".venv" / "bin" / "python", FAKE_PYTHON)
    (repo / ".venv" / ".r3d-installed").write_text("an older pyproject\n")
    done, calls = _run(repo, ["./scripts/test.sh"])
    assert done.returncode == 0, done.stderr
    assert calls[-2:] == [
        f"{repo}/.venv/bin/python -m pip install -q -e .[dev]",
        f"{repo}/.venv/bin/python -m pytest -q",
    ]


APT = [". scripts/setup.sh; r3d_apt_install demo libusb-1.0-0"]


@pytest.mark.parametrize(
    ("uid", "sudo", "via"), [("0", "refused", "direct"), ("1000", "allowed", "sudo")], ids=["root", "sudo"]
)
def test_apt_install_runs_apt_get_as_root_or_through_passwordless_sudo(
    repo: Path, uid: str, sudo: str, via: str
) -> None:
    done, calls = _run(repo, ["sh", "-c", *APT], FAKE_UID=uid, FAKE_SUDO=sudo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [f"{via} apt-get install -y -qq libusb-1.0-0"]


def test_apt_install_without_root_or_sudo_prints_the_one_command_and_installs_nothing(repo: Path) -> None:
    done, calls = _run(repo, ["sh", "-c", *APT], FAKE_UID="1000", FAKE_SUDO="refused")
    assert done.returncode == 1
    assert done.stdout == "[demo] missing system package(s) libusb-1.0-0; to install them run: " \
        "sudo apt-get install -y libusb-1.0-0\n"  # fmt: skip
    assert calls == []


def test_apt_install_that_fails_says_so_with_the_command(repo: Path) -> None:
    done, calls = _run(repo, ["sh", "-c", *APT], FAKE_UID="0", FAKE_APT="fails")
    assert done.returncode == 1
    assert (
        "apt-get could not install libusb-1.0-0; to install them run: sudo apt-get install -y libusb-1.0-0"
        in done.stdout
    )
    assert calls == ["direct apt-get install -y -qq libusb-1.0-0", "direct apt-get update -qq"]


def test_demo_sh_without_libusb_or_a_way_to_install_it_says_the_command_and_runs_the_demo(repo: Path) -> None:
    _installed_venv(repo)
    done, calls = _run(
        repo, ["./demo.sh", "--fast"], FAKE_UID="1000", FAKE_SUDO="refused", FAKE_IMPORT_ERROR=LIBUSB_MISSING
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "to install them run: sudo apt-get install -y libusb-1.0-0" in done.stdout
    assert calls == [".venv/bin/python scripts/demo.py --fast"]  # the demo then streams the dataset folder


def test_demo_sh_without_libusb_installs_it_as_root_then_runs_the_demo(repo: Path) -> None:
    _installed_venv(repo)
    done, calls = _run(repo, ["./demo.sh"], FAKE_UID="0", FAKE_IMPORT_ERROR=LIBUSB_MISSING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == ["direct apt-get install -y -qq libusb-1.0-0", ".venv/bin/python scripts/demo.py"]


def test_demo_sh_with_pyrealsense2_loading_installs_nothing(repo: Path) -> None:
    _installed_venv(repo)
    done, calls = _run(repo, ["./demo.sh"], FAKE_UID="0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [".venv/bin/python scripts/demo.py"]
