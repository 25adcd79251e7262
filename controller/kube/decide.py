"""The admission decision: one engine call, plus what only Kubernetes knows.

The engine judges the subject (rules, review, broken policies, exceptions)
in one call. This module adds the Kubernetes concerns on top: the review of
the policies that judge what controllers will make from a person's object
(``upstream_review_policies``), governed break-glass, and inheritance from a
baselined owner (``kube.inherit``), which waives what the owner's policies
find on what controllers make from it. The answer is an
``AdmissionResult`` (``kube.result``), worded by ``kube.wording`` and recorded
by ``kube.record``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.attest.review import AttestationReview, EnvelopeSource
from controller.attest.trust import Trust
from controller.attest.verify import SignatureCache
from controller.kube import breakglass
from controller.kube.breakglass import BreakGlassUse
from controller.kube.inherit import Inheritance, inherited_findings
from controller.kube.request import JUDGED_OPERATIONS, WORKLOADS, AdmissionRequest
from controller.kube.result import AdmissionResult, Reason
from controller.kube.state import PolicySet
from controller.kube.subjects import labels_of, workload_subject
from controller.kube.wording import denial_message, shown, warning_text, within_budget
from controller.policy.documents import Action, GuardPolicy
from controller.policy.results import Decision, Finding, Subject
from controller.policy.reviewer import ReviewEvaluator

# Distinct object shapes whose upstream policies one policy set remembers.
MADE_FROM_MEMO_SIZE = 4096


def unsupported_reason(request: AdmissionRequest) -> str | None:
    """Why guard does not judge this request, or None when it does.

    Asked once, by the webhook before a request reaches the operator's
    handler; ``guard kube check`` builds only requests it judges.
    """
    workload = request.workload
    judged = ", ".join(w.label for w in WORKLOADS)
    if workload is None:
        return (
            f"guard does not judge {request.resource_label} (it judges {judged}); the "
            "webhook configuration should not send it here, so it is denied rather than "
            "admitted unchecked"
        )
    if request.operation not in JUDGED_OPERATIONS:
        return (
            f"guard judges only CREATE and UPDATE, not {request.operation} of "
            f"{request.resource_label}; the webhook configuration should not send it here"
        )
    if request.kind != workload.kind:
        return (
            f"guard expected kind {workload.kind} for {request.resource_label}, got "
            f"{request.kind}; this API version is not supported"
        )
    if request.object is None:
        return f"the {request.operation} request for {request.resource_label} carries no object"
    return None


def subject_of(
    request: AdmissionRequest,
    *,
    controller_identities: frozenset[str] = frozenset(),
    trust: Trust | None = None,
    location: str | None = None,
    line: int | None = None,
) -> Subject:
    """The subject of one request, with its requester typed once: whether it
    is a Kubernetes controller's own identity, and its principal."""
    requester = request.requester
    username = requester.username
    requester = dataclasses.replace(
        requester,
        controller=bool(username) and username in controller_identities,
        principal=trust.principal_of(username) if trust is not None and username else None,
    )
    return workload_subject(
        kind=request.kind,
        name=request.name,
        namespace=request.namespace,
        operation=request.operation,
        obj=request.object,
        old_obj=request.old_object,
        requester=requester,
        dry_run=request.dry_run,
        sub_resource=request.sub_resource,
        location=location,
        line=line,
    )


def needs_review(policies: PolicySet, subject: Subject) -> bool:
    """Whether any policy in force asks for review of this subject's images."""
    if any(policy.spec.review is not None for policy in policies.engine.matching(subject)):
        return True
    return bool(upstream_review_policies(policies, subject))


def upstream_review_policies(policies: PolicySet, subject: Subject) -> list[GuardPolicy]:
    """Review policies that judge what controllers make from a person's
    object, but not the object itself: they judge its review here.

    A controller's request (a ReplicaSet, a Pod) skips the checks that age
    and the deployer rules, because the object a person applied was judged
    in full. When no review policy judges that object (a policy that matches
    only Pods, or selects labels only the pod template has), nothing would
    ever check expiry, maxAge or the deployer rules, and a break-glass claim
    would reach the Pods as *inherited*. So a person's request is also judged
    by the review of the policies that will judge what it makes.
    """
    return [p for p in made_from(policies, subject) if p.spec.review is not None]


def made_from(policies: PolicySet, subject: Subject) -> list[GuardPolicy]:
    """The policies that match what controllers will make from a person's
    object and not the object itself (none for a controller's request).

    Their review judges the object here (``upstream_review_policies``), and
    so do the broken or invalid ones, as errors, since they never judge the
    controllers' own requests."""
    if subject.requester is not None and subject.requester.controller:
        return []
    # Matching decides it, so it is remembered by what decides matching: the
    # shape of the object and of each template (``Engine.kubernetes_shape``).
    engine = policies.engine
    key = (
        engine.kubernetes_shape(subject.kind, subject.namespace, subject.labels),
        tuple(
            engine.kubernetes_shape(kind, subject.namespace, labels_of(template))
            for kind, template in breakglass.descendant_templates(subject)
        ),
    )
    found = policies.made_from_memo.get(key)
    if found is None:
        found = _made_from(policies, subject)
        if len(policies.made_from_memo) >= MADE_FROM_MEMO_SIZE:
            policies.made_from_memo.clear()
        policies.made_from_memo[key] = found
    return list(found)


def _made_from(policies: PolicySet, subject: Subject) -> tuple[GuardPolicy, ...]:
    made = breakglass.descendants(subject)
    if not made:
        return ()
    engine = policies.engine
    own = {p.name for p in engine.matching(subject)}
    found: dict[str, GuardPolicy] = {}
    for child in made:
        for policy in engine.matching(child):
            if policy.name not in own:
                found.setdefault(policy.name, policy)
    return tuple(found.values())


def reviewer_for(
    policies: PolicySet,
    envelopes: EnvelopeSource,
    *,
    now: Callable[[], dt.datetime],
    cache: SignatureCache | None = None,
    on_verdict: Callable[[bool], None] | None = None,
) -> AttestationReview:
    """The review evaluator for one request: the webhook and ``guard kube
    check`` build it the same way, from the trust in force."""
    return AttestationReview(policies.trust, envelopes, now=now, cache=cache, on_verdict=on_verdict)


def judge(
    request: AdmissionRequest,
    policies: PolicySet,
    review: ReviewEvaluator | None,
    *,
    subject: Subject | None = None,
    notes: Sequence[str] = (),
    evidence: Mapping[str, Any] | None = None,
    inheritance: Inheritance | None = None,
) -> AdmissionResult:
    """Judge one supported admission request with the policies in force.

    ``subject`` is the one the caller built from this request with
    ``subject_of`` (to gather its envelopes, with its controller identities);
    without one it is built here, as a request from nobody special.
    ``inheritance`` says the request inherits from a baselined owner
    (``kube.inherit.resolve``): the findings of the policies that match the
    owner are waived, and what the owner's template lacks is still judged.
    """
    subject = subject if subject is not None else subject_of(request)
    engine = policies.engine
    evaluation = engine.evaluate(subject, review=review)
    findings: list[Finding] = list(evaluation.findings)
    upstream_all = made_from(policies, subject)
    upstream = [p for p in upstream_all if p.spec.review is not None]
    broken_upstream = [p for p in upstream_all if p.name in engine.problems]
    context = (
        f" (this policy judges what controllers make from this {subject.kind}, "
        "so it judges it here)"
    )
    if subject.artifacts:
        for policy in upstream:
            findings.extend(engine.review_findings(policy, subject, review, context))
    findings.extend(engine.broken_findings(broken_upstream, subject, context))
    findings, glass = breakglass.apply(
        request,
        subject,
        evaluation.matched,
        policies.trust,
        findings,
        enforcement=engine.enforcement,
        inheriting=upstream,
    )
    if inheritance is not None:
        # After break-glass, so that its refusals by the owner's policies are
        # inherited too, and a container the template lacks is judged as is.
        findings = inherited_findings(engine, subject, findings, inheritance, review)
    all_notes = [*notes, *evaluation.notes, *policies.unenforced]
    if glass is not None and glass.problem and not glass.refused_by:
        all_notes.append(f"{breakglass.ANNOTATION}: {glass.problem}")
    notice = ""
    if inheritance is not None:
        if glass is not None and inheritance.scope == "owner":
            # The annotation came with the owner's template: the owner is
            # baselined, so what its policies would refuse is inherited too.
            glass = dataclasses.replace(
                glass,
                outcome=breakglass.Outcome.inherited,
                owner=inheritance.owner.address,
                refused_by=(),
                problem="",
            )
        notice = _baseline_notice(inheritance)
        all_notes.append(notice)
    decision = Decision.of(findings, subjects=1, notes=all_notes)
    return decided(
        request,
        subject,
        decision,
        engine.enforcement,
        evidence or {},
        glass,
        matched=tuple(sorted({p.name for p in (*evaluation.matched, *upstream, *broken_upstream)})),
        policies=policies,
        notice=notice if inheritance is not None and inheritance.scope == "unchanged" else "",
    )


def _baseline_notice(inheritance: Inheritance) -> str:
    match = inheritance.match
    if inheritance.scope == "unchanged":
        return (
            f"guard: {inheritance.owner.address} is baselined by GuardBaseline "
            f"{match.baseline} until {match.expires}: this change keeps its images and "
            "security settings, so its review is not required yet; get it reviewed "
            "before the baseline expires"
        )
    return f"inherited from {inheritance.label}, which expires on {match.expires}"


def mirror_admitted(request: AdmissionRequest, node: str, policies: PolicySet) -> AdmissionResult:
    """A static pod's mirror, admitted with a warning and its audit line.

    The kubelet runs a static pod from a file on the node whatever the API
    server answers; denying the mirror would only hide a running Pod from
    the API. Static pods cannot be governed by admission (see
    docs/operations.md); the audit line and the metrics record each one.
    """
    message = (
        f"guard: mirror pod of a static pod on node {node} admitted without judging: static "
        "pods run whatever admission says, so guard cannot govern them; restrict who can "
        "write the kubelet's static pod folder"
    )
    return AdmissionResult(
        uid=request.uid,
        allowed=True,
        code=200,
        message="",
        reason=Reason.mirror_pod,
        warnings=(shown(message),),
        api_version=request.api_version,
        request=request,
        enforcement=policies.engine.enforcement,
        notes=(message,),
        evidence={"inherited": {"scope": "mirror", "owner": f"Node {node}"}},
        policy_digest=policies.policy_digest,
        trust_digest=policies.trust_digest,
    )


def decided(
    request: AdmissionRequest,
    subject: Subject,
    decision: Decision,
    enforcement: Action,
    evidence: Mapping[str, Any],
    glass: BreakGlassUse | None = None,
    *,
    matched: tuple[str, ...] = (),
    policies: PolicySet | None = None,
    notice: str = "",
) -> AdmissionResult:
    warnings = [warning_text(f) for f in decision.warnings]
    if glass is not None and glass.admitted_by_glass:
        warnings.insert(0, shown(glass.warning()))
    if notice and decision.allowed:
        warnings.insert(0, shown(notice))
    warnings = within_budget(warnings)
    allowed = decision.allowed
    message = "" if allowed else denial_message(subject, decision.denials, request.dry_run)
    return AdmissionResult(
        uid=request.uid,
        allowed=allowed,
        code=200 if allowed else 403,
        message=message,
        reason=Reason.judged,
        warnings=tuple(warnings),
        api_version=request.api_version,
        request=request,
        subject=subject,
        decision=decision,
        enforcement=enforcement,
        notes=decision.notes,
        evidence=evidence,
        break_glass=glass,
        matched=matched,
        policy_digest=policies.policy_digest if policies is not None else "",
        trust_digest=policies.trust_digest if policies is not None else "",
    )
