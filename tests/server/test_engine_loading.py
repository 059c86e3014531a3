"""Importing the engine module does not load onnxruntime: a server on the PyTorch backend never pays for it, and the
ONNX Runtime backend imports it when a bundle is loaded (export.backends). Building the sessions once with the
server's thread count is tested where it happens, in tests/export/test_backends.py."""

from __future__ import annotations

import subprocess
import sys


def test_import_server_engine_does_not_load_onnxruntime() -> None:
    code = "import sys, server.engine; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
