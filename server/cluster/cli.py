"""``python -m server.cluster`` (or ``r3d-serve --cluster``): deploy the service on a running Ray cluster.

    ray start --head                                   # or a KubeRay cluster (deploy/kuberay/rayservice.yaml)
    python -m server.cluster MODEL --session-store redis://HOST:6379/0 [--session-replicas 2]
           [--encoder-replicas 1..4] [--encoder-gpus 1] [--host 0.0.0.0 --port 8000] [--address auto]

Takes every r3d-serve setting (flags, R3D_* environment, --config file) plus where the tiers run. Serve's HTTP
proxy then serves the same WebSocket protocol at ``ws://HOST:PORT/v1/stream``; the command returns once the
application is running (``--wait`` keeps it in the foreground and deletes the application on Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from server.cluster.options import ClusterOptions, replica_range
from server.service_flags import build_parser, checked_settings, configure_logging

logger = logging.getLogger(__name__)
PROG = "r3d-serve --cluster"


def cluster_parser() -> argparse.ArgumentParser:
    p = build_parser()
    p.prog = "python -m server.cluster"
    p.description = (
        "Deploy the R3D service on a running Ray cluster (Ray Serve): an ingress speaking the WebSocket protocol, a "
        "session tier routed by session id, a batched FrameEncoder tier; sessions journaled in the session store "
        "(docs/scale-out.md)."
    )
    g = p.add_argument_group("cluster")
    g.add_argument("--address", default="auto", help="Ray cluster address (default: auto, the local cluster)")
    g.add_argument("--session-replicas", type=int, default=2, help="session-tier replicas (default 2)")
    g.add_argument("--session-cpus", type=float, default=1.0, help="CPUs reserved per session replica (default 1)")
    g.add_argument(
        "--encoder-replicas", default="1", metavar="N|MIN..MAX",
        help="FrameEncoder replicas, or an autoscaling range on queued requests (default 1)",
    )  # fmt: skip
    g.add_argument("--encoder-queue", type=float, default=8.0, help="autoscaling target: requests per encoder replica")
    g.add_argument("--encoder-cpus", type=float, default=1.0, help="CPUs reserved per FrameEncoder replica")
    g.add_argument("--encoder-gpus", type=float, default=0.0, help="GPUs per FrameEncoder replica (e.g. 1, 0.5)")
    g.add_argument("--ingress-replicas", type=int, default=1, help="ingress replicas (default 1)")
    g.add_argument("--wait", action="store_true", help="stay in the foreground; Ctrl-C deletes the application")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = cluster_parser().parse_args(argv)
    settings = checked_settings(args, PROG)
    if settings is None:
        return 2
    try:
        lo, hi = replica_range(args.encoder_replicas)
    except ValueError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    from server.cluster.app import APP_NAME, build_app  # imports ray: only when deploying

    options = ClusterOptions(
        session_replicas=args.session_replicas, session_cpus=args.session_cpus, encoder_min_replicas=lo,
        encoder_max_replicas=hi, encoder_target_queue=args.encoder_queue, encoder_cpus=args.encoder_cpus,
        encoder_gpus=args.encoder_gpus, ingress_replicas=args.ingress_replicas,
    )  # fmt: skip
    if problems := options.problems():
        sys.stderr.write(f"{PROG}: " + "; ".join(problems) + "\n")
        return 2
    configure_logging(settings)
    import ray
    from ray import serve

    ray.init(address=args.address, logging_level=logging.getLevelNamesMapping()[settings.log_level.upper()])
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings, options), name=APP_NAME, route_prefix="/")
    logger.info("serving on the Ray cluster: ws://%s:%d/v1/stream", settings.host, settings.port)
    if not args.wait:
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(APP_NAME)
    return 0
