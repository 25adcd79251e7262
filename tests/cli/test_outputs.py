"""One output scheme: --format for standard output, -o FORMAT=FILE for files,
--quiet, colour only on a terminal and never with NO_COLOR."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from controller.errors import InputError
from controller.policy.documents import Action, Severity, Target
from controller.policy.results import Decision, Finding, Result
from controller.report.context import ReportContext
from controller.report.output import (
    STDOUT,
    OutputSpec,
    parse_output,
    parse_outputs,
    write_reports,
)
from tests.cli.conftest import (
    APP_DIGEST,
    ATTESTATIONS,
    DEMO_TRUST,
    EXAMPLES,
    FAILING_PLAN,
    PASSING_PLAN,
    POLICIES,
    WEB,
    Guard,
)

# One valid invocation of every command that prints a verdict, with its exit code.
REPORTERS: dict[str, tuple[list[str], int]] = {
    "tf-plan": (["tf-plan", str(FAILING_PLAN)], 1),
    "tf-config": (["tf-config", str(EXAMPLES / "terraform" / "config")], 0),
    "kube check": (
        ["kube", "check", "-f", str(WEB), "--trust", str(DEMO_TRUST), "--attestation",
         str(ATTESTATIONS / "app-reviewed.json"), "--user", "dana@example.com"],
        0,
    ),
    "policy lint": (["policy", "lint", str(POLICIES)], 0),
    "policy test": (["policy", "test", str(POLICIES)], 0),
    "attest verify": (
        ["attest", "verify", str(ATTESTATIONS / "app-reviewed.json"), "--trust",
         str(DEMO_TRUST), "--digest", APP_DIGEST],
        0,
    ),
}  # fmt: skip


def test_the_reporting_commands_run_as_listed(guard: Guard) -> None:
    for name, (argv, code) in REPORTERS.items():
        run = guard(*argv)
        assert run.code == code, (name, run.out[-2000:], run.err)
        assert run.out.strip(), name


@pytest.mark.parametrize("name", sorted(REPORTERS))
@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("json", "for standard output use --format json; for a file, --output json=FILE"),
        ("report.json", "write --output json=report.json"),
    ],
)
def test_a_bare_output_is_refused_with_a_hint(
    guard: Guard,
    name: str,
    value: str,
    hint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv, _ = REPORTERS[name]
    run = guard(*argv, "--output", value)
    assert run.code == 2
    assert run.out == ""
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith(f"guard: error: --output {value!r}: expected FORMAT=FILE; ")
    assert hint in run.err
    assert list(tmp_path.iterdir()) == [], "nothing may be written for a refused --output"


def test_output_values_are_parsed_strictly() -> None:
    assert parse_output("sarif=out/guard.sarif") == OutputSpec("sarif", "out/guard.sarif")
    assert parse_output("json=-") == OutputSpec("json", STDOUT)
    # a file name with '=' in it still needs the format in front
    assert parse_output("json=a=b.json") == OutputSpec("json", "a=b.json")
    with pytest.raises(InputError, match="unknown format 'xml'"):
        parse_output("xml=a.xml")
    with pytest.raises(InputError, match="name a file after '='"):
        parse_output("json=")
    with pytest.raises(InputError, match=r"--output sarif=guard\.sarif"):
        parse_output("guard.sarif")
    with pytest.raises(InputError, match="unknown format 'sarif'"):
        parse_output("sarif=x", formats=("text", "json"))
    with pytest.raises(InputError, match="only one report can go to standard output"):
        parse_outputs("text", ["json=-", "sarif=-"])
    assert parse_outputs("text", ["json=-"]) == [OutputSpec("json", STDOUT)]
    assert parse_outputs("sarif", ["json=a.json"]) == [
        OutputSpec("sarif", STDOUT),
        OutputSpec("json", "a.json"),
    ]
    assert parse_outputs("text", ["json=a.json"], quiet=True) == [OutputSpec("json", "a.json")]


def test_output_pairs_write_every_format_beside_the_standard_output(
    guard: Guard, tmp_path: Path
) -> None:
    files = {fmt: tmp_path / f"guard.{fmt}" for fmt in ("json", "sarif", "junit", "text")}
    pairs = [arg for fmt, path in files.items() for arg in ("-o", f"{fmt}={path}")]
    run = guard("tf-plan", FAILING_PLAN, *pairs)
    assert run.code == 1
    assert run.out.startswith("CRITICAL") or "DENY" in run.out  # the text report
    assert json.loads(files["json"].read_text())["verdict"] == "denied"
    assert json.loads(files["sarif"].read_text())["version"] == "2.1.0"
    assert files["junit"].read_text().startswith("<?xml")
    assert "DENIED" in files["text"].read_text()
    # A report to standard output can be replaced: FORMAT=-
    replaced = guard("tf-plan", FAILING_PLAN, "--output", "json=-")
    assert json.loads(replaced.out)["allowed"] is False


def test_without_a_report_on_standard_output_the_summary_line_is_printed(
    guard: Guard, tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    run = guard("tf-plan", FAILING_PLAN, "-o", f"sarif={tmp_path / 's'}", "-o", "json=-")
    assert json.loads(run.out)["verdict"] == "denied"  # the JSON report, not the summary
    run = guard("tf-plan", FAILING_PLAN, "-o", f"json={report}", "--format", "sarif")
    assert json.loads(run.out)["version"] == "2.1.0" and report.exists()
    run = guard("tf-config", EXAMPLES / "terraform" / "config", "-o", f"json={report}", "-q")
    assert run.out == "" and report.exists()


@pytest.mark.parametrize("name", sorted(REPORTERS))
def test_quiet_prints_nothing_but_keeps_the_exit_code_and_the_files(
    guard: Guard, name: str, tmp_path: Path
) -> None:
    argv, code = REPORTERS[name]
    report = tmp_path / "out.json"
    run = guard(*argv, "--quiet", "-o", f"json={report}")
    assert (run.code, run.out, run.err) == (code, "", "")
    assert json.loads(report.read_text())


def test_quiet_still_prints_errors(guard: Guard, tmp_path: Path) -> None:
    run = guard("tf-plan", tmp_path / "missing.json", "--quiet")
    assert run.code == 2
    assert run.out == ""
    assert run.err.startswith("guard: error: ")


def test_quiet_silences_keygen_and_the_messages_of_attest(guard: Guard, tmp_path: Path) -> None:
    run = guard("keygen", "ci", "--dir", tmp_path, "--quiet")
    assert (run.code, run.out, run.err) == (0, "", "")
    assert (tmp_path / "ci.key").exists()
    envelope = tmp_path / "e.json"
    run = guard(
        "attest", "review", "--key", tmp_path / "ci.key", "--repository", "github.com/a/b",
        "--target-ref", "refs/heads/main", "--revision", "abc", "--change-id", "1",
        "--author", "a=github:1", "--digest", APP_DIGEST, "-o", envelope, "--quiet",
    )  # fmt: skip
    assert (run.code, run.out, run.err) == (0, "", "")
    assert json.loads(envelope.read_text())["payloadType"]
    run = guard("attest", "sign", envelope, "--key", tmp_path / "ci.key", "--quiet")
    assert run.code == 2 and "already signed by this key" in run.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _denied() -> Decision:
    finding = Finding(
        policy="p",
        rule="r",
        severity=Severity.high,
        action=Action.deny,
        result=Result.fail,
        target=Target.kubernetes,
        address="a",
        message="m",
    )
    return Decision.of([finding], subjects=1)


@pytest.mark.parametrize(
    ("terminal", "no_color", "coloured"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_colour_only_on_a_terminal_and_never_with_no_color(
    terminal: bool, no_color: bool, coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    stream = _Terminal() if terminal else io.StringIO()
    context = ReportContext(command="guard test", source="x")
    write_reports(_denied(), context, parse_outputs("text", []), stdout=stream)
    assert ("\033[" in stream.getvalue()) is coloured
    assert "DENY" in stream.getvalue()


def test_files_are_never_coloured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    target = tmp_path / "r.txt"
    stream = _Terminal()
    context = ReportContext(command="guard test", source="x")
    write_reports(_denied(), context, parse_outputs("text", [f"text={target}"]), stdout=stream)
    assert "\033[" in stream.getvalue()
    assert "\033[" not in target.read_text()


# --------------------------------------------------------------------------- JSON results


def test_attest_verify_json_has_the_same_keys_either_way(guard: Guard) -> None:
    common = ["--trust", DEMO_TRUST, "--policy", POLICIES / "review.yaml", "--digest", APP_DIGEST]
    verified = guard(
        "attest", "verify", ATTESTATIONS / "app-reviewed.json", *common, "--format", "json"
    )
    rejected = guard(
        "attest", "verify", ATTESTATIONS / "app-self-approved.json", *common, "--format", "json"
    )  # fmt: skip
    assert (verified.code, rejected.code) == (0, 1)
    good, bad = json.loads(verified.out), json.loads(rejected.out)
    keys = ["verified", "digest", "scope", "envelope", "approvers", "reasons"]
    assert list(good) == keys and list(bad) == keys
    assert good["verified"] is True and bad["verified"] is False
    assert good["approvers"] == ["bob", "carol"]
    assert good["envelope"] == str(ATTESTATIONS / "app-reviewed.json")
    assert good["reasons"] == []
    assert bad["envelope"] is None and bad["approvers"] == []
    assert any("alice approved their own change" in r for r in bad["reasons"])


def test_attest_verify_reads_a_folder_of_envelopes(guard: Guard) -> None:
    run = guard(
        "attest", "verify", ATTESTATIONS, "--trust", DEMO_TRUST, "--digest", APP_DIGEST,
        "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.out
    assert json.loads(run.out)["envelope"].startswith(str(ATTESTATIONS))


def test_policy_test_json_has_the_same_keys_either_way(guard: Guard, tmp_path: Path) -> None:
    passing = guard("policy", "test", POLICIES, "--format", "json")
    failing_dir = _failing_case(tmp_path)
    failing = guard("policy", "test", failing_dir, "--format", "json")
    assert (passing.code, failing.code) == (0, 1)
    good, bad = json.loads(passing.out), json.loads(failing.out)
    assert list(good) == list(bad) == ["passed", "failed", "cases"]
    assert good["failed"] == 0 and good["passed"] == len(good["cases"]) > 10
    assert bad["failed"] == 1
    case_keys = ["test", "case", "source", "passed", "expected", "actual", "problems", "findings"]
    assert all(list(c) == case_keys for c in good["cases"] + bad["cases"])
    [failed] = [c for c in bad["cases"] if not c["passed"]]
    assert failed["expected"] == "pass" and failed["actual"] == "fail"
    assert [list(f) for f in failed["findings"]] == [
        ["result", "policy", "rule", "address", "message"]
    ]


def _failing_case(folder: Path) -> Path:
    """require-owner with one case whose expectation is wrong."""
    (folder / "policy.yaml").write_text((POLICIES / "require-owner.yaml").read_text())
    (folder / "policy.test.yaml").write_text(
        "apiVersion: guard.dev/v1alpha1\nkind: GuardPolicyTest\nmetadata: {name: t}\nspec:\n"
        "  cases:\n"
        "    - name: a pod without owner is wrongly expected to pass\n"
        "      policies: [require-owner]\n"
        "      object: {apiVersion: v1, kind: Pod, metadata: {name: p},\n"
        "               spec: {containers: [{name: a, image: ghcr.io/example/app}]}}\n"
        "      expect: {result: pass}\n"
    )
    return folder


def test_passing_plan_review_names_the_approvers_and_the_attestation(
    guard: Guard, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(PASSING_PLAN.read_bytes())
    attestation = tmp_path / "plan.intoto.json"
    review = guard(
        "attest", "review", "--key", EXAMPLES / "keys" / "ci-attester.key",
        "--repository", "github.com/example/app", "--target-ref", "refs/heads/main",
        "--revision", "9f2c4e1", "--change-id", "43", "--author", "alice=github:1001",
        "--approval", "carol=github:1003", "--subject-file", plan, "-o", attestation,
    )  # fmt: skip
    assert review.code == 0, review.err
    run = guard(
        "tf-plan", plan, "--trust", DEMO_TRUST, "--attestation", tmp_path,
        "--accept-json-review", "--format", "json",
    )  # fmt: skip
    assert run.code == 0, run.out
    assert json.loads(run.out)["summary"]["review"] == (
        f"passed: approved by carol in {attestation} (require-review)"
    )
