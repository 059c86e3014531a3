"""Errors the service answers with: each carries a string-enum ``code`` (server.protocol.ErrorCode), the HTTP status
and WebSocket close code that code maps to, and a public message (expected vs got). Private detail goes to the logs.

ServerError
├── SessionError
│   ├── SessionNotFound        unknown or closed session id                  404 / 4404
│   ├── SessionBusy            a WebSocket already owns the session          409 / 4409
│   ├── SessionStateError      an illegal lifecycle transition               409 / 4409
│   ├── BadSnapshot            a snapshot that fails validation              422 / 4422
│   └── TooManySessions        max_sessions reached                          429 / 1013
├── JobError
│   ├── JobNotFound                                                          404
│   ├── JobNotReady            results requested before the job succeeded    409
│   ├── PathNotAllowed         a batch path outside the data root, '..'      403
│   └── UnsupportedFormat      not a dataset, sequence, archive or recording 415
├── AuthError                  missing or wrong API key                      401 / 4401
├── Forbidden                  an admin action without an admin key          403 / 4403
├── ModelNotFound              a reload names no model of models_dir         404
├── ModelError                 the model cannot be loaded or run             500 / 1011
└── NotReady                   no model yet, or shutting down                503 / 1013
server.protocol.ProtocolError  bad input on the wire (malformed message, bad frame, timestamps, size) 4xx

One handler (server.app) maps both bases to an ``ErrorOut`` JSON body or WebSocket ``error`` message.
"""

from __future__ import annotations

import re

from server.protocol import ERROR_STATUS, ErrorCode, ErrorOut, ProtocolError

_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"(),:/]+/)*([^\s'\"(),:/]+)")


class ServerError(Exception):
    """Base of the service's own errors."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        if code is not None:
            self.code = code

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code][0]


class SessionError(ServerError):
    code = ErrorCode.SESSION_STATE


class SessionNotFound(SessionError):
    code = ErrorCode.SESSION_NOT_FOUND


class SessionBusy(SessionError):
    code = ErrorCode.SESSION_BUSY


class SessionStateError(SessionError):
    code = ErrorCode.SESSION_STATE


class TooManySessions(SessionError):
    code = ErrorCode.TOO_MANY_SESSIONS


class JobError(ServerError):
    code = ErrorCode.BAD_REQUEST


class JobNotFound(JobError):
    code = ErrorCode.JOB_NOT_FOUND


class JobNotReady(JobError):
    code = ErrorCode.JOB_NOT_READY


class PathNotAllowed(JobError):
    code = ErrorCode.PATH_NOT_ALLOWED


class UnsupportedFormat(JobError):
    code = ErrorCode.UNSUPPORTED_FORMAT


class AuthError(ServerError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(ServerError):
    code = ErrorCode.FORBIDDEN


class BadSnapshot(SessionError):
    code = ErrorCode.BAD_SNAPSHOT


class ModelNotFound(ServerError):
    code = ErrorCode.MODEL_NOT_FOUND


class ModelError(ServerError):
    code = ErrorCode.MODEL_ERROR


class NotReady(ServerError):
    code = ErrorCode.NOT_READY


class NotSupported(ServerError):
    code = ErrorCode.NOT_SUPPORTED


def error_out(exc: ServerError | ProtocolError, *, fatal: bool = False) -> ErrorOut:
    """The public wire form of an error."""
    seq = exc.seq if isinstance(exc, ProtocolError) else None
    retry = exc.retry_after_s if isinstance(exc, ServerError) else None
    return ErrorOut(code=exc.code, message=exc.message, seq=seq, fatal=fatal, retry_after_s=retry)


def close_code(code: ErrorCode) -> int:
    return ERROR_STATUS[code][1]


def public_reason(exc: BaseException) -> str:
    """What a client may read about a failure in its job: our own errors' messages, a bad file's ValueError with any
    absolute path cut to its last part (the server's folders are not the client's business), nothing else."""
    if isinstance(exc, ServerError | ProtocolError):
        return exc.message
    if isinstance(exc, ValueError):
        return _ABSOLUTE_PATH.sub(r"\1", str(exc))
    return "internal error; the server log has the details"
