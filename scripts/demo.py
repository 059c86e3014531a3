"""The one-command demo (run by ./demo.sh after it set up .venv): synthesise an RGB-D recording, serve a model,
stream the recording through a playback client, print live anticipations, write the timeline PNG and the results,
stop the server and say where everything is.

The recording is a RealSense .db3 file played back by pyrealsense2 when it can load (it needs the system library
libusb); otherwise the same sequence is streamed from its dataset folder, which needs no system library.

    python scripts/demo.py [--model models/default/model.safetensors] [--out outputs/demo-<time>] [--fast]
                           [--recording auto|db3|folder]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the console scripts of the environment running this script
DEFAULT_MODEL = ROOT / "models" / "default" / "model.safetensors"

logger = logging.getLogger("demo")


def say(text: str) -> None:
    sys.stdout.write(f"[demo] {text}\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def command(name: str) -> str:
    exe = BIN / name
    if not exe.exists():
        raise SystemExit(f"[demo] {exe} is missing: is the project installed in this environment? (./demo.sh does it)")
    return str(exe)


RECORDINGS = ("auto", "db3", "folder")


def realsense_unavailable() -> str | None:
    """Why pyrealsense2 cannot play .db3 recordings here (the import error), or None when it can."""
    try:
        import pyrealsense2  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def choose_recording(requested: str, unavailable: str | None) -> str:
    """db3 or folder for --recording `requested`, given why pyrealsense2 cannot load here (None: it can)."""
    if requested not in RECORDINGS:
        raise ValueError(f"--recording: expected one of {RECORDINGS}, got {requested!r}")
    if requested == "folder":
        return "folder"
    if unavailable is None:
        return "db3"
    if requested == "db3":
        raise SystemExit(
            f"[demo] --recording db3 needs pyrealsense2, which does not load here ({unavailable}); "
            "install libusb (sudo apt-get install -y libusb-1.0-0) or use --recording folder"
        )
    say(f"pyrealsense2 does not load ({unavailable}): streaming the dataset folder instead of a .db3 recording")
    if "libusb" in unavailable:
        say("to stream RealSense recordings next time, run: sudo apt-get install -y libusb-1.0-0")
    return "folder"


def synthesise(out: Path, seconds: float, seed: int, recording: str) -> tuple[Path, Path]:
    """One synthetic recording and its ground-truth labels, via `r3d-data synth` (three short sequences, so that the
    test split has one): the first test sequence as a RealSense .db3 file (recording "db3") or as its folder in the
    dataset (recording "folder", read by rgbd.open_source without pyrealsense2)."""
    data = out / "data"
    frames = max(30, round(seconds * 15))
    args = [command("r3d-data"), "--log-level", "WARNING", "synth", "--out", str(data), "--sequences", "3",
            "--frames", str(frames), "--recordings", "1" if recording == "db3" else "0", "--seed", str(seed),
            "--no-previews", "--overwrite"]  # fmt: skip
    what = "one recorded as .db3" if recording == "db3" else "streamed from the dataset folder"
    say(f"synthesising the RGB-D world: {frames} frames x 3 sequences, {what}")
    done = subprocess.run(args, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"[demo] r3d-data synth failed with exit code {done.returncode} (its message is above)")
    if recording == "folder":
        first_test = json.loads((data / "splits.json").read_text())["test"][0]
        sequence = data / "sequences" / first_test
        return sequence, sequence / "labels.csv"
    found = sorted((data / "recordings").glob("*.db3"))
    if not found:
        raise SystemExit(f"[demo] r3d-data synth wrote no .db3 recording under {data}/recordings")
    labels = data / "sequences" / found[0].stem / "labels.csv"
    return found[0], labels


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R3D_")}  # the demo's own settings only
    args = [command("r3d-serve"), str(model), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    say(f"starting the service on http://127.0.0.1:{port} with {model} (log: {log})")
    with log.open("wb") as f:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # graceful: sessions get a shutdown notice, uvicorn drains
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint or export bundle (%(default)s)")
    p.add_argument("--out", type=Path, help="output folder (default outputs/demo-<date-time>)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the synthetic recording")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fast", action="store_true", help="stream as fast as possible instead of in real time")
    p.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    p.add_argument(
        "--recording", choices=RECORDINGS, default="auto",
        help="what to stream: a RealSense .db3 recording (needs pyrealsense2 and libusb), the dataset folder of the "
        "same sequence (needs neither), or auto: db3 when pyrealsense2 loads, else folder (default: %(default)s)",
    )  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.monotonic()

    if not args.model.exists():
        raise SystemExit(
            f"[demo] no model at {args.model}: expected the committed default (models/default) or "
            "--model PATH to a checkpoint (.safetensors) or an export bundle folder"
        )
    out = (args.out or ROOT / "outputs" / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kind = choose_recording(args.recording, realsense_unavailable())
    t_synth = time.monotonic()
    recording, labels = synthesise(out, args.seconds, args.seed, kind)
    say(f"recording: {recording} ({time.monotonic() - t_synth:.0f} s)")

    from clients.sdk import Client
    from clients.stream_cli import StreamArgs, run_stream

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.model.resolve(), port, out / "server.log")
    try:
        with Client(url) as client:
            deadline = time.monotonic() + 120
            while not client.ready():
                if server.poll() is not None:
                    raise SystemExit(f"[demo] the service exited with code {server.returncode}; see {out}/server.log")
                if time.monotonic() > deadline:
                    raise SystemExit(f"[demo] the service was not ready within 120 s; see {out}/server.log")
                time.sleep(0.3)
        say(f"service ready; viewer: {url}/viewer/ (while the demo runs)")
        player = "the RealSense playback client" if kind == "db3" else "the dataset-folder source"
        say(f"streaming through {player}; one line per anticipation:")
        summary = run_stream(
            StreamArgs(
                source=str(recording), server=url, fast=args.fast, jsonl=out / "predictions.jsonl",
                png=out / "timeline.png", summary=out / "summary.json", labels=labels if labels.exists() else None,
            )
        )  # fmt: skip
    finally:
        say("stopping the service")
        stop_server(server)
    say(f"done in {time.monotonic() - t_start:.0f} s. Outputs in {out}:")
    for name, what in (
        ("timeline.png", "timeline: ground truth, current action, anticipated actions"),
        ("predictions.jsonl", f"{summary['predictions']} predictions, one JSON per line"),
        ("summary.json", "fps, drops and latency of the run"),
        ("server.log", "the service's log"),
    ):
        say(f"  {out / name}  ({what})")
    return 0


def run_without_traceback(argv: list[str] | None = None) -> int:
    """main(), with an unexpected error reported in one line and its traceback kept in a file, not on the screen."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:  # the newcomer sees what failed and where the details are, never a traceback
        log = ROOT / "outputs" / "demo-error.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        say(f"failed: {type(exc).__name__}: {exc} (traceback in {log})")
        return 1


if __name__ == "__main__":
    raise SystemExit(run_without_traceback())
