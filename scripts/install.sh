#!/usr/bin/env bash
# Install the project and its development tools into the active Python environment.
# torch is pinned to the CPU build available offline; a bare `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
# Debian's redis-server: the durable session store's tests start a real one (they skip, saying so, without it)
if ! command -v redis-server >/dev/null 2>&1; then
    # shellcheck source=scripts/setup.sh
    . scripts/setup.sh
    r3d_apt_install install redis-server || true
fi
