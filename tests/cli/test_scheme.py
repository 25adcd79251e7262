"""Every command follows one scheme: help on every flag with its default, an
Examples epilog whose lines run, ``-f`` only for input, ``-o`` only for output."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import build_parser
from controller.cli.options import HelpFormatter, shows_default


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """(command path, parser, the help its parent lists for it) for the whole tree."""
    yield path, parser, None
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        listed = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            for sub_path, sub, sub_help in _parsers(child, (*path, name)):
                yield sub_path, sub, listed.get(name) if sub is child else sub_help


def _name(path: tuple[str, ...]) -> str:
    return " ".join(path) or "guard"


PARSERS = list(_parsers(build_parser()))
COMMANDS = [(path, parser) for path, parser, _ in PARSERS if path]
LEAVES = [
    (path, parser)
    for path, parser in COMMANDS
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
]


def test_the_tree_has_every_command() -> None:
    assert {_name(p) for p, _ in LEAVES} == {
        "policy lint",
        "policy test",
        "keygen",
        "attest review",
        "attest sign",
        "attest verify",
        "tf-plan",
        "tf-config",
        "serve",
        "kube check",
        "kube baseline",
    }


@pytest.mark.parametrize(
    ("path", "parser", "listed"), PARSERS, ids=[_name(p) for p, _, _ in PARSERS]
)
def test_every_command_and_flag_has_help(
    path: tuple[str, ...], parser: argparse.ArgumentParser, listed: str | None
) -> None:
    if path:
        assert listed, f"guard {_name(path)} has no help line in its parent's list"
        assert parser.description, f"guard {_name(path)} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        label = "/".join(action.option_strings) or action.metavar or action.dest
        assert action.help and action.help != argparse.SUPPRESS, (
            f"guard {_name(path)} {label}: no help text"
        )


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_every_default_is_shown(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    assert parser.formatter_class is HelpFormatter
    formatter = parser._get_formatter()
    shown = 0
    for action in parser._actions:
        if not shows_default(action):
            continue
        text = formatter._expand_help(action)
        assert f"default: {action.default}" in text, (
            f"guard {_name(path)} {'/'.join(action.option_strings)}: help does not show its "
            f"default {action.default!r}: {text!r}"
        )
        shown += 1
    # The help as printed carries them too (a formatter bug would drop them).
    if shown:
        assert "(default: " in parser.format_help()


def test_defaults_that_were_missing_are_shown() -> None:
    helps = {_name(p): parser.format_help() for p, parser, _ in PARSERS}
    assert "(default: ecdsa)" in helps["keygen"]
    assert "(default: /etc/guard/tls/tls.crt)" in helps["serve"]
    assert "(default: 8443)" in helps["serve"]
    assert "(default: text)" in helps["kube check"]
    assert "(default: 30d)" in helps["attest review"]


def _examples(parser: argparse.ArgumentParser) -> list[str]:
    epilog = parser.epilog or ""
    assert epilog.startswith("Examples:") or "\nExamples:" in epilog
    return [line.strip() for line in epilog.splitlines() if line.strip().startswith("guard ")]


@pytest.mark.parametrize(
    ("path", "parser", "listed"), PARSERS, ids=[_name(p) for p, _, _ in PARSERS]
)
def test_every_command_has_examples_that_parse(
    path: tuple[str, ...], parser: argparse.ArgumentParser, listed: str | None
) -> None:
    examples = _examples(parser)
    assert examples, f"guard {_name(path)} has no examples"
    fresh = build_parser()
    for line in examples:
        argv = shlex.split(line)[1:]
        assert tuple(argv[: len(path)]) == path, f"{line!r} is not an example of {_name(path)}"
        try:
            args = fresh.parse_args(argv)
        except SystemExit:
            pytest.fail(f"guard {_name(path)}: example {line!r} does not parse")
        assert callable(args.handler)
        if "--output" in argv or "-o" in argv:
            # report commands take FORMAT=FILE; attest review/sign write the
            # envelope, kube baseline the GuardBaseline documents
            if path == ("kube", "baseline"):
                assert isinstance(args.output, Path), line
                continue
            for value in args.output:
                assert "=" in value or (path[0] == "attest" and path[-1] != "verify"), line


def test_examples_are_shown_by_help() -> None:
    help_text = dict(COMMANDS)[("tf-plan",)].format_help()
    assert "Examples:\n  # " in help_text
    assert "  guard tf-plan plan.bin --trust trust.yaml" in help_text


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_short_flags_mean_one_thing_everywhere(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    """-f is the input (kubectl's habit), -o an output, -q quiet, -v verbose."""
    meaning = {"-f": "--filename", "-o": "--output", "-q": "--quiet", "-v": "--verbose"}
    for action in parser._actions:
        shorts = [o for o in action.option_strings if len(o) == 2 and o != "-h"]
        for short in shorts:
            assert short in meaning, f"guard {_name(path)}: unexpected short flag {short}"
            assert meaning[short] in action.option_strings, (
                f"guard {_name(path)}: {short} means {action.option_strings}"
            )


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[_name(p) for p, _ in LEAVES])
def test_every_command_but_serve_has_quiet(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    flags = {o for a in parser._actions for o in a.option_strings}
    assert ("--quiet" in flags) is (path != ("serve",))


REPORTING = [("tf-plan",), ("tf-config",), ("kube", "check")]


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[_name(p) for p, _ in LEAVES])
def test_reports_use_format_and_output_pairs(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    """Every command that prints a verdict takes --format and -o FORMAT=FILE;
    attest review and sign write an envelope with -o FILE, kube baseline its
    documents (documented)."""
    by_flag = {o: a for a in parser._actions for o in a.option_strings}
    if path in (("attest", "review"), ("attest", "sign"), ("kube", "baseline")):
        assert by_flag["--output"].metavar == "FILE"
        assert by_flag["--output"] is by_flag["-o"]
        assert "-o/--output here names the" in (parser.description or "")
        return
    if path in (("keygen",), ("serve",)):
        assert "--output" not in by_flag
        return
    assert by_flag["--output"].metavar == "FORMAT=FILE"
    assert by_flag["--output"] is by_flag["-o"]
    assert "text" in (by_flag["--format"].choices or ())
    assert "json" in (by_flag["--format"].choices or ())
    if path in REPORTING:
        assert set(by_flag["--format"].choices or ()) == {"text", "json", "sarif", "junit"}


@pytest.mark.parametrize("path", [("tf-plan",), ("kube", "check")])
def test_attestation_flags_are_the_same_where_they_exist(path: tuple[str, ...]) -> None:
    parser = dict(COMMANDS)[path]
    by_flag = {o: a for a in parser._actions for o in a.option_strings}
    assert by_flag["--attestation"].dest == by_flag["--attestations"].dest
    assert "deprecated" in (by_flag["--attestations"].help or "")
    assert "folders" in (by_flag["--attestation"].help or "")
