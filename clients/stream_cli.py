"""r3d-stream SOURCE: stream a camera or a recording to an R3D server and show its anticipations live.

    r3d-stream recording.db3 --server http://localhost:8000 --jsonl predictions.jsonl --png timeline.png
    r3d-stream recording.db3 --fast          # as fast as the server takes frames (backpressure: block)

SOURCE is anything `rgbd.open.open_source` opens (RealSense live or .bag/.db3, Azure Kinect live or .mkv,
a dataset folder, video + depth files; --fps and --depth-scale for image folders and videos, whose depth scale is
checked for plausibility). Recordings are paced by their timestamps (--realtime, the default; frames the
client cannot send in time are skipped and counted) or sent as fast as possible (--fast). Each prediction is one line
of the terminal timeline and one JSON line in --jsonl; the end prints frames, fps, drops and latency.

A dropped connection is retried for --reconnect-timeout seconds; a server that restarted meanwhile gets a new
session (the model's window starts empty: a warning, and session_resets in the summary) and the recording goes on
from where it paused. A resumed session (a server with a session store restores it after a crash) gets the frames it
lost sent again from the last 5 s kept (frames_resent; frames_lost for any older than that).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from clients.folders import needs_client_reading, warn_on_depth
from clients.sdk import (
    Backpressure,
    Client,
    ClientError,
    ColorCodec,
    DepthCodec,
    ReconnectPolicy,
    SessionCreate,
    Stream,
)
from clients.timeline import TimelineEntry, entry_from_prediction, plot_timeline_png, render_line
from rgbd.base import SourceError
from rgbd.frame import Frame
from server.protocol import AnticipationOut, IntrinsicsIn, SendSize

__all__ = ["StreamArgs", "main", "run_stream"]

logger = logging.getLogger(__name__)


@dataclass
class StreamArgs:
    """Options of r3d-stream. build_parser() declares one flag per field by hand (groups, choices and paired flags
    read better that way); tests/clients/test_cli_args.py keeps the flags and these defaults in step."""

    source: str
    server: str = "http://127.0.0.1:8000"  # base URL of the R3D service
    token: str | None = None  # API key (default: the R3D_API_KEY environment variable)
    fast: bool = False  # send as fast as the server accepts (backpressure=block) instead of real time
    jsonl: Path | None = None  # write every prediction as one JSON line here
    png: Path | None = None  # write the timeline PNG here at the end
    summary: Path | None = None  # write the run's summary (fps, drops, latency) as JSON here
    max_frames: int | None = None  # stop after this many frames
    fps: float | None = None  # frame rate of an image folder or video with depth PNGs (default: the video's, else 30)
    depth_scale: float | None = None  # metres per depth unit of an image folder or depth PNGs (default 0.001)
    tick_hz: float | None = None  # predictions per second of stream time (default: the server's)
    color_codec: str = "jpeg"
    no_color: bool = False  # send a depth-only stream (hello color false), even from an RGB-D source
    depth_codec: str = "zstd"
    send_size: str = "full"  # "model": resize to the model's input size on this side and send small frames
    print_hz: float = 4.0  # terminal timeline lines per second (0: none)
    colour: bool | None = None  # ANSI colours (default: when stdout is a terminal)
    labels: Path | None = None  # ground truth CSV: frame,...,label (0-based frame index) or start,end,label (seconds)
    reconnect_timeout_s: float = 60.0  # keep retrying a dropped connection this long (outlasts a server's drain)


def read_labels(path: Path) -> Callable[[int, float], str | None]:
    """Ground truth for a recording from a CSV with columns `frame` and `label` (0-based frame index) or `start`,
    `end` and `label` (seconds from the first frame, [start, end)); returns label(index, seconds_from_start)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    if {"frame", "label"} <= columns:
        by_frame = {int(r["frame"]): r["label"] or None for r in rows}
        return lambda index, t: by_frame.get(index)
    if {"start", "end", "label"} <= columns:
        ranges = [(float(r["start"]), float(r["end"]), r["label"] or None) for r in rows]
        return lambda index, t: next((lab for a, b, lab in ranges if a <= t < b), None)
    raise ValueError(
        f"{path}: expected label CSV columns frame,label or start,end,label, got {sorted(columns) or 'no rows'}"
    )


def _frames(args: StreamArgs) -> Generator[Frame, None, None]:
    """The source's frames; image folders and videos with depth PNGs (whose depth scale the user gives) are checked
    for an implausible depth scale."""
    from rgbd.open import open_source

    options = {name: v for name, v in (("fps", args.fps), ("depth_scale", args.depth_scale)) if v is not None}
    opened: Any = open_source(args.source, **options)
    with opened if hasattr(opened, "__enter__") else contextlib.nullcontext(opened) as source:
        frames = warn_on_depth(iter(source)) if needs_client_reading(Path(args.source)) else iter(source)
        for i, frame in enumerate(frames):
            if args.max_frames is not None and i >= args.max_frames:
                return
            yield frame


def _session_for(frame: Frame, args: StreamArgs) -> SessionCreate:
    """The hello for this source: depth-only (color false, width x height = the depth size) when the source has no
    colour camera or --no-color asks for it."""
    intr = frame.intrinsics
    color = frame.rgb is not None and not args.no_color
    height, width = frame.rgb.shape[:2] if color and frame.rgb is not None else frame.depth.shape
    return SessionCreate(
        camera=f"r3d-stream {Path(args.source).name}"[:200],
        serial=None,
        color=color,
        width=width,
        height=height,
        depth_width=frame.depth.shape[1],
        depth_height=frame.depth.shape[0],
        depth_scale=frame.depth_scale,
        depth_aligned=frame.depth_aligned,
        intrinsics=IntrinsicsIn(**intr.to_dict()) if intr is not None else None,
        tick_hz=args.tick_hz,
        backpressure=Backpressure.BLOCK if args.fast else Backpressure.LATEST_WINS,
        send_size=SendSize(args.send_size),
    )


class _Printer:
    """Terminal timeline (throttled to print_hz) and the JSONL file; keeps every prediction for the PNG."""

    def __init__(self, args: StreamArgs, out: IO[str], jsonl: IO[str] | None) -> None:
        self.args, self.out, self.jsonl = args, out, jsonl
        self.colour = out.isatty() if args.colour is None else args.colour
        self.entries: list[TimelineEntry] = []
        self.truth: dict[int, str | None] = {}  # frame seq -> ground-truth label
        self.t0: float | None = None
        self.horizon_s = 8.0
        self._last_print = 0.0

    def add(self, pred: AnticipationOut) -> None:
        t0 = self.t0 if self.t0 is not None else pred.frame_ts
        truth = self.truth.get(pred.frame_seq)
        entry = entry_from_prediction(pred.current, pred.future, pred.frame_ts - t0, truth)
        self.entries.append(entry)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({**pred.model_dump(mode="json"), "t": entry.t, "truth": truth}) + "\n")
        now = time.monotonic()
        if self.args.print_hz > 0 and now - self._last_print >= 1.0 / self.args.print_hz:
            self._last_print = now
            line = render_line(
                entry, self.horizon_s, colour=self.colour, latency_ms=pred.latency.frame_to_prediction_ms
            )
            self.out.write(line + "\n")
            self.out.flush()


def _stream(
    stream: Stream,
    frames: Iterator[Frame],
    first: Frame,
    args: StreamArgs,
    printer: _Printer,
    label_of: Callable[[int, float], str | None] | None,
) -> int:
    """Send every frame (paced), hand predictions to the printer; returns the frames skipped to keep real time.

    Time spent waiting for a reconnect is a pause of the recording, not lag: the pacing clock moves by it."""
    skipped = index = 0
    start_wall, start_ts = time.monotonic(), first.timestamp
    frame: Frame | None = first
    while frame is not None:
        if not args.fast:
            due = start_wall + (frame.timestamp - start_ts)
            lag = time.monotonic() - due
            if lag > 0.25:  # more than a few frames behind: skip this one to stay live (latest wins)
                skipped += 1
                index += 1
                frame = next(frames, None)
                continue
            if lag < 0:
                time.sleep(-lag)
        reconnects, sending_since = stream.stats.reconnects, time.monotonic()
        seq = stream.send_frame(frame)
        if stream.stats.reconnects != reconnects:
            start_wall += time.monotonic() - sending_since
        printer.truth[seq] = label_of(index, frame.timestamp - start_ts) if label_of else frame.label
        for pred in stream.pending():
            printer.add(pred)
        index += 1
        frame = next(frames, None)
    for pred in [*stream.drain(timeout=30.0), *stream.pending()]:
        printer.add(pred)
    return skipped


def run_stream(args: StreamArgs, out: IO[str] | None = None) -> dict[str, Any]:
    """Stream SOURCE to the server; returns the run's summary (also written to --summary)."""
    label_of = read_labels(args.labels) if args.labels is not None else None
    frames = _frames(args)
    try:  # close the source here, on this thread, whatever happens (camera SDKs dislike a close from the GC)
        return _run(args, out or sys.stdout, frames, label_of)
    finally:
        frames.close()


def _run(
    args: StreamArgs, out: IO[str], frames: Iterator[Frame], label_of: Callable[[int, float], str | None] | None
) -> dict[str, Any]:
    first = next(frames, None)
    if first is None:
        raise ValueError(f"source {args.source!r} yielded no frames; expected a recording or camera with frames")
    token = args.token or os.environ.get("R3D_API_KEY")
    jsonl_tmp = args.jsonl.with_name(args.jsonl.name + ".partial") if args.jsonl else None
    if jsonl_tmp is not None:
        jsonl_tmp.parent.mkdir(parents=True, exist_ok=True)
    with (
        Client(args.server, token=token) as client,
        open(jsonl_tmp, "w") if jsonl_tmp else contextlib.nullcontext() as jsonl,
    ):
        printer = _Printer(args, out, jsonl)
        printer.t0 = first.timestamp
        stream = client.stream(
            _session_for(first, args), color_codec=ColorCodec(args.color_codec),
            depth_codec=DepthCodec(args.depth_codec), reconnect=ReconnectPolicy(timeout_s=args.reconnect_timeout_s),
        )  # fmt: skip
        with stream:
            assert stream.inner.welcome is not None
            first_session = stream.session_id
            model = stream.inner.welcome.model
            printer.horizon_s = model.horizon_s
            out.write(
                f"session {stream.session_id} on {args.server}: model {model.model_id} ({model.backend}), "
                f"{len(model.classes)} classes, window {model.window_s:g} s, horizon {model.horizon_s:g} s\n"
            )
            t0 = time.monotonic()
            skipped = _stream(stream, frames, first, args, printer, label_of)
            elapsed = time.monotonic() - t0
            if stream.session_id is not None:  # final counters: the last prediction may precede the last frames
                stream.stats.server = client.session(stream.session_id).counters
            stats = stream.stats
    if jsonl_tmp is not None and args.jsonl is not None:
        os.replace(jsonl_tmp, args.jsonl)
    summary: dict[str, Any] = {
        "source": args.source,
        "server": args.server,
        "session_id": stream.session_id,
        "session_ids": [first_session, *(r.session_id for r in stream.resets)],
        "model_id": model.model_id,
        "frames_read": stats.frames_sent + skipped,
        "seconds": round(elapsed, 3),
        "client_skipped": skipped,
        **stats.summary(),
        "send_fps": round(stats.frames_sent / elapsed, 2) if elapsed > 0 else None,
        "jsonl": str(args.jsonl) if args.jsonl else None,
        "png": None,
    }
    if args.png is not None and printer.entries:
        summary["png"] = str(plot_timeline_png(printer.entries, args.png, title=f"{Path(args.source).name}"))
    if args.summary is not None:
        from rgbd.files import write_json_atomic

        write_json_atomic(args.summary, summary)
    _report(summary, out)
    return summary


def _ms(v: object) -> str:
    return f"{v:.1f} ms" if isinstance(v, float) else "n/a"


def _report(s: dict[str, Any], out: IO[str]) -> None:
    server = s.get("server_counters") or {}
    out.write(
        f"\n{s['frames_sent']} frames sent in {s['seconds']:.1f} s ({s['send_fps']} fps), "
        f"{s['predictions']} predictions\n"
        f"dropped: {s['client_skipped']} by the client (behind real time), {server.get('dropped', 0)} by the server "
        f"queue, {server.get('rejected', 0)} rejected; {server.get('resampled_out', 0)} resampled out to the model "
        "fps\n"
        f"latency: round trip p50 {_ms(s['round_trip_ms_p50'])}, p95 {_ms(s['round_trip_ms_p95'])}; "
        f"server frame->prediction p50 {_ms(s['server_latency_ms_p50'])}; reconnects {s['reconnects']}, "
        f"session resets {s['session_resets']} (the server lost the session; its window restarted); "
        f"frames sent again after a resume {s['frames_resent']}, lost {s['frames_lost']}\n"
    )
    for key in ("jsonl", "png"):
        if s.get(key):
            out.write(f"{key}: {s[key]}\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r3d-stream", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", help="camera or recording: .db3/.bag, .mkv, a dataset folder, 'realsense', 'kinect'")
    p.add_argument("--server", default=StreamArgs.server, help="service base URL (default %(default)s)")
    p.add_argument("--token", help="API key (default: $R3D_API_KEY)")
    pace = p.add_mutually_exclusive_group()
    # one dest, two flags: argparse takes the default of the first, and store_false's own default would be True
    pace.add_argument("--realtime", dest="fast", action="store_false", default=StreamArgs.fast,
                      help="pace by frame timestamps (default)")  # fmt: skip
    pace.add_argument("--fast", dest="fast", action="store_true", help="send as fast as the server accepts")
    p.add_argument("--jsonl", type=Path, help="write every prediction as a JSON line to this file")
    p.add_argument("--png", type=Path, help="write the timeline PNG to this file at the end")
    p.add_argument("--summary", type=Path, help="write the run summary (fps, drops, latency) as JSON")
    p.add_argument("--labels", type=Path, help="ground-truth CSV (frame,label or start,end,label) for the timeline")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--fps", type=float, help="frame rate of an image folder (default 30) or video (default: its own)")
    p.add_argument("--depth-scale", type=float, help="metres per depth unit of an image folder (default 0.001)")
    p.add_argument("--tick-hz", type=float, help="predictions per second of stream time (default: the server's)")
    p.add_argument("--color-codec", choices=[c.value for c in ColorCodec], default="jpeg")
    p.add_argument("--depth-codec", choices=[c.value for c in DepthCodec], default="zstd")
    p.add_argument(
        "--no-color",
        action="store_true",
        help="send depth only (hello color false), even from an RGB-D "
        "source: for cameras whose colour may not leave the room; needs a depth-only model on the server",
    )
    p.add_argument("--send-size", choices=[s.value for s in SendSize], default=StreamArgs.send_size,
                   help="'full': send camera-size frames; 'model': resize to the model's input size (announced by "
                   "the server) before sending: ~1/16 of the bytes at 640x480 (default %(default)s)")  # fmt: skip
    p.add_argument("--print-hz", type=float, default=4.0, help="terminal timeline lines per second (0: none)")
    p.add_argument(
        "--reconnect-timeout", dest="reconnect_timeout_s", type=float, metavar="SECONDS",
        default=StreamArgs.reconnect_timeout_s, help="retry a dropped connection this long (default %(default)g)",
    )  # fmt: skip
    p.add_argument("--colour", action=argparse.BooleanOptionalAction, default=None, help="ANSI colours")
    p.add_argument("-v", "--verbose", action="store_true", help="log the SDK's reconnects and notices")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    args = StreamArgs(**{k: v for k, v in vars(ns).items() if k != "verbose"})
    try:
        run_stream(args)
    except (ClientError, SourceError, ValueError, OSError) as exc:
        sys.stderr.write(f"r3d-stream: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("r3d-stream: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
