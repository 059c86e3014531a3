"""Errors raised by the model library.

R3DError (ValueError)
├── ConfigError          an R3DConfig field is invalid (all problems named at once)
├── CheckpointError      a checkpoint is corrupt, of an unknown version, or does not fit the architecture
├── BackboneError        an unknown backbone, missing weights or a weights hash mismatch
├── WindowTooLongError   a token window longer than the positional table
└── ImageDecodeError     an encoded camera image (JPEG) that cannot be read
"""

from __future__ import annotations


class R3DError(ValueError):
    """Base of every error the model library raises on user-reachable bad input."""


class ConfigError(R3DError):
    pass


class CheckpointError(R3DError):
    pass


class BackboneError(R3DError):
    pass


class WindowTooLongError(R3DError):
    pass


class ImageDecodeError(R3DError):
    pass
