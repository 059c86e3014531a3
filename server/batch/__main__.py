"""python -m server.batch SOURCE --bundle MODEL --out DIR: batch-score a recording or dataset on this machine, with
the code and results writer of the server's batch jobs (results.json, frames.csv, ticks.csv; docs/batch_scoring.md).

    python -m server.batch recording.db3 --bundle models/default --out results/
    python -m server.batch data/synth --bundle models/default --sequence seq0 --tick-hz 5 --out results/

``r3d-score --bundle`` runs this command (same interpreter, same options) and then draws the timelines. Exit status:
0 done, 1 bad input (the message says what was wrong), 2 bad options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server.batch.local import score_locally
from server.batch.results import write_results
from server.errors import ServerError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server.batch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, help="recording (.db3/.bag/.mkv), dataset or sequence folder, or an archive")
    p.add_argument("--bundle", type=Path, required=True, help="export bundle folder or checkpoint file")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--backend", default="auto", help="auto, pytorch, onnxruntime or tensorrt (default %(default)s)")
    p.add_argument("--tick-hz", type=float, help="anticipations per second of recording time (default: one per frame)")
    p.add_argument("--sequence", dest="sequences", action="append", help="dataset sequence to score (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        results = score_locally(args.source, args.bundle, backend=args.backend, tick_hz=args.tick_hz,
                                sequences=args.sequences, progress=args.progress)  # fmt: skip
        written = write_results(results, args.out)
    except ServerError as exc:  # unsupported source, unreadable model: the message says what was expected
        sys.stderr.write(f"r3d-score: {exc.message}\n")
        return 1
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"r3d-score: {exc}\n")
        return 1
    sys.stdout.write(f"scored {len(results.sequences)} sequence(s); wrote {', '.join(map(str, written.values()))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
