"""`r3d-data`: make, import, cache and inspect datasets in the common format.

Each verb lives in its own module, which registers its sub-command here through `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module path of each verb; each module defines register(subparsers) -> None
VERBS = {
    "synth": "training.synth.cli",
    "import": "training.importers.cli",
    "features": "training.features",
    "inspect": "training.inspect",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r3d-data",
        description="Generate the synthetic RGB-D world, import public datasets and camera recordings into the "
        "common dataset format, cache backbone features, and inspect datasets.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module_name in VERBS.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        logging.getLogger("r3d-data").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
