"""``tf-plan`` leaves the policies' test files unread, and never a policy with them.

Judging commands load a folder with ``tests=False``: a ``*.test.yaml`` file
whose text can only hold GuardPolicyTest documents is skipped. A policy
placed in such a file, however it is spelled, must still be loaded: a file
name must never switch a guardrail off.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cli.terraform import load_policies
from controller.policy.bundled import bundled_policies_path
from controller.policy.loader import load_bundle

TEST_DOC = """\
apiVersion: guard.dev/v1alpha1
kind: GuardPolicyTest
metadata: {name: t}
spec:
  cases:
    - name: anything passes
      policies: [hidden]
      object: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: []}}
      expect: {result: pass}
"""

# Ways YAML can spell the kind GuardPolicy: plain, quoted, escaped, by alias.
KIND_SPELLINGS = (
    "kind: GuardPolicy",
    "kind: 'GuardPolicy'",
    'kind: "GuardPolicy"',
    'kind: "Guard\\x50olicy"',
    'kind: "Guard\\u0050olicy"',
    'kind: "Guard\\\n  Policy"',
    "kind: &k GuardPolicy",
)
POLICY_BODY = """\
apiVersion: guard.dev/v1alpha1
metadata: {name: hidden}
spec:
  action: deny
  match: {terraform: {types: ["*"]}}
  rules:
    - {name: r, target: terraform, expression: "true", message: m}
"""


def test_the_bundled_test_files_are_not_read_when_judging(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(bundled_policies_path(), folder)
    full, judging = load_bundle(folder), load_bundle(folder, tests=False)
    assert full.tests and not judging.tests
    assert judging.policies == full.policies
    # A broken test file does not stop a plan from being judged...
    (folder / "broken.test.yaml").write_text(TEST_DOC + "  extra: [unclosed\n")
    assert load_policies([folder], []).policies == full.policies
    # ...but a file named on its own is always read.
    assert load_bundle(folder / "require-owner.test.yaml", tests=False).tests


@settings(max_examples=60, deadline=None)
@given(
    spelling=st.sampled_from(KIND_SPELLINGS),
    first=st.booleans(),
    suffix=st.sampled_from((".test.yaml", ".test.yml")),
)
def test_a_policy_in_a_test_file_is_always_loaded(spelling: str, first: bool, suffix: str) -> None:
    policy = f"{spelling}\n{POLICY_BODY}"
    documents = [policy, TEST_DOC] if first else [TEST_DOC, policy]
    with _folder() as folder:
        (folder / f"hidden{suffix}").write_text("---\n".join(documents))
        judging = load_bundle(folder, tests=False)
    assert [p.name for p in judging.policies] == ["hidden"]


class _folder:
    """A fresh temporary folder per example (hypothesis reuses pytest's tmp_path)."""

    def __enter__(self) -> Path:
        self._dir = tempfile.TemporaryDirectory()
        return Path(self._dir.name)

    def __exit__(self, *_: object) -> None:
        self._dir.cleanup()
