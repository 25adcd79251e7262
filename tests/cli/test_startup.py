"""Each command loads only what it runs: ``guard --help`` lists every command
from the catalog without importing them, and the commands CI runs most never
load the forge, Kubernetes or Kopf clients.

Start-up is checked by which modules a fresh interpreter holds afterwards,
never by timing it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import build_parser, main
from controller.cli.catalog import COMMANDS
from tests.cli.conftest import APP_DIGEST, ATTESTATIONS, DEMO_TRUST, FAILING_PLAN, ROOT

# Libraries that take from a tenth of a second to seconds to import.
HEAVY = (
    "pydantic",
    "cel_expr_python",
    "githubkit",
    "gitlab",
    "httpx",
    "kubernetes",
    "kopf",
    "cryptography",
)
FORGES_AND_KOPF = ("githubkit", "gitlab", "httpx", "kopf")

_PROBE = """\
import contextlib, io, json, sys
from controller.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "loaded": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def _loaded(argv: list[str | Path], watched: tuple[str, ...]) -> tuple[int, list[str]]:
    """Run ``guard ARGV`` in a fresh interpreter: its exit code, and which of
    ``watched`` it imported."""
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([str(a) for a in argv]), json.dumps(watched)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    found = json.loads(probe.stdout)
    return found["code"], found["loaded"]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []], ids=["help", "version", "none"])
def test_help_and_version_load_no_heavy_library(argv: list[str | Path]) -> None:
    code, loaded = _loaded(argv, HEAVY)
    assert code == (2 if not argv else 0)
    assert loaded == []


@pytest.mark.parametrize(
    "argv",
    [
        ["tf-plan", "--help"],
        ["tf-plan", FAILING_PLAN, "-q"],
        ["tf-config", "--help"],
        ["attest", "verify", "--help"],
        [
            "attest",
            "verify",
            ATTESTATIONS / "app-reviewed.json",
            "--trust",
            DEMO_TRUST,
            "--digest",
            APP_DIGEST,
            "-q",
        ],
    ],
    ids=["tf-plan-help", "tf-plan", "tf-config-help", "attest-verify-help", "attest-verify"],
)
def test_ci_commands_load_no_forge_client_and_no_kopf(argv: list[str | Path]) -> None:
    code, loaded = _loaded(argv, FORGES_AND_KOPF)
    assert code in (0, 1)  # ran (1: the failing plan's findings), not bad input
    assert loaded == []


def test_a_plan_judged_without_trust_loads_no_signature_verifier() -> None:
    """Without ``--trust`` there is nothing to verify: the attestation stack
    (certificates, signatures, provenance) stays unloaded."""
    code, loaded = _loaded(
        ["tf-plan", FAILING_PLAN, "-q"],
        ("cryptography", "nacl", "controller.attest.chain", "controller.attest.trust"),
    )
    assert code == 1
    assert loaded == []


def test_a_plan_judged_with_trust_loads_the_verifier() -> None:
    code, loaded = _loaded(
        ["tf-plan", FAILING_PLAN, "-q", "--trust", DEMO_TRUST],
        ("controller.attest.chain", "controller.attest.trust"),
    )
    assert code == 1
    assert loaded == ["controller.attest.chain", "controller.attest.trust"]


def _listed(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    """The commands the top-level help lists, in order, with their help."""
    assert parser._subparsers is not None
    (commands,) = parser._subparsers._group_actions
    assert isinstance(commands, argparse._SubParsersAction)
    return [(choice.dest, choice.help) for choice in commands._choices_actions]


def test_the_catalog_lists_each_command_with_the_help_its_module_registers() -> None:
    full = build_parser()
    assert _listed(build_parser(["--help"])) == _listed(full)
    assert _listed(full) == [(c.name, c.help) for c in COMMANDS]


def test_guard_help_prints_what_the_full_parser_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == build_parser().format_help()


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_the_named_command_is_registered_in_full(name: str) -> None:
    def command(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        assert parser._subparsers is not None
        (commands,) = parser._subparsers._group_actions
        assert isinstance(commands, argparse._SubParsersAction)
        found: argparse.ArgumentParser = commands.choices[name]
        return found

    assert (
        command(build_parser([name, "--help"])).format_help()
        == command(build_parser()).format_help()
    )


def test_an_unknown_command_is_argparse_usual_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["nosuch"])
    assert exit.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


_VALIDATORS_PROBE = """\
import contextlib, io, json, sys
from controller.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(json.loads(sys.argv[1]))
from controller.policy import documents, strictmodel
from controller.policy.baseline import GuardBaseline
kinds = [*documents.DOCUMENT_KINDS.values(), GuardBaseline]
if sys.argv[2] == "complete":
    strictmodel.complete_guard_models()
print(json.dumps({kind.__name__: kind.__pydantic_complete__ for kind in kinds}))
"""


def _validators_built(argv: list[str | Path], complete: bool = False) -> dict[str, bool]:
    probe = subprocess.run(
        [
            sys.executable, "-c", _VALIDATORS_PROBE, json.dumps([str(a) for a in argv]),
            "complete" if complete else "as-is",
        ],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    built: dict[str, bool] = json.loads(probe.stdout)
    return built


def test_a_command_builds_the_validators_of_the_documents_it_reads_only() -> None:
    built = _validators_built(["tf-plan", FAILING_PLAN, "-q"])
    assert built["GuardPolicy"]
    assert not any(built[k] for k in ("GuardTrust", "GuardPolicyTest", "GuardBaseline"))


def test_guard_serve_builds_every_validator_before_it_serves() -> None:
    """``guard serve`` calls ``complete_guard_models`` (through
    ``freeze_start_up_objects``) so that no request builds one."""
    assert all(_validators_built(["tf-plan", FAILING_PLAN, "-q"], complete=True).values())
