"""ONNX export, parity checks, TensorRT engines and the inference backends (PyTorch, ONNX Runtime, TensorRT).

Names are imported lazily (PEP 562), so `python -m benchmarks.gpu_check` can extend sys.path before torch-side imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AnticipatorResult": "export.interface",
    "BackendUnavailableError": "export.errors",
    "Bundle": "export.bundle",
    "BundleError": "export.errors",
    "ExportError": "export.errors",
    "InferenceBackend": "export.interface",
    "ParityError": "export.errors",
    "available_backends": "export.backends",
    "export_bundle": "export.onnx_export",
    "export_checkpoint": "export.onnx_export",
    "load_backend": "export.backends",
    "load_bundle": "export.bundle",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
