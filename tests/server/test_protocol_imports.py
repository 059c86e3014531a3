"""The camera side must install and run without torch, ONNX Runtime or the web framework: importing every module of
the wire protocol, of `clients` and of `rgbd` (in a fresh interpreter) loads none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "onnxruntime", "fastapi", "starlette", "uvicorn")

# Imports every module of each package (pkgutil.walk_packages), then reports what it imported and which heavy
# modules are loaded; a module that fails to import fails the test with its traceback.
WALK = """
import importlib, json, pkgutil, sys
imported = []
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    imported.append(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
print(json.dumps({"imported": imported, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("server.protocol", {"server.protocol.codecs", "server.protocol.messages", "server.protocol.rest"}),
        ("clients", {"clients.sdk.client", "clients.stream_cli", "clients.score_cli", "clients.timeline"}),
        ("rgbd", {"rgbd.realsense", "rgbd.kinect", "rgbd.folders", "rgbd.dataset", "rgbd.open", "rgbd.files"}),
    ],
)
def test_importing_every_module_of_a_camera_side_package_loads_nothing_heavy(package: str, expected: set[str]) -> None:
    code = f"HEAVY = {HEAVY!r}\n{WALK}"
    out = subprocess.run(
        [sys.executable, "-c", code, package], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert expected <= set(report["imported"]), f"the walk missed modules: {expected - set(report['imported'])}"
    assert report["heavy"] == [], f"importing every module of {package} loaded {report['heavy']}"
