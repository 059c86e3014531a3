"""Server settings: pydantic-settings with the ``R3D_`` environment prefix, a YAML/TOML file and CLI overrides.

Precedence (highest first): explicit arguments (the CLI) > environment ``R3D_*`` > the ``--config`` file > defaults.
Built once in ``main()`` (or by a test) and passed to ``create_app``; the environment is read nowhere else.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from server.session_store import check_store_url

MIB = 1024 * 1024
# API keys that look like placeholders from a tutorial or a compose file are refused
DEFAULT_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "password", "apikey", "api-key", "r3d"})
MIN_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Everything the service can be configured with (``R3D_<NAME>`` in the environment)."""

    model_config = SettingsConfigDict(env_prefix="R3D_", extra="forbid", validate_default=True)

    # model
    model_path: Path | None = Field(
        None, description="export bundle folder, checkpoint (.safetensors), or a folder holding one checkpoint"
    )
    models_dir: Path | None = Field(
        None,
        description="the models an admin may reload by id (each a bundle folder, a checkpoint, or a folder holding "
        "one); reload never reads anything else",
    )
    backend: str = Field("auto", description="auto, pytorch, onnxruntime or tensorrt")
    device: str | None = Field(None, description="e.g. cpu, cuda, cuda:1 (default: the backend's choice)")
    fp16: bool = False
    inference_threads: int | None = Field(None, ge=1, le=256, description="intra-op threads of the backend")
    # network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # auth
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, description="comma-separated")
    allow_unauthenticated: bool = Field(False, description="serve without API keys on a non-loopback host")
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated; needed to reload the model (model reload is off without)"
    )
    metrics_public: bool = Field(True, description="serve /metrics without an API key")
    # limits
    max_sessions: int = Field(32, ge=1)
    max_message_bytes: int = Field(8 * MIB, ge=1024, description="larger WebSocket messages / frame bodies refused")
    max_upload_bytes: int = Field(4096 * MIB, ge=1024)
    job_disk_quota_bytes: int = Field(
        16384 * MIB, ge=1024, description="a job's upload plus its extracted files (checked before extraction)"
    )
    max_archive_members: int = Field(100_000, ge=1, description="files and folders in an uploaded archive")
    max_sessions_per_client: int = Field(16, ge=1, description="sessions one client address may hold at once")
    session_queue_size: int = Field(4, ge=1, le=1024, description="bounded input queue per session")
    max_timestamp_jump_s: float = Field(3600.0, gt=0)
    # scheduling
    encoder_max_batch: int = Field(32, ge=1, le=1024, description="frames per frame-encoder batch across sessions")
    encoder_max_delay_ms: float = Field(5.0, ge=0, le=1000, description="wait this long to fill a batch")
    anticipator_max_batch: int = Field(
        64, ge=1, le=1024, description="ticks per anticipator batch across sessions (1: one call per tick)"
    )
    default_tick_hz: float = Field(5.0, gt=0, le=120, description="predictions per second when the hello has none")
    decode_threads: int = Field(2, ge=1, le=64)
    health_interval_s: float = Field(1.0, gt=0, description="modality-health (effective rank) period, stream time")
    # session lifetime
    hello_timeout_s: float = Field(10.0, gt=0)
    reconnect_grace_s: float = Field(30.0, ge=0, description="a detached session keeps its window this long")
    unstarted_grace_s: float = Field(
        3.0, ge=0, description="a detached session that never received a frame is closed after this long"
    )
    session_idle_timeout_s: float = Field(300.0, gt=0, description="a created session without frames is closed")
    # durable sessions (docs/scale-out.md)
    session_store: str = Field(
        "memory://",
        description="where sessions are journaled: memory:// (in this process, lost with it) or "
        "redis://HOST:PORT/DB (survive a restart of the server; also rediss://, unix://PATH)",
    )
    session_journal_frames: int = Field(
        1, ge=1, le=64, description="journal a session every k encoded frames: a crash loses fewer than k of them"
    )
    session_store_ttl_s: float = Field(
        3600.0, gt=0, description="a journaled session nobody writes (nor resumes) is forgotten after this long"
    )
    # batch scoring
    data_root: Path | None = Field(None, description="batch jobs may name paths under this folder only")
    jobs_dir: Path | None = Field(None, description="job uploads and results (default: a temporary folder)")
    job_workers: int = Field(2, ge=1, le=64, description="recordings scored in parallel")
    job_retention_s: float = Field(
        7 * 86400.0, gt=0, description="finished jobs and their results are deleted this long after they end"
    )
    # lifecycle
    shutdown_grace_s: float = Field(10.0, ge=0, description="running jobs get this long to finish at shutdown")
    log_level: str = "info"

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [k.strip() for k in text.split(",") if k.strip()]
        return value

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _refuse_weak_keys(cls, keys: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        kind = "admin key" if info.field_name == "admin_keys" else "api key"
        for i, key in enumerate(keys):
            raw = key.get_secret_value()
            if raw.lower() in DEFAULT_SECRETS or len(raw) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"{kind} #{i + 1} is a placeholder or shorter than {MIN_KEY_LENGTH} characters; "
                    "expected a random secret (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
                )
        return keys

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        known = ("auto", "pytorch", "onnxruntime", "tensorrt")
        if value not in known:
            raise ValueError(f"expected a backend in {known}, got {value!r}")
        return value

    @field_validator("session_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        return check_store_url(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug")
        if value.lower() not in levels:
            raise ValueError(f"expected a log level in {levels}, got {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _refuse_open_exposure(self) -> Settings:
        if not self.api_keys and not self.allow_unauthenticated and not _is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines but no api_keys are set; "
                "set R3D_API_KEYS, or R3D_ALLOW_UNAUTHENTICATED=true to serve without authentication"
            )
        streaming = {k.get_secret_value() for k in self.api_keys}
        if any(k.get_secret_value() in streaming for k in self.admin_keys):
            raise ValueError("an admin key is also an api key; expected admin keys that stream clients do not hold")
        self._refuse_overlapping_folders()
        return self

    def _refuse_overlapping_folders(self) -> None:
        """Reload reads models_dir only; uploads live in jobs_dir: neither may contain the other (nor data_root)."""
        if self.models_dir is None:
            return
        models = self.models_dir.resolve()
        for name in ("jobs_dir", "data_root"):
            other: Path | None = getattr(self, name)
            if other is None:
                continue
            other = other.resolve()
            if other.is_relative_to(models) or models.is_relative_to(other):
                raise ValueError(
                    f"models_dir and {name} overlap ({models.name!r}, {other.name!r}); expected separate folders so "
                    "that no uploaded or scored file can ever be loaded as a model"
                )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def transport_max_bytes(self) -> int:
        """The WebSocket transport's hard limit: larger messages close the connection (code 1009)."""
        return 4 * self.max_message_bytes


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _FileSource(PydanticBaseSettingsSource):
    """Settings read from a YAML or TOML file; unknown keys fail with the rest of the validation."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A settings file (.yaml, .yml or .toml) -> its mapping of setting names to values."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read settings file {path}: {exc.strerror}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ValueError(f"expected a settings file ending in .yaml, .yml or .toml, got {path.name!r}")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"settings file {path} is not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"settings file {path}: expected a mapping of setting names, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults < ``config_file`` < environment < ``overrides`` (None values are ignored)."""
    values = read_settings_file(config_file) if config_file else {}
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        known = sorted(Settings.model_fields)
        raise ValueError(f"settings file {config_file}: unknown settings {unknown}; expected names from {known}")

    class ServerSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, _FileSource(settings_cls, values)

    return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
