"""Domain lint: valid documents whose values quietly switch a guardrail off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.attest.keys import generate
from controller.attest.statement import check_names_in_file
from controller.policy.lint import LintMessage, lint_findings
from controller.policy.loader import Bundle, load_bundle
from tests.attest import helpers as h

ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = {
    "builders": ["github-builder"],
    "repositories": [{"name": "github.com/acme/shop", "id": "1"}],
    "refs": ["refs/heads/main"],
}


def bundle_of(tmp_path: Path, *documents: dict[str, Any]) -> Bundle:
    for index, document in enumerate(documents):
        h.write_yaml(tmp_path / f"{index}.yaml", document)
    return load_bundle(tmp_path)


def messages(bundle: Bundle) -> list[str]:
    return [str(m) for m in lint_findings(bundle, check_names=check_names_in_file)]


def test_the_bundled_policies_lint_clean() -> None:
    assert lint_findings(load_bundle(ROOT / "policies"), check_names=check_names_in_file) == []


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        ({"repositories": ["*"]}, "review.repositories '*' accepts every repository"),
        ({"repositories": ["*/*"]}, "review.repositories '*/*' accepts every repository"),
        ({"targetRefs": ["*"]}, "review.targetRefs '*' accepts every ref"),
        ({"targetRefs": ["refs/*"]}, "review.targetRefs 'refs/*' accepts every ref"),
        ({"targetRefs": ["refs/heads/*"]}, "'refs/heads/*' accepts every branch"),
        ({"exemptImages": ["*"]}, "review.exemptImages '*' exempts every image"),
        (
            {"provenance": {**PROVENANCE, "refs": ["refs/heads/*"]}},
            "review.provenance.refs 'refs/heads/*' accepts every branch",
        ),
        (
            {"provenance": {**PROVENANCE, "github": {"workflowRefs": ["*"]}}},
            "review.provenance.github.workflowRefs '*' accepts every ref",
        ),
        (
            {"deployer": {"allowed": ["group:system:authenticated"]}},
            "group:system:authenticated lets everyone deploy",
        ),
        (
            {"breakGlass": {"groups": ["system:authenticated"]}},
            "breakGlass.groups system:authenticated lets everyone break glass",
        ),
        (
            {"deployer": {"allowed": ["githib:1001"]}},
            "'githib:1001' is read as a Kubernetes username, but looks like an id with a "
            "misspelt system: did you mean 'github:1001'?",
        ),
    ],
)
def test_allow_lists_that_accept_everything_are_warned_about(
    tmp_path: Path, review: dict[str, Any], expected: str
) -> None:
    document = h.policy_document(requiredChecks=[], **review)
    found = messages(bundle_of(tmp_path, document))
    assert len(found) == 1, found
    assert ": warning: policy 'reviewed-changes': " in found[0]
    assert expected in found[0]


def test_narrow_allow_lists_are_not_warned_about(tmp_path: Path) -> None:
    document = h.policy_document(
        requiredChecks=[],
        repositories=["github.com/acme/*"],
        targetRefs=["refs/heads/main", "refs/heads/release-*"],
        exemptImages=["registry.example/mesh/proxy@*"],
        deployer={"allowed": ["system:serviceaccount:cd:deployer", "group:deployers"]},
    )
    assert messages(bundle_of(tmp_path, document)) == []


def _case_with(attestation: str) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardPolicyTest",
        "metadata": {"name": "reviewed"},
        "spec": {
            "cases": [
                {
                    "name": "reviewed",
                    "policies": ["reviewed-changes"],
                    "object": {"kind": "Deployment", "metadata": {"name": "a"}},
                    "attestations": [attestation],
                    "expect": {"result": "fail"},
                }
            ]
        },
    }


def test_a_required_check_no_test_attestation_carries_is_warned_about(tmp_path: Path) -> None:
    """unit-test for unit-tests: every real deploy would be denied, and lint said ok."""
    (tmp_path / "review.dsse").write_bytes(h.envelope(signers=[generate("ecdsa")]))
    policy = h.policy_document(requiredChecks=[{"name": "unit-test"}, {"name": "coverage"}])
    found = messages(bundle_of(tmp_path, policy, _case_with("review.dsse")))
    assert found == [
        f"{tmp_path / '0.yaml'}:1: warning: policy 'reviewed-changes': review.requiredChecks "
        "'unit-test' is carried by no attestation in the policy's test cases (they carry: "
        "coverage, unit-tests): a misspelt name denies every deployment"
    ]


def test_required_checks_without_any_test_attestation_are_warned_about(tmp_path: Path) -> None:
    found = messages(bundle_of(tmp_path, h.policy_document()))
    assert len(found) == 1
    assert "checked against nothing" in found[0]


def test_an_unreadable_test_attestation_carries_no_checks(tmp_path: Path) -> None:
    (tmp_path / "broken.dsse").write_text("{not json")
    policy = h.policy_document(requiredChecks=[{"name": "unit-tests"}])
    found = messages(bundle_of(tmp_path, policy, _case_with("broken.dsse")))
    assert len(found) == 1 and "(they carry: none)" in found[0]


def _trust(aliases: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardTrust",
        "metadata": {"name": "people"},
        "spec": {"principals": [{"id": "github:1001", "aliases": aliases}]},
    }


def test_a_trust_that_maps_no_kubernetes_user_is_warned_about(tmp_path: Path) -> None:
    policy = h.policy_document(requiredChecks=[], deployer={"notAuthor": True})
    found = lint_findings(bundle_of(tmp_path, policy, _trust(["email:alice@example.com"])))
    assert [m.level for m in found] == ["warning", "warning"]
    assert "trust 'people' maps no Kubernetes user to a principal" in found[0].message
    assert "every deployer not named in deployer.allowed is denied" in found[1].message


def test_a_trust_that_maps_kubernetes_users_is_fine(tmp_path: Path) -> None:
    policy = h.policy_document(requiredChecks=[], deployer={"notAuthor": True})
    trust = _trust(["kubernetes:alice@example.com"])
    assert lint_findings(bundle_of(tmp_path, policy, trust)) == []


def test_messages_read_as_one_line_each() -> None:
    message = LintMessage("warning", "p.yaml:3", "text")
    assert str(message) == "p.yaml:3: warning: text"
