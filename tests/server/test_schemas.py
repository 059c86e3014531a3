"""docs/schemas/ holds the current JSON schema of every wire message (regenerate: python -m server.schemas)."""

from __future__ import annotations

from pathlib import Path

from server.schemas import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_docs_schemas_match_the_protocol_models() -> None:
    expected = render()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "run: python -m server.schemas docs/schemas"
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert not stale, f"stale schemas {stale}; run: python -m server.schemas docs/schemas"
