"""What a batch job can score, and how it is read: a dataset in the common format (every sequence, or some), one
sequence folder of it, a zip / tar archive of either, or a camera recording (RealSense .bag / .db3, Azure Kinect .mkv,
read by rgbd.open). Paths from clients are confined to the data root; archives are extracted with every
member checked (no absolute paths, no '..', no links).
"""

from __future__ import annotations

import json
import logging
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from rgbd import Dataset, Frame, SequenceMeta
from rgbd.dataset import StoredFrame, stored_frames
from server.errors import PathNotAllowed, UnsupportedFormat, public_reason
from server.protocol import ErrorCode, ProtocolError

logger = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".bag", ".db3", ".mkv")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SUPPORTED = "a dataset folder, a sequence folder, a .zip / .tar(.gz) of either, or a .bag / .db3 / .mkv recording"


@dataclass(frozen=True)
class SourceSequence:
    """One recording to score: its frames (a fresh iterator per call), how many, and its nominal fps. A dataset or
    sequence folder gives StoredFrame (colour still JPEG: the model's input path decodes it as it decodes a streamed
    JPEG and as the feature cache does, so all three get bit-identical inputs); a camera recording gives Frame."""

    id: str
    frames: Callable[[], Iterator[Frame | StoredFrame]]
    total: int | None
    fps_in: float | None


def source_color(frame: Frame | StoredFrame) -> np.ndarray | bytes | None:
    """A frame's colour as the model's input path takes it: a stored frame's JPEG bytes (not decoded here), a
    recording's decoded RGB, None for a depth-only frame."""
    return frame.jpeg if isinstance(frame, StoredFrame) else frame.rgb


def resolve_data_path(data_root: Path | None, relative: str) -> Path:
    """A client's path -> an existing path under the data root; PathNotAllowed for anything that would escape it."""
    if data_root is None:
        raise PathNotAllowed("this server has no data root (R3D_DATA_ROOT); upload the recording instead")
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or relative.strip() == "":
        raise PathNotAllowed(f"expected a relative path inside the data root without '..', got {relative!r}")
    root = data_root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):  # a symlink pointing outside the root
        raise PathNotAllowed(f"path {relative!r} resolves outside the data root")
    if not path.exists():
        raise PathNotAllowed(f"no file or folder {relative!r} under the data root")
    return path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (*ARCHIVE_SUFFIXES, *RECORDING_SUFFIXES):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def check_supported_name(name: str) -> None:
    """Refuse an upload by its name before storing it."""
    suffix = _suffix(Path(name))
    if suffix not in (*ARCHIVE_SUFFIXES, *RECORDING_SUFFIXES):
        raise UnsupportedFormat(f"unsupported recording format {suffix or name!r}; expected {SUPPORTED}")


def open_sequences(
    path: Path, work_dir: Path, only: list[str] | None = None, *, limits: ArchiveLimits | None = None
) -> list[SourceSequence]:
    """Everything to score under ``path`` (archives are extracted into ``work_dir``, within ``limits``: the
    server's; a local user scoring their own files passes none)."""
    if path.is_dir():
        return _from_folder(path, only)
    suffix = _suffix(path)
    if suffix in ARCHIVE_SUFFIXES:
        out = work_dir / "extracted"
        extract_archive(path, out, limits or UNLIMITED)
        return _from_folder(_single_root(out), only)
    if suffix in RECORDING_SUFFIXES:
        return [_recording(path)]
    raise UnsupportedFormat(f"unsupported recording format {suffix or path.name!r}; expected {SUPPORTED}")


def _single_root(folder: Path) -> Path:
    """An archive holding one top folder is read from inside it."""
    children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir() and not (folder / "dataset.json").exists():
        return children[0]
    return folder


def _from_folder(folder: Path, only: list[str] | None) -> list[SourceSequence]:
    if (folder / "dataset.json").is_file():
        ds = Dataset(folder)
        ids = ds.sequence_ids if only is None else only
        missing = sorted(set(ids) - set(ds.sequence_ids))
        if missing:
            raise UnsupportedFormat(f"dataset {ds.name!r} has no sequences {missing}; it has {ds.sequence_ids[:20]}")
        if not ids:
            raise UnsupportedFormat(f"dataset {ds.name!r} has no sequences to score")
        metas = {sid: ds.meta(sid) for sid in ids}
        return [SourceSequence(sid, partial(ds.stored_frames, sid), m.num_frames, m.fps) for sid, m in metas.items()]
    if (folder / "meta.json").is_file() and (folder / "labels.csv").is_file():
        return [_sequence_folder(folder)]
    raise UnsupportedFormat(
        f"folder {folder.name!r} has neither dataset.json nor meta.json + labels.csv; expected {SUPPORTED}"
    )


def _sequence_folder(folder: Path) -> SourceSequence:
    meta = SequenceMeta.from_dict(json.loads((folder / "meta.json").read_text()))
    return SourceSequence(meta.id, partial(stored_frames, folder, meta), meta.num_frames, meta.fps)


def _recording(path: Path) -> SourceSequence:
    try:
        from rgbd.open import open_source
    except ImportError as exc:  # pragma: no cover - present in every full install
        raise UnsupportedFormat(f"reading {path.suffix} recordings needs rgbd.open: {exc}") from exc

    def frames() -> Iterator[Frame]:
        with open_source(path) as src:
            yield from src

    try:
        with open_source(path) as src:
            total, fps = src.num_frames, src.fps
    except Exception as exc:
        raise UnsupportedFormat(f"cannot read recording {path.name!r}: {public_reason(exc)}") from exc
    return SourceSequence(path.stem, frames, total, fps)


@dataclass(frozen=True)
class ArchiveLimits:
    """What extracting one archive may cost: uncompressed bytes of all members together, and member count."""

    max_bytes: int
    max_members: int


UNLIMITED = ArchiveLimits(max_bytes=2**63, max_members=2**63)


def check_archive(archive: Path, limits: ArchiveLimits) -> None:
    """Refuse an archive whose members would escape its extraction folder or exceed ``limits``, before anything is
    extracted."""
    if _suffix(archive) in ARCHIVE_SUFFIXES:
        extract_archive(archive, archive.parent / ".check", limits, dry_run=True)


def extract_archive(archive: Path, out: Path, limits: ArchiveLimits, *, dry_run: bool = False) -> None:
    """Extract a zip or tar archive into ``out``, refusing members that would land outside it or are links, and
    archives whose declared sizes add up past ``limits`` (zip readers stop at a member's declared size, tar members
    are exactly their size, so the check bounds what extraction writes)."""
    root = out.resolve()

    def check(name: str) -> None:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or not (root / p).resolve().is_relative_to(root):
            raise PathNotAllowed(f"archive member {name!r} would be written outside the extraction folder")

    def check_totals(members: int, size: int) -> None:
        if members > limits.max_members:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"archive {archive.name!r} has {members} members; expected at most {limits.max_members}",
            )
        if size > limits.max_bytes:
            raise ProtocolError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"archive {archive.name!r} would unpack to {size} bytes; this job may use at most {limits.max_bytes} "
                "(job_disk_quota_bytes, the upload included)",
            )

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                check_totals(len(infos), sum(i.file_size for i in infos))
                for info in infos:
                    check(info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise PathNotAllowed(f"archive member {info.filename!r} is a symbolic link")
                if not dry_run:
                    out.mkdir(parents=True, exist_ok=True)
                    zf.extractall(out)
            return
        with tarfile.open(archive) as tf:
            members = []
            for member in tf:  # streamed: a member count past the limit stops reading the index
                members.append(member)
                check_totals(len(members), 0)
            check_totals(len(members), sum(m.size for m in members if m.isfile()))
            for member in members:
                check(member.name)
                if not (member.isfile() or member.isdir()):
                    raise PathNotAllowed(f"archive member {member.name!r} is a link or device, not a file")
            if not dry_run:
                out.mkdir(parents=True, exist_ok=True)
                tf.extractall(out, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise UnsupportedFormat(f"{archive.name!r} is not a readable zip or tar archive: {type(exc).__name__}") from exc
