"""The Serve application: ingress -> session tier -> FrameEncoder, with each tier's replicas, resources and routing.

``build_app(settings, options)`` binds the three deployments; ``python -m server.cluster`` (server/cluster/cli.py)
runs it on a Ray cluster, tests run it on a local one or in Serve's local testing mode.

The model is the session tier's and the FrameEncoder's ``user_config`` (ModelChoice). A reload (the ingress's
``POST /v1/model/reload``) runs the same application again with another one: every deployment keeps the version of
its first deployment (``Deployed.generation``), so Serve updates the two in place, calling each replica's
``reconfigure`` (its documented lightweight update), instead of replacing replicas (which would end the ingress's
WebSockets and move every session).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from ray import serve
from ray.serve import Application, Deployment
from ray.serve.config import AutoscalingConfig, RequestRouterConfig

from server.cluster.encoder import FrameEncoder, ModelChoice
from server.cluster.ingress import Ingress
from server.cluster.sessions import SessionTier, calls_per_replica
from server.settings import Settings

APP_NAME = "r3d"
# Ray's own consistent-hash router (2.60: ray.serve.experimental); the handle's session_id is its key
HASH_ROUTING: dict[str, Any] = {
    "request_router_class": "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter",
    "request_router_kwargs": {"num_virtual_nodes": 100, "num_fallback_replicas": 0},
}


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


def from_config(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: server.cluster.app:from_config`` in a Serve config file or a
    KubeRay RayService, deploy/kuberay/rayservice.yaml): the settings from the replica's environment (``R3D_*``, as
    r3d-serve reads them) and ``args`` naming ClusterOptions fields; ``encoder_replicas`` may be ``N`` or
    ``MIN..MAX``. Unknown or bad args raise ValueError naming them."""
    from server.cluster.cli import replica_range

    fields = set(ClusterOptions.__dataclass_fields__)
    given = dict(args)
    if "encoder_replicas" in given:
        given["encoder_min_replicas"], given["encoder_max_replicas"] = replica_range(str(given.pop("encoder_replicas")))
    if unknown := sorted(set(given) - fields):
        raise ValueError(
            f"unknown application args {unknown}; expected some of {sorted(fields | {'encoder_replicas'})}"
        )
    # Serve versions a config's deployments itself, and KubeRay re-applies its spec: a reload changes the
    # RayService's user_config of SessionTier and FrameEncoder (docs/scale-out.md), not the ingress's route
    return deployed_app(Deployed(Settings(), ClusterOptions(**given), generation=None))


def build_app(settings: Settings, options: ClusterOptions) -> Application:
    """The service as a Serve application: the ingress in front of the session tier, serving the settings' model
    under a new generation."""
    return deployed_app(Deployed(settings, options))


def deployed_app(deployed: Deployed) -> Application:
    """The application ``deployed`` describes (a reload runs it with another model)."""
    settings, options = deployed.settings, deployed.options
    ingress = _versioned(serve.deployment(name="Ingress")(Ingress), deployed).options(
        num_replicas=options.ingress_replicas,
        ray_actor_options={"num_cpus": options.ingress_cpus},
        max_ongoing_requests=options.session_replicas * calls_per_replica(settings),
    )
    return ingress.bind(deployed, session_tier(deployed))


def _versioned(deployment: Deployment, deployed: Deployed) -> Deployment:
    """The deployment under the application's generation. Ray 2.60 took ``version`` out of its public options
    ("Serve manages deployment versions internally") but still deploys a version it is given (ServeControllerClient
    .deploy_applications) and otherwise draws a random one per ``serve.run``; the internal flag sets it."""
    if deployed.generation is None:
        return deployment
    return deployment.options(version=deployed.generation, _internal=True)


def session_tier(deployed: Deployed) -> Application:
    """The session tier bound to its FrameEncoder deployment (the whole service but the ingress), both serving
    ``deployed.model`` (their user_config)."""
    settings, options = deployed.settings, deployed.options
    if problems := options.problems():
        raise ValueError("; ".join(problems))
    per_replica = calls_per_replica(settings)
    encoder = _versioned(serve.deployment(name="FrameEncoder")(FrameEncoder), deployed).options(
        ray_actor_options={"num_cpus": options.encoder_cpus, "num_gpus": options.encoder_gpus},
        autoscaling_config=AutoscalingConfig(
            min_replicas=options.encoder_min_replicas,
            max_replicas=options.encoder_max_replicas,
            target_ongoing_requests=options.encoder_target_queue,
        ),
        max_ongoing_requests=max(2 * settings.encoder_max_batch, per_replica),
        user_config=deployed.model.user_config(),
    )
    sessions = _versioned(serve.deployment(name="SessionTier")(SessionTier), deployed).options(
        num_replicas=options.session_replicas,
        ray_actor_options={"num_cpus": options.session_cpus},
        max_ongoing_requests=per_replica,
        # strict affinity (no fallback): a session's calls go to its owner only, or wait while Serve replaces it
        request_router_config=RequestRouterConfig(**HASH_ROUTING),
        user_config=deployed.model.user_config(),
    )
    return sessions.bind(settings, encoder.bind(settings))
