"""Which policies judge a subject, and which exception waives a finding.

Matching is by kind, namespace globs and label selector (Kubernetes) or by
type globs and action (Terraform); the plan-level subject of a Terraform run
is matched by every policy with a ``terraform`` block, since it carries the
review requirement of the whole plan.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable, Mapping, Sequence

from controller.policy.documents import GuardException, GuardPolicy, LabelSelector, Target
from controller.policy.results import Subject, Waiver, WaiverKind


def _globs(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        value = labels.get(req.key)
        if req.operator == "In" and value not in req.values:
            return False
        if req.operator == "NotIn" and present and value in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def matches(policy: GuardPolicy, subject: Subject) -> bool:
    """Whether a policy judges a subject at all."""
    match = policy.spec.match
    if subject.target is Target.kubernetes:
        kube = match.kubernetes
        if kube is None:
            return False
        if kube.kinds and subject.kind not in kube.kinds:
            return False
        namespace = subject.namespace or ""
        if kube.namespaces.include and not _globs(namespace, kube.namespaces.include):
            return False
        if namespace and _globs(namespace, kube.namespaces.exclude):
            return False
        return not (kube.label_selector and not _selects(kube.label_selector, subject.labels))
    tf = match.terraform
    if tf is None:
        return False
    if subject.kind == "plan":
        # The plan-level subject carries the review requirement for the whole plan.
        return True
    return _globs(subject.type, tf.types) and subject.action in tf.actions


def exception_target(subject: Subject) -> str:
    """What a GuardException's ``target`` names: a Terraform address, or
    ``namespace/name`` of a Kubernetes object."""
    if subject.target is Target.kubernetes:
        return f"{subject.namespace}/{subject.name}" if subject.namespace else subject.name
    return subject.address


def waiver_for(
    policy: GuardPolicy,
    subject: Subject,
    exceptions: Sequence[GuardException],
    today: dt.date,
) -> Waiver | None:
    """The exception that waives ``policy``'s rules on ``subject``, if any.

    Never for a policy with a review block: the only way past review is the
    audited break-glass in the cluster.
    """
    if policy.spec.review is not None:
        return None
    target = exception_target(subject)
    for exception in exceptions:
        spec = exception.spec
        if spec.policy != policy.name or spec.expires < today:
            continue
        if target_matches(target, spec.target):
            return Waiver(WaiverKind.exception, exception.name)
    return None


def target_matches(target: str, pattern: str) -> bool:
    """An exception target: exact, or a glob where only ``*`` and ``?`` are special.

    Terraform addresses contain brackets (``aws_x.y["k"]``, ``aws_x.y[0]``),
    which fnmatch would read as character classes, so an exact address would
    not match itself.
    """
    if target == pattern:
        return True
    return fnmatch.fnmatchcase(target, pattern.replace("[", "[[]"))
