"""``guard kube audit``: what deny would block, from a dump."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from tests.kube.helpers import (
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    envelope,
    workload,
    write_documents,
)
from tests.operator.test_baseline import owned


@pytest.fixture()
def dump(tmp_path: Path) -> tuple[list[str], Path]:
    cast = Cast.make()
    policies = write_documents(tmp_path / "policies.yaml", TEST_POLICIES)
    trust = write_documents(tmp_path / "trust.yaml", [cast.trust_document()])
    attestation = tmp_path / "web.json"
    attestation.write_text(envelope(cast.ci, [WEB_DIGEST]))
    objects = [
        owned(workload("Deployment", "web", "prod-a", WEB), None),
        owned(workload("Deployment", "legacy", "prod-b", UNATTESTED), None),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "prod-a"}},
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))
    common = ["--policies", str(policies), "--trust", str(trust), "--attestation", str(attestation)]
    return common, path


def test_the_audit_names_what_deny_would_block(
    dump: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common, path = dump
    code = main(["kube", "audit", "-f", str(path), *common, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    denied = {(f["address"], f["policy"]) for f in report["findings"] if f["action"] == "deny"}
    assert denied == {("Deployment prod-b/legacy", "require-review")}
    assert "ConfigMap prod-a/c (v1): not judged (not a workload)" in report["notes"]
    # One namespace only: nothing there would be denied.
    code = main(["kube", "audit", "-f", str(path), *common, "--namespace", "prod-a", "-q"])
    assert code == 0


def test_openreports_and_policyreport_documents(
    dump: tuple[list[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common, path = dump
    out = tmp_path / "reports.yaml"
    main(["kube", "audit", "-f", str(path), *common, "--format", "openreports",
          "-o", f"policyreport={out}"])  # fmt: skip
    reports = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(r["kind"], r["metadata"]["namespace"]) for r in reports] == [
        ("Report", "prod-a"),
        ("Report", "prod-b"),
    ]
    legacy = [r for r in reports[1]["results"] if r["policy"] == "require-review"]
    assert [r["result"] for r in legacy] == ["fail"]
    assert reports[0]["summary"]["fail"] == 0 and reports[0]["summary"]["pass"] >= 2
    older = list(yaml.safe_load_all(out.read_text()))
    assert {r["apiVersion"] for r in older} == {"wgpolicyk8s.io/v1alpha2"}
    assert [r["summary"] for r in older] == [r["summary"] for r in reports]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--expiring-within", "soon"], "--expiring-within: invalid duration"),
        (["--namespace", "Not_A_Namespace"], "not a namespace name"),
        (["--kubeconfig", "k"], "give -f DUMP or --kubeconfig/--context, not both"),
        (["--format", "openreports", "-o", "yaml"], "expected FORMAT=FILE"),
    ],
)
def test_bad_input_is_one_line(
    dump: tuple[list[str], Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected: str,
) -> None:
    common, path = dump
    code = main(["kube", "audit", "-f", str(path), *common, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
