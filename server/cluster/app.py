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

from typing import Any

from ray import serve
from ray.serve import Application, Deployment
from ray.serve.config import AutoscalingConfig, RequestRouterConfig

from server.cluster.encoder import FrameEncoder
from server.cluster.ingress import Ingress
from server.cluster.options import ClusterOptions, Deployed, replica_range
from server.cluster.sessions import SessionTier, calls_per_replica
from server.settings import Settings

APP_NAME = "r3d"
# Ray's own consistent-hash router (2.60: ray.serve.experimental); the handle's session_id is its key
HASH_ROUTING: dict[str, Any] = {
    "request_router_class": "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter",
    "request_router_kwargs": {"num_virtual_nodes": 100, "num_fallback_replicas": 0},
}


def from_config(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: server.cluster.app:from_config`` in a Serve config file or a
    KubeRay RayService, deploy/kuberay/rayservice.yaml): the settings from the replica's environment (``R3D_*``, as
    r3d-serve reads them) and ``args`` naming ClusterOptions fields; ``encoder_replicas`` may be ``N`` or
    ``MIN..MAX``. Unknown or bad args raise ValueError naming them."""
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
    return ingress.bind(deployed, session_tier(deployed), deployed_app)


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
