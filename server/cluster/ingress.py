"""The cluster's ingress: r3d-serve's app (its routers on the back end of server/cluster/service.py), served by Ray
Serve's HTTP proxy through ``@serve.ingress``. A replica holds only live connections and their outboxes
(server/cluster/connection.py); sessions live in the session tier.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from server.app import create_app
from server.cluster.connection import IngressHost
from server.cluster.options import Deployed
from server.cluster.service import ClusterService, session_reports


@serve.ingress()
class Ingress:
    """The ingress deployment: its FastAPI app is built in the replica (``__serve_build_asgi_app__``, after the
    constructor). An app built at import and handed to ``@serve.ingress(app)`` is pickled with the class, and with
    Ray 2.60 and FastAPI 0.165 its WebSocket route no longer matched after that (the handshake failed with 403)."""

    def __init__(
        self, deployed: Deployed, sessions: DeploymentHandle, redeploy: Callable[[Deployed], Application]
    ) -> None:
        self.deployed = deployed  # what the application was deployed with: a reload deploys it again,
        self.redeploy = redeploy  # built by this function (server.cluster.app.deployed_app, which binds this class)
        self.settings = deployed.settings
        self.sessions = sessions
        self.host = IngressHost()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """r3d-serve's own app (server.app.create_app: every router, error handler and the OpenAPI document) on the
        cluster's back end (server.cluster.service.ClusterService, started by the app's lifespan)."""
        return create_app(
            self.settings, metrics=self.host.metrics, title="R3D anticipation service (Ray Serve cluster)",
            start=lambda settings, metrics: ClusterService.start(
                self.deployed, self.host, self.sessions, self.redeploy
            ),
        )  # fmt: skip

    async def stage_samples(self) -> list[dict[str, list[float]]]:
        """The cluster path's stage durations (server/cluster/profile.py) of this replica and of every session
        replica, which also holds the FrameEncoder's stages of its frames (benchmarks.cluster_scale reads them)."""
        reports = await session_reports(self.sessions, serve.get_replica_context().app_name)
        return [self.host.stages.samples(), *(r.stages for r in reports)]
