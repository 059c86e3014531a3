"""Timelines of anticipations: one terminal line per prediction while streaming, and a PNG of a whole recording.

The PNG has two panels sharing the time axis of the recording:
  top     rows of coloured segments: ground truth (where known), the current action the model reports, and
          the first anticipated action at each prediction;
  bottom  the anticipation map: at height t (the time of a prediction), each anticipated action is a bar from
          t + start to t + start + duration. A model that anticipates well paints colours that line up vertically
          with the ground-truth row above.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.protocol import CurrentAction
from server.protocol import FutureAction as ProtocolFutureAction

__all__ = [
    "FutureAction",
    "TimelineEntry",
    "action_colour",
    "entry_from_prediction",
    "plot_timeline_png",
    "render_line",
    "segments",
]

_BLOCK = "█"
_RESET = "\x1b[0m"
_GREY = (0.78, 0.78, 0.78)


@dataclass(frozen=True)
class FutureAction:
    """An anticipated action: starts `start_s` after the prediction's time and lasts `duration_s`."""

    action: str
    start_s: float
    duration_s: float
    probability: float


@dataclass(frozen=True)
class TimelineEntry:
    """One prediction placed on the recording's time axis (seconds of the frame it was made at)."""

    t: float
    current: str | None
    current_probability: float = 0.0
    future: tuple[FutureAction, ...] = field(default_factory=tuple)
    truth: str | None = None


def action_colour(name: str | None) -> tuple[float, float, float]:
    """A stable RGB colour (0..1) for an action name; grey for unknown / no action."""
    if name is None or name in ("", "NONE", "none", "background"):
        return _GREY
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    hue = (h % 360) / 360.0
    return colorsys.hsv_to_rgb(hue, 0.55 + 0.35 * ((h >> 9) % 2), 0.65 + 0.3 * ((h >> 10) % 2))


def _ansi(name: str | None, text: str) -> str:
    r, g, b = (round(c * 255) for c in action_colour(name))
    return f"\x1b[38;2;{r};{g};{b}m{text}{_RESET}"


def render_line(
    entry: TimelineEntry,
    horizon_s: float,
    *,
    width: int = 32,
    colour: bool = False,
    latency_ms: float | None = None,
    max_listed: int = 3,
) -> str:
    """One terminal line: time, current action, a bar of the anticipated horizon and the next actions listed.

    Without colour each cell of the bar holds the first letter of the action covering it ("." = nothing).
    """
    if horizon_s <= 0:
        raise ValueError(f"expected a positive horizon in seconds, got {horizon_s!r}")
    cells: list[str | None] = [None] * width
    for fa in entry.future:
        lo = max(0, int(fa.start_s / horizon_s * width))
        hi = min(width, max(lo + 1, int(round((fa.start_s + fa.duration_s) / horizon_s * width))))
        for i in range(lo, hi):
            if cells[i] is None:
                cells[i] = fa.action
    if colour:
        runs: list[tuple[str | None, int]] = []
        for c in cells:
            if runs and runs[-1][0] == c:
                runs[-1] = (c, runs[-1][1] + 1)
            else:
                runs.append((c, 1))
        bar = "".join(_ansi(c, _BLOCK * n) if c else "·" * n for c, n in runs)
    else:
        bar = "".join((c[0] if c else ".") for c in cells)
    now = entry.current or "-"
    now_text = f"{now} ({entry.current_probability:.2f})"
    if colour:
        now_text = _ansi(entry.current, now_text)
    listed = ", ".join(
        f"{fa.action} +{fa.start_s:.1f}s for {fa.duration_s:.1f}s ({fa.probability:.2f})"
        for fa in entry.future[:max_listed]
    )
    parts = [f"{entry.t:8.2f}s", f"now: {now_text:<24}", f"|{bar}|", f"next: {listed or '-'}"]
    if entry.truth is not None:
        parts.append(f"truth: {entry.truth}")
    if latency_ms is not None:
        parts.append(f"{latency_ms:.0f} ms")
    return "  ".join(parts)


def segments(times: Sequence[float], labels: Sequence[str | None]) -> list[tuple[float, float, str | None]]:
    """Runs of equal labels as (start, end, label); each point lasts until the next one (the last for the median
    gap), so a label sampled at times t_i covers [t_i, t_{i+1})."""
    if len(times) != len(labels):
        raise ValueError(f"expected as many labels as times, got {len(labels)} labels for {len(times)} times")
    if not times:
        return []
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False)) or [0.0]
    last_gap = gaps[len(gaps) // 2] or 0.05
    out: list[tuple[float, float, str | None]] = []
    start, current = times[0], labels[0]
    for i in range(1, len(times)):
        if labels[i] != current:
            out.append((start, times[i], current))
            start, current = times[i], labels[i]
    out.append((start, times[-1] + last_gap, current))
    return out


def plot_timeline_png(
    entries: Iterable[TimelineEntry],
    path: str | Path,
    *,
    truth: tuple[Sequence[float], Sequence[str | None]] | None = None,
    title: str = "",
    max_maps: int = 400,
) -> Path:
    """Draw the recording's timeline (see the module docstring) into `path` (PNG, written atomically).

    `truth`: (times, labels) of the whole recording where known; otherwise the entries' own `truth` fields are used.
    `max_maps`: at most this many predictions are drawn in the anticipation map (evenly subsampled).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from rgbd.files import write_bytes_atomic

    rows = sorted(entries, key=lambda e: e.t)
    if not rows:
        raise ValueError("no predictions to plot: the timeline is empty")
    times = [e.t for e in rows]
    if truth is None and any(e.truth is not None for e in rows):
        truth = (times, [e.truth for e in rows])
    bands: list[tuple[str, list[tuple[float, float, str | None]]]] = []
    if truth is not None:
        bands.append(("ground truth", segments(list(truth[0]), list(truth[1]))))
    bands.append(("current", segments(times, [e.current for e in rows])))
    bands.append(("next", segments(times, [e.future[0].action if e.future else None for e in rows])))

    fig, (ax_top, ax_map) = plt.subplots(
        2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.4]}, constrained_layout=True
    )
    names = sorted(
        {label for _, segs in bands for _, _, label in segs if label} | {fa.action for e in rows for fa in e.future}
    )
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    palette = {n: cmap(i % cmap.N)[:3] for i, n in enumerate(n for n in names if action_colour(n) != _GREY)}

    def colour_of(label: str | None) -> tuple[float, float, float]:
        return palette.get(label or "", _GREY)

    for y, (_, segs) in enumerate(reversed(bands)):
        for a, b, label in segs:
            ax_top.broken_barh([(a, max(b - a, 1e-3))], (y + 0.1, 0.8), color=colour_of(label))
    ax_top.set_yticks([y + 0.5 for y in range(len(bands))], [name for name, _ in reversed(bands)])
    ax_top.set_ylim(0, len(bands))
    ax_top.set_title(title or "R3D anticipation timeline")

    step = max(1, len(rows) // max_maps)
    sampled = rows[::step]
    height = (times[-1] - times[0]) / max(len(sampled), 1) or 0.05
    end = times[-1]
    for e in sampled:
        for fa in e.future:
            a = e.t + fa.start_s
            end = max(end, a + fa.duration_s)
            alpha = 0.35 + 0.65 * min(max(fa.probability, 0.0), 1.0)
            ax_map.broken_barh([(a, fa.duration_s)], (e.t, height), color=colour_of(fa.action), alpha=alpha)
    ax_map.plot([times[0], times[-1]], [times[0], times[-1]], color="black", lw=0.8, label="prediction time")
    ax_map.set_xlim(times[0], end)
    ax_map.set_ylim(times[0], times[-1] + height)
    ax_map.set_xlabel("recording time (s)")
    ax_map.set_ylabel("predicted at (s)")
    handles = [Patch(color=colour_of(n), label=n) for n in names]
    if handles:
        fig.legend(handles=handles, loc="outside right center", fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    out = Path(path)
    write_bytes_atomic(out, buf.getvalue())
    return out


def entry_from_prediction(
    current: CurrentAction, future: Sequence[ProtocolFutureAction], t: float, truth: str | None = None
) -> TimelineEntry:
    """A prediction's `current` and `future` (AnticipationOut or a batch job's TickResult) at recording time `t`."""
    return TimelineEntry(
        t=t,
        current=current.label,
        current_probability=current.probability,
        future=tuple(FutureAction(f.label, f.start_s, f.duration_s, f.probability) for f in future),
        truth=truth,
    )
