#!/usr/bin/env bash
# The test command of the README and CI: the whole suite (arguments go to pytest).
# Runs in the active virtual environment when one is active (VIRTUAL_ENV), else in the project's .venv, which it
# creates and installs (scripts/install.sh) when missing, so it works from a plain shell right after ./demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x "$VIRTUAL_ENV/bin/python" ]; then
        echo "[test] the active environment VIRTUAL_ENV=$VIRTUAL_ENV has no bin/python: deactivate it or repair it" >&2
        exit 2
    fi
else
    # shellcheck source=scripts/setup.sh
    . scripts/setup.sh
    r3d_project_venv test
    VIRTUAL_ENV="$PWD/.venv"
fi
# as activating would: the environment's console scripts (r3d-serve, ...) come first on PATH for the tests
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
echo "[test] python: $VIRTUAL_ENV/bin/python"
exec "$VIRTUAL_ENV/bin/python" -m pytest -q "$@"
