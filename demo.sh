#!/bin/sh
# The one-command demo: sets up .venv (first run only), synthesises an RGB-D recording, serves the default model,
# streams the recording through the RealSense playback client, prints live anticipations, writes a timeline PNG
# and a results file, then stops the server and says where the outputs are.
#
#   ./demo.sh                   the committed default model (models/default)
#   ./demo.sh --model PATH      another checkpoint (.safetensors) or export bundle folder
#   ./demo.sh --help            every option (scripts/demo.py)
#
# Needs only Python >= 3.11 (set PYTHON=/path/to/python3.11 if `python3` is older).
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.r3d-installed"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[demo] creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
# (Re)install when the environment is new or pyproject.toml changed since the last install.
WANT="$(cksum < pyproject.toml)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[demo] installing into $VENV (first run: a few minutes)"
    PATH="$PWD/$VENV/bin:$PATH" ./scripts/install.sh
    echo "$WANT" > "$STAMP"
fi
exec "$VENV/bin/python" scripts/demo.py "$@"
