"""Settings: environment (R3D_ prefix), YAML / TOML files, precedence, refusal of weak keys and open exposure;
the r3d-serve command's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.cli import main
from server.settings import load_settings


def test_settings_precedence_is_overrides_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("port: 9001\nmax_sessions: 3\nencoder_max_delay_ms: 2.5\n")
    monkeypatch.setenv("R3D_MAX_SESSIONS", "7")
    s = load_settings(cfg, port=9002)
    assert (s.port, s.max_sessions, s.encoder_max_delay_ms) == (9002, 7, 2.5)


def test_settings_toml_file_and_comma_separated_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('host = "0.0.0.0"\nsession_queue_size = 2\n')
    monkeypatch.setenv("R3D_API_KEYS", "a-very-long-random-key-1,a-very-long-random-key-2")
    s = load_settings(cfg)
    assert s.host == "0.0.0.0" and s.session_queue_size == 2 and len(s.api_keys) == 2 and s.auth_enabled


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"api_keys": ["changeme"]}, "placeholder or shorter than 16"),
        ({"host": "0.0.0.0"}, "reachable from other machines but no api_keys"),
        ({"backend": "cuda"}, "expected a backend in"),
        ({"encoder_max_batch": 0}, "encoder_max_batch"),
        ({"admin_keys": ["short"]}, "admin key #1 is a placeholder or shorter than 16"),
        ({"api_keys": ["k" * 20], "admin_keys": ["k" * 20]}, "an admin key is also an api key"),
        ({"models_dir": Path("srv/models"), "jobs_dir": Path("srv/models/jobs")}, "models_dir and jobs_dir overlap"),
        ({"models_dir": Path("srv"), "data_root": Path("srv/data")}, "models_dir and data_root overlap"),
    ],
)
def test_settings_refuse_bad_values(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        load_settings(None, **overrides)


def test_settings_file_with_unknown_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("max_sesions: 3\n")
    with pytest.raises(ValueError, match=r"unknown settings \['max_sesions'\]"):
        load_settings(cfg)


def test_r3d_serve_without_model_or_with_bad_settings_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 2
    assert "no model" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "no api_keys are set" in capsys.readouterr().err
