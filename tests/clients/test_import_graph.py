"""The camera side's import graph: clients/ imports, of our packages, only rgbd and server.protocol (batch scoring
on this machine runs `python -m server.batch` in a child process instead of importing the server)."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
OURS = ("clients", "rgbd", "server", "model", "training", "export")
ALLOWED = ("clients", "rgbd", "server.protocol")


def _imported_modules(path: Path) -> list[str]:
    """Absolute imports of a file; ``from server import x`` counts as ``server.x``."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            bare = node.module in OURS
            names += [f"{node.module}.{alias.name}" for alias in node.names] if bare else [node.module]
    return names


def _violations(path: Path) -> list[str]:
    return [
        m
        for m in _imported_modules(path)
        if m.split(".")[0] in OURS and not any(m == a or m.startswith(a + ".") for a in ALLOWED)
    ]


def test_clients_import_only_rgbd_and_the_wire_protocol_of_our_packages() -> None:
    files = sorted(CLIENTS.rglob("*.py"))
    assert len(files) > 5 and not (CLIENTS / "local_score.py").exists()
    assert {str(p.relative_to(CLIENTS.parent)): _violations(p) for p in files if _violations(p)} == {}


def test_the_scan_catches_imports_of_server_internals(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import json\nimport model\nfrom server.batch import score_sequence\nfrom server import protocol, runtime\n"
        "from server.protocol import Hello\nfrom rgbd import Frame\n\ndef f():\n    import server.streaming\n"
    )
    assert _violations(bad) == ["model", "server.batch", "server.runtime", "server.streaming"]
