"""r3d-score SOURCE: batch-score a recording (or a dataset) and write JSON / CSV results and timeline PNGs.

    r3d-score recording.db3 --server http://localhost:8000 --out results/     # a batch-scoring job on the server
    r3d-score data/synth --server-path --server http://...                    # a path under the server's data root
    r3d-score recording.db3 --bundle models/default --out results/            # locally, no server (needs torch)
    r3d-score capture/ --fps 30 --depth-scale 0.0001                          # rgb/ + depth/ image folders

A folder of colour + 16-bit depth images (or a colour video with depth PNGs) has no frame rate or depth scale of its
own: give them with --fps (default 30) and --depth-scale (metres per unit, default 0.001). r3d-score reads it, warns
when the depth scale puts the scene at an implausible distance, and scores it as a one-sequence dataset.

Outputs in --out: results.json (the server's JobResults: per sequence every frame with its ground truth and the
current action, and every anticipation), frames.csv and ticks.csv (columns: docs/batch_scoring.md), and timeline.png
(timeline-<sequence>.png when there are several) showing ground truth where known, the current action and the
anticipated actions. Both ways the three result files are written by the server's batch code: a server job's are
downloaded as they are; --bundle runs `python -m server.batch` (the same interpreter, the same options), which scores
with the code of server jobs in a process of its own (this camera-side package never imports torch or the server).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import clients
from clients.folders import as_dataset, needs_client_reading
from clients.sdk import Client, ClientError
from clients.timeline import entry_from_prediction, plot_timeline_png
from rgbd.base import SourceError
from rgbd.files import write_bytes_atomic
from server.protocol import JobPublic, JobResults, JobState, SequenceResult

__all__ = ["LocalScoringFailed", "ScoreArgs", "main", "run_score", "write_timelines"]

logger = logging.getLogger(__name__)


@dataclass
class ScoreArgs:
    """Options of r3d-score. build_parser() declares one flag per field by hand (groups, choices and paired flags
    read better that way); tests/clients/test_cli_args.py keeps the flags and these defaults in step."""

    source: str
    server: str = "http://127.0.0.1:8000"  # base URL of the R3D service
    token: str | None = None  # API key (default: the R3D_API_KEY environment variable)
    server_path: bool = False  # SOURCE is a path under the server's data root instead of a local file to upload
    bundle: Path | None = None  # score locally with this export bundle or checkpoint instead of a server
    backend: str = "auto"  # local scoring: auto, pytorch, onnxruntime or tensorrt
    out: Path | None = None  # output folder (default: ./r3d-score-<source name>)
    tick_hz: float | None = None  # anticipations per second of recording time (default: one per model frame)
    sequences: list[str] | None = None  # dataset sequences to score (default: all)
    fps: float | None = None  # frame rate of an image folder or video with depth PNGs (default: the video's, else 30)
    depth_scale: float | None = None  # metres per depth unit of an image folder or depth PNGs (default 0.001)
    progress: bool = True  # show a progress bar


def _upload_path(source: Path, tmp: Path) -> Path:
    """A file uploads as is; a folder (dataset or sequence) is zipped first."""
    if source.is_file():
        return source
    if source.is_dir():
        return Path(shutil.make_archive(str(tmp / source.name), "zip", root_dir=source))
    raise ValueError(f"expected a recording file or a dataset folder, got {str(source)!r} (does not exist)")


def _readable_source(args: ScoreArgs, work_dir: Path) -> str:
    """SOURCE as a batch job reads it: as given, or (image folders, colour videos with depth PNGs) read here with
    --fps / --depth-scale and written as a one-sequence dataset under `work_dir`."""
    path = Path(args.source)
    read_here = not args.server_path and needs_client_reading(path)
    given = (("--fps", args.fps), ("--depth-scale", args.depth_scale))
    flags = {flag: value for flag, value in given if value is not None}
    problems = [f"{flag} must be > 0, got {value!r}" for flag, value in flags.items() if not value > 0]
    if flags and not read_here:
        what = "a path on the server" if args.server_path else "a dataset or recording, which records its own"
        problems.append(
            f"{' and '.join(flags)} apply to colour + depth image folders and colour videos with depth PNGs; "
            f"{args.source!r} is {what}" + ("" if args.server_path else " frame rate and depth scale")
        )
    if problems:
        raise ValueError("; ".join(problems))
    if not read_here:
        return args.source
    return str(as_dataset(path, work_dir, fps=args.fps, depth_scale=args.depth_scale, progress=args.progress))


class LocalScoringFailed(Exception):
    """`python -m server.batch` ended with an error; it has already said what was wrong on stderr."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"local scoring exited with status {returncode}")
        self.returncode = returncode


def _score_on_server(args: ScoreArgs, folder: Path) -> JobResults:
    """A job on the server; its results.json, frames.csv and ticks.csv are saved in `folder` as the server wrote
    them."""
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
        results = client.job_results(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(folder / "results.json", results.model_dump_json().encode())
        for table in ("frames", "ticks"):
            write_bytes_atomic(folder / f"{table}.csv", client.job_results_csv(job.id, table))
    return results


def _batch_command(args: ScoreArgs, folder: Path) -> list[str]:
    """`python -m server.batch` with this run's options (that command takes the same names)."""
    assert args.bundle is not None
    cmd = [sys.executable, "-m", "server.batch", args.source, "--bundle", str(args.bundle), "--out", str(folder),
           "--backend", args.backend]  # fmt: skip
    if args.tick_hz is not None:
        cmd += ["--tick-hz", repr(args.tick_hz)]
    for seq in args.sequences or []:
        cmd += ["--sequence", seq]
    if not args.progress:
        cmd.append("--no-progress")
    return cmd


def _score_locally(args: ScoreArgs, folder: Path) -> JobResults:
    """Score on this machine by running the server's batch code in a child process (its progress and errors come
    through on this terminal); it writes the three result files into `folder`."""
    if importlib.util.find_spec("torch") is None:
        raise ValueError(
            "--bundle scores on this machine and needs the model runtime (torch), which is not installed here: "
            "pip install 'r3d[full]', or score on a server with --server URL"
        )
    # the child imports `server` from the installation this `clients` package belongs to (a checkout on sys.path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(clients.__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p
    )
    sys.stdout.flush()
    returncode = subprocess.run(_batch_command(args, folder), env=env, check=False).returncode
    if returncode != 0:
        raise LocalScoringFailed(returncode)
    return JobResults.model_validate_json((folder / "results.json").read_bytes())


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


def write_timelines(results: JobResults, out: Path) -> list[Path]:
    """The timeline PNG(s) of scored results in `out`: timeline.png, or timeline-<sequence>.png for several."""
    pngs = []
    for seq in results.sequences:
        name = "timeline.png" if len(results.sequences) == 1 else f"timeline-{seq.id}.png"
        png = plot_sequence(seq, out / name, f"{results.job.source} / {seq.id} ({results.model.model_id})")
        if png is not None:
            pngs.append(png)
    return pngs


def _accuracy(seq: SequenceResult) -> float | None:
    labelled = [f for f in seq.frames if f.label is not None and f.action_label is not None]
    return sum(f.label == f.action_label for f in labelled) / len(labelled) if labelled else None


def run_score(args: ScoreArgs, out: IO[str] | None = None) -> dict[str, Any]:
    """Score SOURCE on the server (or locally with --bundle) and write the outputs; returns what was written."""
    out = out or sys.stdout
    folder = args.out or Path(f"r3d-score-{Path(args.source).name.split('.')[0] or 'results'}")
    with tempfile.TemporaryDirectory(prefix="r3d-score-read-") as work:
        scored = dataclasses.replace(args, source=_readable_source(args, Path(work)))
        results = _score_locally(scored, folder) if args.bundle is not None else _score_on_server(scored, folder)
    written: dict[str, Any] = {name: str(folder / name) for name in ("results.json", "frames.csv", "ticks.csv")}
    written["png"] = [str(p) for p in write_timelines(results, folder)]
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
    p.add_argument("--fps", type=float, help="frame rate of an image folder (default 30) or video (default: its own)")
    p.add_argument("--depth-scale", type=float, help="metres per depth unit of an image folder (default 0.001)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    args = ScoreArgs(**{k: v for k, v in vars(ns).items() if k != "verbose"})
    try:
        run_score(args)
    except LocalScoringFailed as exc:
        return exc.returncode
    except (ClientError, SourceError, ValueError, OSError) as exc:
        sys.stderr.write(f"r3d-score: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
