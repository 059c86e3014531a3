#!/bin/sh
# The one-command demo: sets up .venv (first run only), synthesises an RGB-D recording, serves the default model,
# streams the recording through a playback client, prints live anticipations, writes a timeline PNG and a results
# file, then stops the server and says where the outputs are.
#
#   ./demo.sh                   the committed default model (models/default)
#   ./demo.sh --model PATH      another checkpoint (.safetensors) or export bundle folder
#   ./demo.sh --help            every option (scripts/demo.py)
#
# Needs Python >= 3.11 (set PYTHON=/path/to/python3.11 if `python3` is older). RealSense recordings (.db3) need the
# system library libusb: installed here through apt-get when this shell may (root, or sudo without a password);
# otherwise the demo says the one command to run and streams the same recording as a dataset folder instead.
set -eu
cd "$(dirname "$0")"
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
r3d_project_venv demo || exit 1

if .venv/bin/python -c "import pyrealsense2" 2>&1 | grep -q libusb; then  # pyrealsense2 is there, libusb is not
    r3d_apt_install demo libusb-1.0-0 || true  # without it scripts/demo.py streams the dataset folder instead
fi
exec .venv/bin/python scripts/demo.py "$@"
