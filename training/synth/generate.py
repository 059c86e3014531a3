"""Generate a synthetic dataset in the common format, in parallel over sequences, with previews and recordings.

Splits follow the sequence index (`SPLIT_PATTERN`: of every five consecutive sequences three train, one val, one
test), so a sequence's split does not depend on how many are generated: the first N sequences of a larger world
are the world of N sequences with the same splits, and `resume=True` extends a dataset (or finishes an
interrupted run) by rendering only the sequences it lacks.

Layout written (besides the common format's files): DATASET/previews/<id>.png (contact sheets) and
DATASET/recordings/<id>.db3 (RealSense recordings of the first K test sequences) with the ground truth beside each
in DATASET/recordings/<id>.labels.csv (frame,timestamp,label, as the dataset's labels.csv). With zero sequences
only recordings are written (sequences 0..K-1), no dataset.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import multiprocessing as mp
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from rgbd.dataset import DatasetWriter
from rgbd.files import write_bytes_atomic, write_json_atomic
from rgbd.frame import Frame
from training.synth.actions import ACTIONS
from training.synth.grammar import ACTIVITIES
from training.synth.preview import preview_indices, write_contact_sheet
from training.synth.world import WORLD_VERSION, SynthConfig, SynthSequence, sequence_id

logger = logging.getLogger(__name__)

DATASET_NAME = "synthetic-rgbd-world"
# split of sequence i: SPLIT_PATTERN[i % 5]; 60 / 20 / 20 % (3 sequences already fill every split), so the default
# 500 sequences give 100 test sequences (600 streaming test windows of the service recipe)
SPLIT_PATTERN = ("train", "val", "test", "train", "train")
SPLIT_FRACTIONS = tuple(SPLIT_PATTERN.count(s) / len(SPLIT_PATTERN) for s in ("train", "val", "test"))
OWN_ENTRIES = ("dataset.json", "splits.json", "sequences", "previews", "recordings")


@dataclass(frozen=True)
class GenerateResult:
    root: Path
    sequence_ids: list[str]
    splits: dict[str, list[str]]
    recordings: list[Path]
    activities: dict[str, str]  # sequence id -> activity


def _writer(root: Path, cfg: SynthConfig) -> DatasetWriter:
    return DatasetWriter(
        root,
        name=DATASET_NAME,
        classes=ACTIONS,
        fps=cfg.fps,
        source="synth",
        background_class=None,
        provenance={
            "generator": "training.synth",
            "world_version": WORLD_VERSION,
            "config": cfg.to_dict(),
            "split_fractions": list(SPLIT_FRACTIONS),
            "activities": list(ACTIVITIES),
        },
    )


def write_sequence(root: Path, cfg: SynthConfig, index: int, previews: bool = True) -> tuple[str, str]:
    """Render sequence `index` into the dataset at root (and its contact sheet); returns (id, activity)."""
    seq = SynthSequence(cfg, index)
    wanted = set(preview_indices(cfg.frames)) if previews else set()
    kept: list[Frame] = []

    def frames() -> Iterator[Frame]:
        for frame in seq.frames():
            if frame.index in wanted:
                kept.append(frame)
            yield frame

    # every worker holds its own writer; they all write the same dataset.json
    _writer(root, cfg).add_sequence(seq.id, frames(), fps=cfg.fps, activity=seq.activity, provenance=seq.provenance())
    if previews:
        title = f"{seq.id}  activity: {seq.activity}  seed {cfg.seed}  {cfg.width}x{cfg.height} @ {cfg.fps:g} fps"
        write_contact_sheet(root / "previews" / f"{seq.id}.png", kept, seq.labels, ACTIONS, title, cfg.fps)
    return seq.id, seq.activity


def _work(job: tuple[str, SynthConfig, int, bool]) -> tuple[str, str]:
    root, cfg, index, previews = job
    return write_sequence(Path(root), cfg, index, previews)


def _init_worker() -> None:
    cv2.setNumThreads(1)


def split_of(index: int) -> str:
    return SPLIT_PATTERN[index % len(SPLIT_PATTERN)]


def write_index_splits(root: Path, cfg: SynthConfig, ids: list[str]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for sid in sorted(ids):
        splits[split_of(int(sid.split("_")[-1]))].append(sid)
    rule = f"sequence i goes to {list(SPLIT_PATTERN)}[i % {len(SPLIT_PATTERN)}]"
    write_json_atomic(
        root / "splits.json", {"seed": cfg.seed, "fractions": list(SPLIT_FRACTIONS), "rule": rule, **splits}
    )
    return splits


def complete_sequences(root: Path, cfg: SynthConfig, previews: bool) -> dict[int, str]:
    """Sequences of this configuration already written in full under root (index -> activity): meta.json is
    written last, and its provenance must be the one this configuration gives (else the sequence is redone)."""
    done: dict[int, str] = {}
    for i in range(cfg.n_sequences):
        sid = sequence_id(i)
        meta_path = root / "sequences" / sid / "meta.json"
        if not meta_path.is_file() or (previews and not (root / "previews" / f"{sid}.png").is_file()):
            continue
        meta = json.loads(meta_path.read_text())
        seq = SynthSequence(cfg, i)
        written = dict(meta.get("provenance", {}))
        if isinstance(written.get("config"), dict):  # runs before sequence_settings() also stored n_sequences
            written["config"] = {k: v for k, v in written["config"].items() if k != "n_sequences"}
        if written != json.loads(json.dumps(seq.provenance())) or meta.get("num_frames") != cfg.frames:
            continue
        if meta.get("provenance") != written:  # rewrite the old-style provenance as a fresh run writes it
            write_json_atomic(meta_path, {**meta, "provenance": written})
        done[i] = seq.activity
    return done


def _prepare(root: Path, overwrite: bool, resume: bool = False) -> None:
    if root.exists() and not root.is_dir():
        raise ValueError(f"expected --out to be a folder, got the file {root}")
    if (root / "dataset.json").exists() or (root / "sequences").exists():
        if resume:
            return
        if not overwrite:
            raise ValueError(
                f"{root} already holds a dataset; expected an empty or new folder (or pass --overwrite or --resume)"
            )
        for name in OWN_ENTRIES:
            p = root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _labels_csv(seq: SynthSequence) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["frame", "timestamp", "label"])
    writer.writerows((i, f"{i / seq.cfg.fps:.6f}", label) for i, label in enumerate(seq.labels))
    return buf.getvalue().encode()


def record_sequences(root: Path, cfg: SynthConfig, ids: list[str]) -> list[Path]:
    """Write each sequence as a RealSense .db3 recording under root/recordings (re-rendered, lossless), and its
    labels beside it as <id>.labels.csv."""
    try:
        from rgbd.realsense import record_db3
    except ImportError as exc:  # the RealSense source module or pyrealsense2 is missing
        raise ValueError(f"--recordings needs rgbd.realsense.record_db3 and pyrealsense2: {exc}") from exc
    extra = {"fps": max(int(round(cfg.fps)), 1)} if "fps" in inspect.signature(record_db3).parameters else {}
    paths = []
    for sid in ids:
        path = root / "recordings" / f"{sid}.db3"
        path.parent.mkdir(parents=True, exist_ok=True)
        seq = SynthSequence(cfg, int(sid.split("_")[-1]))
        try:
            n = record_db3(path, seq.frames(), **extra)
        except RuntimeError as exc:  # pyrealsense2 or its system library missing, or librealsense failed
            raise ValueError(f"could not record {path}: {exc}") from exc
        write_bytes_atomic(path.with_name(f"{sid}.labels.csv"), _labels_csv(seq))
        logger.info("recorded %s (%s frames)", path, n)
        paths.append(path)
    return paths


def generate_dataset(
    root: str | Path,
    cfg: SynthConfig,
    *,
    workers: int = 2,
    previews: bool = True,
    recordings: int = 0,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
) -> GenerateResult:
    """Write cfg.n_sequences sequences, splits (by index), previews and `recordings` test recordings.

    The output does not depend on `workers`: each sequence is a function of (cfg without n_sequences, index) only.
    With `resume`, sequences already complete under root are kept and only the others are rendered.
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if recordings < 0:
        raise ValueError(f"--recordings must be >= 0, got {recordings}")
    root = Path(root)
    if cfg.n_sequences == 0:
        if recordings == 0:
            raise ValueError("--sequences 0 writes no dataset; expected --recordings K > 0 with it")
        if root.exists() and not root.is_dir():
            raise ValueError(f"expected --out to be a folder, got the file {root}")
        ids = [sequence_id(i) for i in range(recordings)]
        return GenerateResult(root, [], {}, record_sequences(root, cfg, ids), {})
    _prepare(root, overwrite, resume)
    done = complete_sequences(root, cfg, previews) if resume else {}
    if done:
        logger.info("resuming: %s of %s sequences are complete", len(done), cfg.n_sequences)
    _writer(root, cfg)
    jobs = [(str(root), cfg, i, previews) for i in range(cfg.n_sequences) if i not in done]
    wrap = progress or (lambda it, n: it)
    results: list[tuple[str, str]] = [(sequence_id(i), a) for i, a in done.items()]
    if workers == 1 or len(jobs) <= 1:
        results += list(wrap(map(_work, jobs), len(jobs)))
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            results += list(wrap(pool.imap(_work, jobs, chunksize=1), len(jobs)))
    results.sort()
    splits = write_index_splits(root, cfg, [sid for sid, _ in results])
    to_record = splits["test"][:recordings]
    if recordings > len(to_record):
        logger.warning("asked for %s recordings, the test split has %s sequences", recordings, len(to_record))
    paths = record_sequences(root, cfg, to_record) if to_record else []
    return GenerateResult(
        root=root,
        sequence_ids=[sid for sid, _ in results],
        splits=splits,
        recordings=paths,
        activities=dict(results),
    )
