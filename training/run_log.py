"""What a training run leaves beside its checkpoints: the CSV log, the training-curve PNG and the provenance."""

from __future__ import annotations

import csv
import io
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from rgbd.files import write_bytes_atomic


def git_revision() -> dict[str, Any]:
    """The commit this code runs from and whether tracked files were modified; 'unknown' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"revision": "unknown", "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"revision": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"revision": "unknown", "dirty": None}


def environment() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """One row per epoch; columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_bytes_atomic(path, buf.getvalue().encode())


def plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
    """Losses (left) and validation metrics (right) per epoch, as a PNG (matplotlib's Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(e, row[key]) for e, row in zip(epochs, history, strict=True) if _finite(row.get(key))]
        return [p[0] for p in pts], [p[1] for p in pts]

    for key in ("train_loss", "val_loss"):
        x, y = series(key)
        if x:
            ax_loss.plot(x, y, marker="o", label=key)
    metric_keys = sorted({k for row in history for k in row if k.startswith("val_") and k != "val_loss"})
    for key in [*metric_keys, "selection"]:
        x, y = series(key)
        if x:
            ax_metric.plot(x, y, marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    ax_metric.set(xlabel="epoch", title="validation")
    for ax in (ax_loss, ax_metric):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)
