"""What a deployment of the service on a cluster is made of, without Ray (the command checks it before connecting):
``ClusterOptions`` (where the tiers run: the command's flags), ``ModelChoice`` (the model the session tier and the
FrameEncoder serve) and ``Deployed`` (both with the settings: what a reload deploys again, server/cluster/app.py)."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from server.engine import Engine
from server.model_store import model_by_id
from server.runtime import open_engine
from server.settings import Settings

__all__ = ["ClusterOptions", "Deployed", "ModelChoice", "replica_range"]


def replica_range(text: str) -> tuple[int, int]:
    """'N' or 'MIN..MAX' -> (min, max); ValueError saying what was expected."""
    low, sep, high = text.partition("..")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise ValueError(f"--encoder-replicas: expected N or MIN..MAX (e.g. 1..4), got {text!r}") from None
    return lo, hi


@dataclass(frozen=True)
class ClusterOptions:
    """How the service spreads over the cluster (the command's flags; docs/scale-out.md)."""

    session_replicas: int = 2  # replicas of the session tier; sessions are spread over them by their id
    session_cpus: float = 1.0  # CPUs Ray reserves per session replica (the Anticipator runs there)
    encoder_min_replicas: int = 1
    encoder_max_replicas: int = 1
    encoder_target_queue: float = 8.0  # autoscaling: requests (a session call's frames each) per FrameEncoder replica
    encoder_cpus: float = 1.0
    encoder_gpus: float = 0.0
    ingress_replicas: int = 1
    ingress_cpus: float = 0.0  # the ingress only relays: it holds sockets, not models

    def problems(self) -> list[str]:
        out = []
        if self.session_replicas < 1:
            out.append(f"--session-replicas: expected at least 1, got {self.session_replicas}")
        if not 1 <= self.encoder_min_replicas <= self.encoder_max_replicas:
            out.append(
                "--encoder-replicas: expected 1 <= MIN <= MAX, got "
                f"{self.encoder_min_replicas}..{self.encoder_max_replicas}"
            )
        if self.ingress_replicas < 1:
            out.append(f"--ingress-replicas: expected at least 1, got {self.ingress_replicas}")
        for name in ("session_cpus", "encoder_cpus", "encoder_gpus", "ingress_cpus"):
            if getattr(self, name) < 0:
                out.append(f"--{name.replace('_', '-')}: expected 0 or more, got {getattr(self, name)}")
        return out


@dataclass(frozen=True)
class ModelChoice:
    """The model the session tier and the FrameEncoder serve: both deployments' ``user_config``. Serve hands it to
    every replica's ``reconfigure`` (after the constructor, and in place, without a restart, when a reload deploys
    another one), and to every replica it starts later (a restart, autoscaling)."""

    model: str | None = None  # an id of models_dir (as POST /v1/model/reload names it); None: the settings' model
    backend: str | None = None  # None: the settings' backend
    token: str = ""  # new for every reload: reloading the same files is another config, so Serve reconfigures again

    def user_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_user_config(cls, config: dict[str, Any]) -> ModelChoice:
        return cls(**config)

    def source(self, settings: Settings) -> Path:
        """The files it names: ModelNotFound (listing what models_dir has) for an unknown id."""
        if self.model is None:
            assert settings.model_path is not None  # checked by the command before deploying
            return settings.model_path
        return model_by_id(settings.models_dir, self.model)

    def load(self, settings: Settings) -> Engine:
        """Load and warm up the model (ModelError naming the id when it cannot be loaded)."""
        source = self.source(settings)
        return open_engine(source, self.backend or settings.backend, settings, self.model or source.name)


@dataclass(frozen=True)
class Deployed:
    """What the application was deployed with; the ingress deploys it again with another model to reload."""

    settings: Settings
    options: ClusterOptions
    model: ModelChoice = field(default_factory=ModelChoice)
    # every deployment's version, fixed for the application's life: a new one (another `r3d-serve --cluster`)
    # replaces the replicas as Serve always does; the same one with another user_config reconfigures them
    generation: str | None = field(default_factory=lambda: secrets.token_hex(8))

    def with_model(self, model: ModelChoice) -> Deployed:
        return replace(self, model=model)
