#!/usr/bin/env bash
# The test command of the README and CI: the whole suite, in the active environment.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q "$@"
