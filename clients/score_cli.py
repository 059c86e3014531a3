"""r3d-score SOURCE: batch-score a recording (or a dataset) and write JSON / CSV results and timeline PNGs.

    r3d-score recording.db3 --server http://localhost:8000 --out results/     # a batch-scoring job on the server
    r3d-score data/synth --server-path --server http://...                    # a path under the server's data root
    r3d-score recording.db3 --bundle models/default --out results/            # locally, no server (needs torch)

Outputs in --out: results.json (the server's JobResults: per sequence every frame with its ground truth and the
current action, and every anticipation), frames.csv, ticks.csv, and timeline.png (timeline-<sequence>.png when there
are several) showing ground truth where known, the current action and the anticipated actions.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from clients.sdk import Client, ClientError
from clients.timeline import entry_from_prediction, plot_timeline_png
from server.protocol import JobPublic, JobResults, JobState, SequenceResult

__all__ = ["ScoreArgs", "main", "run_score", "write_outputs"]

logger = logging.getLogger(__name__)


@dataclass
class ScoreArgs:
    """Options of r3d-score (the CLI is built from these fields)."""

    source: str
    server: str = "http://127.0.0.1:8000"  # base URL of the R3D service
    token: str | None = None  # API key (default: the R3D_API_KEY environment variable)
    server_path: bool = False  # SOURCE is a path under the server's data root instead of a local file to upload
    bundle: Path | None = None  # score locally with this export bundle or checkpoint instead of a server
    backend: str = "auto"  # local scoring: auto, pytorch, onnxruntime or tensorrt
    out: Path | None = None  # output folder (default: ./r3d-score-<source name>)
    tick_hz: float | None = None  # anticipations per second of recording time (default: one per model frame)
    sequences: list[str] | None = None  # dataset sequences to score (default: all)
    progress: bool = True  # show a progress bar


def _upload_path(source: Path, tmp: Path) -> Path:
    """A file uploads as is; a folder (dataset or sequence) is zipped first."""
    if source.is_file():
        return source
    if source.is_dir():
        return Path(shutil.make_archive(str(tmp / source.name), "zip", root_dir=source))
    raise ValueError(f"expected a recording file or a dataset folder, got {str(source)!r} (does not exist)")


def _score_on_server(args: ScoreArgs) -> JobResults:
    from tqdm import tqdm

    token = args.token or os.environ.get("R3D_API_KEY")
    with Client(args.server, token=token) as client, tempfile.TemporaryDirectory(prefix="r3d-score-") as tmp:
        if args.server_path:
            job = client.submit_job(args.source, upload=False, sequences=args.sequences, tick_hz=args.tick_hz)
        else:
            upload = _upload_path(Path(args.source), Path(tmp))
            job = client.submit_job(upload, upload=True, tick_hz=args.tick_hz)
        bar = tqdm(total=100, desc=f"job {job.id}", unit="%", disable=not args.progress, file=sys.stderr)

        def progress(j: JobPublic) -> None:
            bar.set_postfix_str(f"{j.state.value}, {sum(s.frames_done for s in j.sequences)} frames")
            bar.update(round(j.progress * 100) - bar.n)

        try:
            final = client.wait_job(job.id, on_progress=progress)
        finally:
            bar.close()
        if final.state is not JobState.SUCCEEDED:
            failed = [f"{s.id}: {s.error}" for s in final.sequences if s.error]
            raise ClientError(f"job {final.id} ended {final.state.value}: {final.error or '; '.join(failed)}")
        return client.job_results(job.id)


def _score_locally(args: ScoreArgs) -> JobResults:
    """Score without a server: lazily imports the scoring code (torch, export) that the server's jobs run."""
    from clients.local_score import score_locally  # imports torch: only on this path

    assert args.bundle is not None
    return score_locally(args.source, args.bundle, backend=args.backend, tick_hz=args.tick_hz,
                         sequences=args.sequences, progress=args.progress)  # fmt: skip


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue().encode()


def _frame_rows(seq: SequenceResult) -> list[dict[str, Any]]:
    return [{"sequence": seq.id, **f.model_dump(mode="json")} for f in seq.frames]


def _tick_rows(seq: SequenceResult) -> list[dict[str, Any]]:
    rows = []
    for t in seq.ticks:
        nxt = t.future[0] if t.future else None
        rows.append({
            "sequence": seq.id, "frame_index": t.frame_index, "frame_ts": t.frame_ts, "current": t.current.label,
            "current_probability": round(t.current.probability, 6), "next": nxt.label if nxt else "",
            "next_start_s": round(nxt.start_s, 4) if nxt else "", "next_duration_s": round(nxt.duration_s, 4) if nxt
            else "", "future": json.dumps([[f.label, round(f.start_s, 3), round(f.duration_s, 3),
                                            round(f.probability, 4)] for f in t.future]),
        })  # fmt: skip
    return rows


def plot_sequence(seq: SequenceResult, path: Path, title: str) -> Path | None:
    """Timeline PNG of one scored sequence; None when it has no anticipation."""
    if not seq.ticks:
        return None
    t0 = seq.frames[0].ts if seq.frames else seq.ticks[0].frame_ts
    entries = [entry_from_prediction(t.current, t.future, t.frame_ts - t0) for t in seq.ticks]
    truth = None
    if any(f.label is not None for f in seq.frames):
        truth = ([f.ts - t0 for f in seq.frames], [f.label for f in seq.frames])
    return plot_timeline_png(entries, path, truth=truth, title=title)


def write_outputs(results: JobResults, out: Path) -> dict[str, Any]:
    """results.json, frames.csv, ticks.csv and the timeline PNG(s) in `out`; returns what was written."""
    from rgbd.files import write_bytes_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "results.json", results.model_dump_json(indent=1).encode())
    write_bytes_atomic(out / "frames.csv", _csv([r for s in results.sequences for r in _frame_rows(s)]))
    write_bytes_atomic(out / "ticks.csv", _csv([r for s in results.sequences for r in _tick_rows(s)]))
    pngs = []
    for seq in results.sequences:
        name = "timeline.png" if len(results.sequences) == 1 else f"timeline-{seq.id}.png"
        png = plot_sequence(seq, out / name, f"{results.job.source} / {seq.id} ({results.model.model_id})")
        if png is not None:
            pngs.append(str(png))
    return {"results": str(out / "results.json"), "frames_csv": str(out / "frames.csv"),
            "ticks_csv": str(out / "ticks.csv"), "png": pngs}  # fmt: skip


def _accuracy(seq: SequenceResult) -> float | None:
    labelled = [f for f in seq.frames if f.label is not None and f.action_label is not None]
    return sum(f.label == f.action_label for f in labelled) / len(labelled) if labelled else None


def run_score(args: ScoreArgs, out: IO[str] | None = None) -> dict[str, Any]:
    """Score SOURCE on the server (or locally with --bundle) and write the outputs; returns what was written."""
    out = out or sys.stdout
    results = _score_locally(args) if args.bundle is not None else _score_on_server(args)
    folder = args.out or Path(f"r3d-score-{Path(args.source).name.split('.')[0] or 'results'}")
    written = write_outputs(results, folder)
    for seq in results.sequences:
        acc = _accuracy(seq)
        out.write(
            f"{seq.id}: {len(seq.frames)} frames, {len(seq.ticks)} anticipations"
            + (f", current-action accuracy {acc:.1%} against ground truth" if acc is not None else "")
            + "\n"
        )
    out.write(f"model {results.model.model_id} ({results.model.backend}); outputs in {folder}/\n")
    for key, value in written.items():
        out.write(f"  {key}: {', '.join(value) if isinstance(value, list) else value}\n")
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r3d-score", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", help="recording (.db3/.bag/.mkv), dataset or sequence folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", default=ScoreArgs.server, help="service base URL (default %(default)s)")
    where.add_argument("--bundle", type=Path, help="score locally with this export bundle or checkpoint (torch)")
    p.add_argument("--server-path", action="store_true", help="SOURCE is a path under the server's data root")
    p.add_argument("--token", help="API key (default: $R3D_API_KEY)")
    p.add_argument("--backend", default="auto", help="local scoring backend (default %(default)s)")
    p.add_argument("--out", type=Path, help="output folder (default ./r3d-score-<source name>)")
    p.add_argument("--tick-hz", type=float, help="anticipations per second (default: one per model frame)")
    p.add_argument("--sequence", dest="sequences", action="append", help="dataset sequence to score (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    args = ScoreArgs(**{k: v for k, v in vars(ns).items() if k != "verbose"})
    try:
        run_score(args)
    except (ClientError, ValueError, OSError) as exc:
        sys.stderr.write(f"r3d-score: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
