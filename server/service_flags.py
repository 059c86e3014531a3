"""The flags every form of the service command takes (``r3d-serve``, and ``r3d-serve --cluster`` with its own
flags added: server/cluster/cli.py), the settings they make, and the checks both run before serving anything.

Every setting can also come from the environment (R3D_<NAME>, e.g. R3D_API_KEYS, R3D_MAX_SESSIONS) or the --config
file; the command line wins over the environment, which wins over the file. API keys are never taken from the
command line (they would show in the process list).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from server.model_store import resolve_model_path
from server.settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r3d-serve",
        description="Serve an R3D model: WebSocket streaming, REST, batch scoring, metrics (docs/protocol.md).",
    )
    p.add_argument(
        "model", nargs="?", type=Path,
        help="export bundle folder, checkpoint (.safetensors), or a folder holding one checkpoint",
    )  # fmt: skip
    p.add_argument("--models-dir", type=Path, help="models an admin may reload by id (needs R3D_ADMIN_KEYS)")
    p.add_argument("--backend", choices=("auto", "pytorch", "onnxruntime", "tensorrt"), help="default: auto")
    p.add_argument("--host", help="default: 127.0.0.1 (another host requires API keys or allow_unauthenticated)")
    p.add_argument("--port", type=int, help="default: 8000")
    p.add_argument("--config", type=Path, help="settings file (.yaml, .yml or .toml)")
    p.add_argument("--device", help="e.g. cpu, cuda, cuda:1")
    p.add_argument("--fp16", action="store_true", default=None, help="half precision (CUDA backends)")
    p.add_argument("--data-root", type=Path, help="batch jobs may score paths under this folder")
    p.add_argument("--jobs-dir", type=Path, help="where job uploads and results are kept")
    p.add_argument(
        "--session-store", metavar="URL",
        help="journal sessions in Redis (redis://HOST:PORT/DB) so they survive a restart; default memory:// "
        "(docs/scale-out.md)",
    )  # fmt: skip
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument(
        "--cluster", action="store_true",
        help="deploy on a running Ray cluster instead of serving here (python -m server.cluster --help: its flags)",
    )  # fmt: skip
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config, model_path=args.model, backend=args.backend, host=args.host, port=args.port,
        device=args.device, fp16=args.fp16, data_root=args.data_root, jobs_dir=args.jobs_dir, log_level=args.log_level,
        models_dir=args.models_dir, session_store=args.session_store,
    )  # fmt: skip


def model_problem(settings: Settings) -> str | None:
    """Why the settings' model cannot be served (missing, not a model), or None."""
    if settings.model_path is None:
        return "no model: pass a bundle folder or checkpoint, or set R3D_MODEL_PATH"
    if not settings.model_path.exists():
        return f"model {str(settings.model_path)!r} does not exist"
    try:
        resolve_model_path(settings.model_path)
    except ValueError as exc:
        return str(exc)
    return None


def checked_settings(args: argparse.Namespace, prog: str) -> Settings | None:
    """The settings of the command line, environment and file, with a model that can be served; otherwise None, with
    the reason on stderr after ``prog`` (the caller exits with status 2)."""
    try:
        settings = settings_from_args(args)
    except (ValueError, ValidationError) as exc:
        sys.stderr.write(f"{prog}: invalid settings: {exc}\n")
        return None
    if problem := model_problem(settings):
        sys.stderr.write(f"{prog}: {problem}\n")
        return None
    return settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
