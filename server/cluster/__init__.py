"""The service on a Ray Serve cluster (docs/scale-out.md): the same protocol, sessions spread over replicas.

Ingress          the WebSocket protocol under ``@serve.ingress``; holds connections only (ingress.py, their calls
                 to the session tier: connection.py; its REST back end: service.py)
SessionTier      replicas that own sessions (registry, windows, Anticipator), routed by session id (sessions.py)
FrameEncoder     stateless, ``@serve.batch`` across sessions, autoscaled on queued requests (encoder.py)
build_app        the three deployments bound into one application (app.py), as ClusterOptions and ModelChoice
                 say (options.py, without Ray); the command: cli.py

Importing the deployments imports Ray (the ``cluster`` extra); ``server.cluster.cli`` imports it only to deploy.
"""

__all__: list[str] = []
