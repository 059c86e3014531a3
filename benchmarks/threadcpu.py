"""A process's CPU time per thread, by thread name: the load benchmark's "server CPU by thread".

``/proc/PID/task/TID/stat`` gives every thread's CPU seconds (Linux); ``py-spy dump`` names the Python threads (in
r3d-serve: MainThread runs the event loop, which receives every message; r3d-decode_N the decode pool; r3d-inference
the inference worker). Threads without a Python stack are native: ONNX Runtime's intra-op pool, OpenCV's. CPU time
does not depend on sampling: on a loaded machine py-spy's samples counted pool threads waiting for work as busy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

NATIVE = "native threads (no Python stack: ONNX Runtime, OpenCV)"
_DUMP_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "([^"]*)"', re.MULTILINE)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """{thread id: user + system CPU seconds} of every live thread of ``pid``; {} when /proc cannot be read."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return out


def parse_dump(text: str) -> dict[int, str]:
    """``py-spy dump`` output -> {thread id: Python thread name}."""
    return {int(tid): name for tid, name in _DUMP_THREAD.findall(text)}


def python_thread_names(pid: int) -> dict[int, str]:
    """The Python threads of ``pid`` by id, from ``py-spy dump``; {} when py-spy is missing or cannot attach."""
    exe = shutil.which("py-spy")
    if exe is None:
        return {}
    try:
        done = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_dump(done.stdout)


def _group(name: str) -> str:
    """Threads of one pool count together: r3d-decode_0 and r3d-decode_1 -> r3d-decode."""
    if name == "MainThread":
        return "MainThread (event loop)"
    return re.sub(r"_\d+$", "", name)


def cpu_by_thread(
    before: dict[int, float], after: dict[int, float], names: dict[int, str]
) -> list[tuple[str, float, float]]:
    """(thread group, CPU seconds between the two snapshots, share of the process's), the largest first. Threads
    that ``names`` does not know are native; a thread born in between counts from 0."""
    used: dict[str, float] = {}
    for tid, seconds in after.items():
        group = _group(names[tid]) if tid in names else NATIVE
        used[group] = used.get(group, 0.0) + max(seconds - before.get(tid, 0.0), 0.0)
    total = sum(used.values()) or 1.0
    ranked = sorted(used.items(), key=lambda item: (-item[1], item[0]))
    return [(group, round(seconds, 2), round(seconds / total, 3)) for group, seconds in ranked]
