"""docs/reference.md is generated from the models and covers every field."""

from __future__ import annotations

import re

from controller.policy import reference
from controller.policy.documents import DOCUMENT_KINDS
from controller.policy.loader import load_path
from tests.docs.runner import ROOT

REFERENCE = ROOT / "docs" / "reference.md"


def test_reference_is_generated_from_the_models() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference.render(), (
        "docs/reference.md drifted from the models: run `make docs`"
    )


def test_every_field_says_what_it_does() -> None:
    assert reference.undescribed() == []


def test_every_kind_has_a_section_and_a_loading_example() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\w+)$", text, re.MULTILINE))
    assert set(DOCUMENT_KINDS) <= sections
    for kind, path in reference.EXAMPLES.items():
        if kind in DOCUMENT_KINDS:
            loaded = load_path(ROOT / path)
            assert {item.document.kind for item in loaded} == {kind}
        else:
            assert (ROOT / path).is_file()


def test_every_field_of_a_nested_model_is_listed() -> None:
    paths = {
        f.path
        for f in reference.fields(DOCUMENT_KINDS["GuardPolicy"].model_fields["spec"].annotation)
    }  # type: ignore[arg-type]
    for expected in (
        "spec.review.minApprovals",
        "spec.review.deployer.notAuthor",
        "spec.rules[].expression",
        "spec.match.kubernetes.namespaces.exclude",
    ):
        assert expected in paths
