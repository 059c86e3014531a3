"""``r3d-serve``: the anticipation service (FastAPI under uvicorn).

    r3d-serve BUNDLE_OR_CHECKPOINT_OR_FOLDER [--backend auto|pytorch|onnxruntime|tensorrt] [--host H] [--port P]
              [--config settings.yaml|.toml] [--device D] [--fp16] [--data-root DIR] [--jobs-dir DIR]
              [--session-store redis://HOST:PORT/DB]

The flags and where else settings come from: server/service_flags.py. ``--cluster`` deploys the same service on a
running Ray cluster instead (server/cluster/cli.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from server.app import create_app
from server.service_flags import build_parser, checked_settings, configure_logging
from server.serving import ServiceServer, uvicorn_config


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if "--cluster" in given:  # the same service on a running Ray cluster (its own flags: python -m server.cluster)
        from server.cluster.cli import main as cluster_main

        return cluster_main([a for a in given if a != "--cluster"])
    settings = checked_settings(build_parser().parse_args(given), "r3d-serve")
    if settings is None:
        return 2
    configure_logging(settings)
    server = ServiceServer(uvicorn_config(create_app(settings), settings))
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
