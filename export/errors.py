"""Errors raised by the export package.

R3DError (model.errors, a ValueError)
└── ExportError               base of everything export/ raises on user-reachable problems
    ├── BundleError           a bundle folder is incomplete, tampered with, or of an unknown format version
    ├── ParityError           an exported graph or engine differs from its reference beyond the stated tolerance
    └── BackendUnavailableError   the requested backend, device or precision cannot run here (names what is missing)
"""

from __future__ import annotations

from model.errors import R3DError


class ExportError(R3DError):
    """Base of the errors of the export package."""


class BundleError(ExportError):
    pass


class ParityError(ExportError):
    pass


class BackendUnavailableError(ExportError):
    pass
