"""`r3d-train`: train R3D from a recipe, with command-line overrides; `--resume` continues an interrupted run.

r3d-train --config training/configs/service.yaml --data.dataset data/synth --run.out runs/service
r3d-train --config training/configs/paper.yaml --set data.dataset=data/utkinect --set run.seed=10
r3d-train --resume --run.out runs/service            # the run folder's config.yaml is used
torchrun --nproc_per_node 2 -m training.train_cli --config ...   # DistributedDataParallel
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from model import R3DError
from training.config import add_config_flags, flag_overrides, load_config
from training.train import train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r3d-train",
        description="Train R3D on cached backbone features of a dataset in the common format. Values come from the "
        "defaults, then --config, then the --SECTION.FIELD flags, then --set items.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--config", type=Path, default=None, help="recipe file (.yaml or .toml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=3e-4")
    parser.add_argument("--resume", action="store_true", help="continue the run in run.out from its last epoch")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    add_config_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=args.log_level.upper() if rank == 0 else "WARNING",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("r3d-train")
    try:
        overrides = flag_overrides(args)
        config = args.config
        if args.resume and config is None:
            out = Path(overrides.get("run.out") or _set_value(args.set, "run.out") or "runs/r3d")
            config = out / "config.yaml"
            if not config.is_file():
                raise FileNotFoundError(f"--resume: {config} does not exist; expected the folder of an earlier run")
        cfg = load_config(config, overrides, args.set)
        result = train(cfg, resume=args.resume)
    except (R3DError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    if rank == 0:
        last = result.history[-1] if result.history else {}
        sys.stdout.write(json.dumps({"out": str(result.out), "epochs": result.epochs, "last": last}, indent=2) + "\n")
    return 0


def _set_value(items: list[str], key: str) -> str | None:
    for item in reversed(items):
        k, _, v = item.partition("=")
        if k.strip() == key:
            return v.strip()
    return None


if __name__ == "__main__":
    sys.exit(main())
