"""The camera side must install and run without torch or fastapi: importing the wire protocol and the clients
package (in a fresh interpreter) loads neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "fastapi", "starlette", "uvicorn", "onnxruntime")


@pytest.mark.parametrize("module", ["server.protocol", "clients", "server"])
def test_import_module_loads_no_torch_or_fastapi(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
