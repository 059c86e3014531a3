"""The r3d-stream and r3d-score flags mirror their options dataclasses one to one, with the same defaults."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from clients import score_cli, stream_cli

CASES: list[tuple[Callable[[], argparse.ArgumentParser], Any]] = [
    (stream_cli.build_parser, stream_cli.StreamArgs),
    (score_cli.build_parser, score_cli.ScoreArgs),
]
NOT_OPTIONS = {"help", "verbose"}  # flags that configure the command itself, not the run


@pytest.mark.parametrize(("build_parser", "options"), CASES, ids=["r3d-stream", "r3d-score"])
def test_every_option_has_one_flag_and_every_flag_one_option(
    build_parser: Callable[[], argparse.ArgumentParser], options: Any
) -> None:
    dests = {action.dest for action in build_parser()._actions} - NOT_OPTIONS
    assert dests == {f.name for f in dataclasses.fields(options)}


@pytest.mark.parametrize(("build_parser", "options"), CASES, ids=["r3d-stream", "r3d-score"])
def test_flag_defaults_are_the_options_defaults(
    build_parser: Callable[[], argparse.ArgumentParser], options: Any
) -> None:
    parsed = vars(build_parser().parse_args(["take.db3"]))
    assert options(**{k: v for k, v in parsed.items() if k not in NOT_OPTIONS}) == options(source="take.db3")
