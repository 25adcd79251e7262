"""Documents load from files, directories and multi-document YAML; bad ones say where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.policy.documents import GuardPolicy, GuardTrust
from controller.policy.loader import DocumentError, load_bundle, parse_documents

POLICY = """\
apiVersion: guard.dev/v1alpha1
kind: GuardPolicy
metadata:
  name: sod
  uid: 1234            # server-set metadata is ignored
  resourceVersion: "9"
spec:
  match:
    kubernetes: {kinds: [Deployment]}
  review:
    minApprovals: 2
    attesters: [ci]
    repositories: [github.com/example/app]
    targetRefs: [refs/heads/main]
    maxAge: 30d
"""


def test_policy_with_review_block_loads() -> None:
    [loaded] = parse_documents(POLICY, "sod.yaml")
    policy = loaded.document
    assert isinstance(policy, GuardPolicy)
    assert policy.spec.review is not None
    assert policy.spec.review.min_approvals == 2
    assert policy.spec.review.max_age_delta is not None
    assert policy.spec.review.max_age_delta.days == 30


@pytest.mark.parametrize(
    ("mutation", "field", "line"),
    [
        (("minApprovals: 2", "minAprovals: 2"), "spec.review.minAprovals", 11),
        (("maxAge: 30d", "maxAge: soon"), "spec.review.maxAge", 15),
        (("targetRefs: [refs/heads/main]", "targetRefs: []"), "spec.review.targetRefs", 14),
        (("{kinds: [Deployment]}", "{kinds: [Deployment], kindz: [Pod]}"), "kindz", 9),
    ],
)
def test_bad_field_names_file_document_field_and_line(
    mutation: tuple[str, str], field: str, line: int
) -> None:
    text = POLICY.replace(*mutation)
    with pytest.raises(DocumentError) as caught:
        parse_documents(text, "sod.yaml")
    message = str(caught.value)
    assert message.startswith("sod.yaml (document 1) GuardPolicy/sod:")
    assert field in message
    assert caught.value.line == line


def test_duplicate_keys_are_rejected_not_last_wins() -> None:
    text = POLICY.replace("minApprovals: 2", "minApprovals: 2\n    minApprovals: 0")
    with pytest.raises(DocumentError, match="duplicate key 'minApprovals'"):
        parse_documents(text, "sod.yaml")


def test_review_without_repositories_is_an_error() -> None:
    text = POLICY.replace("    repositories: [github.com/example/app]\n", "")
    with pytest.raises(DocumentError, match=r"spec\.review\.repositories: Field required"):
        parse_documents(text, "sod.yaml")


def test_not_yaml_and_unknown_kind() -> None:
    with pytest.raises(DocumentError, match="not valid YAML"):
        parse_documents("a: [1,\n", "x.yaml")
    with pytest.raises(DocumentError, match="kind 'Deployment' is not a guard document"):
        parse_documents("kind: Deployment\nmetadata: {name: a}\n", "x.yaml")


def test_multi_document_directory_and_list(tmp_path: Path) -> None:
    trust = "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: t}\nspec: {}\n"
    (tmp_path / "a.yaml").write_text(POLICY + "---\n" + trust)
    listed = POLICY.replace("name: sod", "name: other").replace("\n", "\n    ")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("kind: List\nitems:\n  - " + listed)
    bundle = load_bundle(tmp_path)
    assert [p.name for p in bundle.policies] == ["other", "sod"]
    assert isinstance(bundle.trusts[0], GuardTrust)


def test_same_name_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "b.yaml").write_text(POLICY)
    with pytest.raises(DocumentError, match="defined twice"):
        load_bundle(tmp_path)


def test_person_key_needs_principal() -> None:
    text = (
        "apiVersion: guard.dev/v1alpha1\nkind: GuardTrust\nmetadata: {name: t}\n"
        "spec:\n  keys:\n  - {name: k, publicKey: x, role: person}\n"
    )
    with pytest.raises(DocumentError, match="needs a principal"):
        parse_documents(text, "t.yaml")


def test_nesting_bombs_and_non_finite_thresholds_are_clear_errors() -> None:
    with pytest.raises(DocumentError, match="nested too deeply"):
        parse_documents("a: " + "[" * 5000 + "]" * 5000, "bomb.yaml")
    text = POLICY.replace(
        "maxAge: 30d", "maxAge: 30d\n    requiredChecks: [{name: cov, min: .nan}]"
    )
    with pytest.raises(DocumentError, match=r"requiredChecks\[0\]\.min"):
        parse_documents(text, "sod.yaml")


def test_a_broken_review_evaluator_denies() -> None:
    from controller.policy.documents import Target
    from controller.policy.engine import Engine
    from controller.policy.results import Artifact, Result, Subject

    class Broken:
        def review(self, policy: object, subject: object) -> object:
            raise RuntimeError("clock unavailable")

    [loaded] = parse_documents(POLICY, "sod.yaml")
    assert isinstance(loaded.document, GuardPolicy)
    subject = Subject(
        target=Target.kubernetes, address="Deployment a/b", kind="Deployment",
        type="Deployment", name="b", namespace="a", action="create", object={},
        artifacts=(Artifact("img", "sha256:" + "a" * 64),),
    )  # fmt: skip
    engine = Engine([loaded.document])  # type: ignore[list-item]
    [finding] = engine.evaluate(subject, review=Broken()).findings  # type: ignore[arg-type]
    assert finding.result is Result.error and finding.denies
    assert "clock unavailable" in finding.message
