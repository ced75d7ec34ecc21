"""Bad input on the command line, for every command and every typed argument: one line on stderr,
exit code 4 (invalid input, app.core.errors.describe), never a traceback.

The commands are walked from the Typer app itself, so a new command or argument is covered without
touching this file. Each command is run once as a real process (what a user meets); every typed
argument of every command is also checked in-process, where it is quick."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import typer

from agents import REGISTRY
from app.cli import build_app
from app.core.errors import InvalidInput
from app.core.settings import Settings
from tests.cli_support import clean_env, run

ROOT = Path(__file__).resolve().parent.parent
EXIT_INVALID = InvalidInput.exit_code
BAD = "nonsense"
MISSING_FILE = "/nonexistent-opsdesk-folder/file.json"


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    argv: tuple[str, ...]
    names: str  # what the message must name: the parameter, or the option that does not exist


def _inner(annotation: Any) -> Any:
    """`X | None` and `list[X]` -> X."""
    while True:
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
            annotation = args[0]
        else:
            return annotation


def _valid(annotation: Any) -> str:
    kind = _inner(annotation)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return str(next(iter(kind)).value)
    if kind is Path:
        return str(Path(__file__).resolve())  # a file that exists
    return {UUID: "00000000-0000-0000-0000-000000000000", int: "1", float: "1", date: "2026-01-02"}.get(
        kind, "2026-01-02" if kind is datetime else "x"
    )


def _bad(annotation: Any) -> str:
    return MISSING_FILE if _inner(annotation) is Path else BAD


def _typed(annotation: Any) -> bool:
    """A value of this type can be wrong by its shape (a str cannot; a path can name nothing)."""
    return _inner(annotation) not in (str, bool)


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    return walk(typer.main.get_command(build_app(REGISTRY)), ())


def _argv(command: Any, bad: str | None) -> tuple[str, ...]:
    """Every required parameter given a valid value, and `bad` given BAD."""
    argv: list[str] = []
    for param in command.params:
        flag = getattr(param, "is_flag", False)
        if param.name != bad and (not param.required or flag):
            continue
        kind = param.type_descriptor.annotation
        value = _bad(kind) if param.name == bad else _valid(kind)
        argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return tuple(argv)


def cases() -> list[Case]:
    found: list[Case] = []
    for path, command in commands():
        found.append(Case(path, (*path, *_argv(command, None), "--no-such-option"), "--no-such-option"))
        for param in command.params:
            if not getattr(param, "is_flag", False) and _typed(param.type_descriptor.annotation):
                hint = param.name if param.param_type_name == "argument" else param.opts[0]
                found.append(Case(path, (*path, *_argv(command, param.name)), f"'{hint}'"))
    return found


def _check(case: Case, returncode: int, out: str, err: str) -> None:
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert "Traceback" not in out + err, (case.argv, out + err)
    assert returncode == EXIT_INVALID, (case.argv, returncode, out + err)
    assert len(lines) == 1, (case.argv, lines)
    assert lines[0].startswith("invalid_input: opsdesk " + " ".join(case.command)), lines[0]
    assert case.names in lines[0], (case.names, lines[0])


def test_the_walk_finds_every_command_and_its_typed_arguments() -> None:
    found = {" ".join(path) for path, _ in commands()}
    assert {"approvals approve", "agents run", "memory search", "run", "report", "jobs"} <= found
    argvs = {case.argv for case in cases()}
    assert ("approvals", "approve", BAD) in argvs and ("approvals", "list", "--tier", BAD) in argvs
    assert ("agents", "run", BAD) in argvs


@pytest.mark.parametrize("case", cases(), ids=lambda case: " ".join(case.argv))
def test_bad_input_is_one_line_and_exit_4(
    case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(monkeypatch, tmp_path)
    code = run(*case.argv)
    captured = capsys.readouterr()
    _check(case, code, captured.out, captured.err)
    assert not (tmp_path / "data").exists(), "bad input must be refused before anything starts"


def test_each_command_refuses_bad_input_in_one_line_as_a_process(tmp_path: Path) -> None:
    """What a user meets: the real process, its exit code and everything it prints."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env |= {"OPSDESK_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), "COLUMNS": "60"}
    first: dict[tuple[str, ...], Case] = {}
    for case in cases():  # a typed argument's case when the command has one, else the unknown option
        if case.command not in first or first[case.command].names == "--no-such-option":
            first[case.command] = case

    def call(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
        argv = [sys.executable, "-c", "from scheduler import main; main()", *case.argv]
        return case, subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=3) as pool:
        for case, done in pool.map(call, first.values()):
            _check(case, done.returncode, done.stdout, done.stderr)
    assert not (tmp_path / "data").exists()


def test_a_group_without_its_command_shows_its_help_and_exits_4(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(monkeypatch, tmp_path)
    assert run("approvals") == EXIT_INVALID
    captured = capsys.readouterr()
    assert "approve" in captured.out + captured.err and "Traceback" not in captured.out + captured.err
