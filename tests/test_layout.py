"""The layout: every import between our packages (lazy ones inside functions included, read with `ast`) points one
way, and docs/architecture.md shows the graph as it is.

    rgbd -> nothing of ours        model -> rgbd (rgbd.files only)       training -> model, rgbd
    export -> model, rgbd          server -> model, export, rgbd         clients -> server.protocol, rgbd
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "rgbd": set(),
    "model": {"rgbd"},
    "training": {"model", "rgbd"},
    "export": {"model", "rgbd"},
    "server": {"model", "export", "rgbd"},
    "clients": {"server.protocol", "rgbd"},
}
# model needs nothing of the ground floor but its atomic file writer
ALLOWED_MODULES: dict[str, tuple[str, ...]] = {"model": ("rgbd.files",)}


def _load_import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", REPOSITORY / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = _load_import_graph()
IMPORTS: dict[str, set[str]] = GRAPH.project_imports(REPOSITORY)


def _forbidden(module: str, target: str) -> bool:
    source, node = module.split(".")[0], GRAPH.owner(target)
    if node is None or node.split(".")[0] == source:
        return False
    if node not in ALLOWED[source]:
        return True
    only = ALLOWED_MODULES.get(source)
    return only is not None and not any(target == m or target.startswith(m + ".") for m in only)


def test_the_graph_covers_every_package_and_sees_lazy_imports() -> None:
    assert {m.split(".")[0] for m in IMPORTS} == set(ALLOWED)
    assert len(IMPORTS) > 100
    # a lazy import inside a function body counts (training.importers.recordings reads recordings only there)
    assert "rgbd.open" in IMPORTS["training.importers.recordings"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_layout_allows(package: str) -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in IMPORTS.items()
        if module.split(".")[0] == package
        for target in targets
        if _forbidden(module, target)
    )
    allowed = ", ".join(sorted(ALLOWED[package])) or "nothing of ours"
    assert wrong == [], f"{package} may import {allowed}; these imports point against the layout: {wrong}"


def test_the_forbidden_check_catches_an_upward_import() -> None:
    assert _forbidden("rgbd.frame", "model.r3d")
    assert _forbidden("model.checkpoint", "rgbd.realsense")
    assert _forbidden("clients.stream_cli", "server.engine")
    assert _forbidden("clients.score_cli", "server.batch.local")
    assert _forbidden("server.jobs", "clients.timeline")
    assert not _forbidden("clients.stream_cli", "server.protocol.messages")
    assert not _forbidden("training.train", "model.r3d")


def test_architecture_doc_shows_the_import_graph_as_it_is() -> None:
    doc = (REPOSITORY / "docs" / "architecture.md").read_text()
    expected = GRAPH.render(GRAPH.package_arrows(IMPORTS))
    begin, end = doc.find(GRAPH.BEGIN), doc.find(GRAPH.END)
    assert begin >= 0 and end > begin, "docs/architecture.md lacks the generated import-graph block"
    assert doc[begin : end + len(GRAPH.END)] == expected, (
        "docs/architecture.md's import graph is out of date; replace its block with the output of "
        f"`python scripts/import_graph.py`:\n{expected}"
    )


def test_no_committed_text_file_names_a_machine_path() -> None:
    """Results, configs and docs record paths relative to the repository (or by name), never one machine's folders."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the committed files cannot be listed")
    machine_path = re.compile(r"(?:^|[^\w.~])/(?:work|root|home|Users)/[\w.-]")
    found = []
    for name in listed.stdout.decode().split("\0"):
        path = REPOSITORY / name
        if not name or not path.is_file() or b"\0" in path.read_bytes()[:8192]:
            continue  # binary files (the checkpoint's metadata is JSON inside a binary file: not checked here)
        found += [f"{name}:{i}" for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                  if machine_path.search(line)]  # fmt: skip
    assert found == [], f"absolute machine paths in committed files: {found}"
