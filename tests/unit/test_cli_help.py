"""`taskgrove --help` and each command's: a description, the defaults and the environment
variables; `--version`; and the README's command-line blocks agree with the parser."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import pytest
from taskgrove._cli import build_parser
from taskgrove_server.config import ServerConfig, env_name

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


PARSER = build_parser()
COMMANDS = commands(PARSER)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"taskgrove {version('taskgrove')}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_and_helped_arguments(name: str) -> None:
    command = COMMANDS[name]
    assert command.description, f"`taskgrove {name} --help` has no description"
    for action in command._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name} {label} has no help"
        default = action.default
        if default not in (None, False, True, [], argparse.SUPPRESS):
            assert "default" in action.help, f"{name} {label}: help does not give {default!r}"


def test_serve_help_names_every_environment_variable_and_the_defaults() -> None:
    text = flat(COMMANDS["serve"].format_help())
    for spec in fields(ServerConfig):
        assert env_name(spec.name) in text, f"serve --help lacks {env_name(spec.name)}"
    assert "TASKGROVE_MAX_CONCURRENCY (256)" in text
    assert "TASKGROVE_LOG_LEVEL (INFO)" in text
    assert "default 256" in text


# ------------------------------------------------------------------ the README


def readme_blocks(*sections: str) -> list[str]:
    """The indented (code) lines of the README's sections, continuation lines joined."""
    text = README.read_text()
    lines: list[str] = []
    for title in sections:
        match = re.search(rf"^## {title}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
        assert match, f"README has no section {title!r}"
        for line in match.group(1).splitlines():
            if not line.startswith("    "):
                continue
            code = line.split(" # ", 1)[0].strip()
            if code.startswith("taskgrove"):
                lines.append(code)
            elif lines and code:
                lines[-1] += " " + code
    return lines


def shown_commands() -> list[tuple[str, list[str]]]:
    """(command, options shown) for each command of the README's command-line blocks."""
    shown = []
    for line in readme_blocks("Command line", "Server"):
        # `cancel ID | retry ID | explain ID [--json]`: the options at the end are each's.
        segments = []
        for segment in line.removeprefix("taskgrove").split(" | "):
            words = segment.split()
            name = next((w for w in words if not w.startswith("-")), "")
            segments.append((name, re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", segment)))
        last = segments[-1][1]
        shown += [(name, options or last) for name, options in segments]
    return shown


def test_the_readme_shows_only_commands_and_options_that_exist() -> None:
    global_options = {s for a in PARSER._actions for s in a.option_strings}
    for name, options in shown_commands():
        if not name:  # `taskgrove --version`
            assert set(options) <= global_options, options
            continue
        assert name in COMMANDS, f"README shows `taskgrove {name}`, which does not exist"
        known = {s for a in COMMANDS[name]._actions for s in a.option_strings} | global_options
        for option in options:
            assert option in known, f"README shows `taskgrove {name} {option}`: no such option"


def test_every_command_is_in_the_readme() -> None:
    shown = {name for name, _ in shown_commands()}
    assert set(COMMANDS) - shown == set(), "commands missing from the README's CLI blocks"


def test_the_readme_shows_every_option_of_the_client_commands() -> None:
    """The short block lists every option of each client command (connection flags, said
    once above the block, excepted)."""
    connection = {s for a in PARSER._actions for s in a.option_strings}
    shown: dict[str, set[str]] = {}
    for name, options in shown_commands():
        shown.setdefault(name, set()).update(options)
    for name, command in COMMANDS.items():
        if name == "serve":
            continue
        own = {
            max(a.option_strings, key=len)
            for a in command._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)
        } - connection
        missing = {o for o in own if o not in shown.get(name, set())}
        assert not missing, f"README's `taskgrove {name}` lacks {sorted(missing)}"


def test_taskgrove_alone_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    from taskgrove._cli import main

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: taskgrove")
    assert "serve" in err and "executors" in err
