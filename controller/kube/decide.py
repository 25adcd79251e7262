"""The admission decision: one function, one structured result.

Every answer the webhook gives, including refusals of requests it does not
judge, is an ``AdmissionResult``: the AdmissionReview response is rendered
from it and so is the audit record, so the two can never disagree.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.kube import breakglass
from controller.kube.breakglass import BreakGlassUse
from controller.kube.request import JUDGED_OPERATIONS, WORKLOADS, AdmissionRequest
from controller.kube.state import PolicySet
from controller.kube.subjects import workload_subject
from controller.kube.text import printable
from controller.policy.documents import Action, GuardPolicy, Target
from controller.policy.engine import Engine, ReviewEvaluator, matches
from controller.policy.subject import Decision, Finding, Result, Subject

# How many findings one denial message spells out; the audit record keeps all.
MAX_LISTED_FINDINGS = 20
# How many reasons of one review finding it spells out.
MAX_LISTED_REASONS = 10
# Kubernetes shows warnings to kubectl users one per line; keep them readable.
# kube-apiserver (endpoints/filters/warning.go) drops a warning holding a
# control character, and once the warnings of one response pass 4096
# characters in all it cuts each to 256 and drops the rest: guard keeps to
# those limits itself, so what it says arrives whole.
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 512
MAX_WARNING_TOTAL_CHARS = 4096
# Room kept for the closing "N more warning(s) not shown".
_MORE_CHARS = 48


class Reason:
    """Why an answer is what it is (a closed vocabulary for audit and metrics)."""

    judged = "judged"
    unsupported = "unsupported"
    malformed = "malformed"
    not_ready = "not-ready"
    not_judged = "not-judged"
    too_large = "too-large"
    error = "error"


@dataclass(frozen=True)
class AdmissionResult:
    """The answer to one AdmissionReview, with everything an audit line needs."""

    uid: str
    allowed: bool
    code: int
    message: str
    reason: str
    warnings: tuple[str, ...] = ()
    api_version: str = "admission.k8s.io/v1"
    request: AdmissionRequest | None = None
    subject: Subject | None = None
    decision: Decision | None = None
    enforcement: Action = Action.deny
    notes: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # The policies that judged the subject (matched it), in name order.
    matched: tuple[str, ...] = ()
    break_glass: BreakGlassUse | None = None
    # Digests of the policies and trust in force (see ``PolicySet``).
    policy_digest: str = ""
    trust_digest: str = ""
    decided_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    )

    @property
    def verdict(self) -> str:
        if not self.allowed:
            return "deny"
        return "warn" if self.warnings else "allow"

    def response(self) -> dict[str, Any]:
        """The AdmissionReview the API server expects back."""
        body: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if not self.allowed:
            body["status"] = {"code": self.code, "message": self.message}
        if self.warnings:
            body["warnings"] = list(self.warnings)
        return {"apiVersion": self.api_version, "kind": "AdmissionReview", "response": body}

    def record(self) -> dict[str, Any]:
        """A JSON-ready audit record of this decision.

        Everything an auditor asks: who asked for what, what was decided and
        why, each policy's result, the attestations (envelope digests) and
        the people whose approvals counted, what was waived (exemptions,
        exceptions, break-glass), and which policies and trust were in force.
        """
        request = self.request
        record: dict[str, Any] = {
            "time": self.decided_at,
            "uid": self.uid,
            "decision": self.verdict,
            "allowed": self.allowed,
            "code": self.code,
            "reason": self.reason,
            "enforcement": self.enforcement.value,
            "message": self.message,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "policyDigest": self.policy_digest,
            "trustDigest": self.trust_digest,
        }
        if request is not None:
            record["request"] = {
                "operation": request.operation,
                "resource": request.resource_label,
                "kind": request.kind,
                "namespace": request.namespace,
                "name": request.name,
                "dryRun": request.dry_run,
                "user": request.requester.username,
                "groups": list(request.requester.groups),
            }
            record["object"] = {
                "group": request.group,
                "version": request.version,
                "resource": request.resource,
                "subResource": request.sub_resource,
                "kind": request.kind,
                "namespace": request.namespace,
                "name": request.name,
            }
        if self.subject is not None:
            record["subject"] = self.subject.address
            record["artifacts"] = [
                {"image": a.reference, "digest": a.digest, "introduced": a.introduced}
                for a in self.subject.artifacts
            ]
        if self.decision is not None:
            findings = self.decision.findings
            record["findings"] = [_finding_record(f) for f in findings]
            record["policies"] = _policy_results(self.matched, findings)
            record["exemptions"] = self._exemptions(findings)
        review = self.evidence.get("review") if self.evidence else None
        if isinstance(review, Mapping):
            record["attestations"] = _attestation_summary(review)
        if self.break_glass is not None:
            record["breakGlass"] = self.break_glass.record()
        if self.evidence:
            record["evidence"] = dict(self.evidence)
        return record

    def _exemptions(self, findings: Sequence[Finding]) -> dict[str, Any]:
        images: dict[str, list[str]] = {}
        review = self.evidence.get("review") if self.evidence else None
        if isinstance(review, Mapping):
            for policy, evidence in review.items():
                exempted = evidence.get("exempted") if isinstance(evidence, Mapping) else None
                if exempted:
                    images[str(policy)] = list(exempted)
        waived = [
            {"policy": f.policy, "rule": f.rule, "exception": f.exception}
            for f in findings
            if f.exception is not None and not f.exception.startswith("break-glass")
        ]
        return {"images": images, "exceptions": waived}


_RESULT_RANK = {Result.passed: 0, Result.unknown: 1, Result.fail: 2, Result.error: 3}


def _policy_results(matched: Sequence[str], findings: Sequence[Finding]) -> dict[str, Any]:
    """Each judging policy's overall result: its worst finding, or pass."""
    results: dict[str, dict[str, Any]] = {
        name: {"result": Result.passed.value, "effect": "none"} for name in matched
    }
    for finding in findings:
        entry = results.setdefault(
            finding.policy, {"result": Result.passed.value, "effect": "none"}
        )
        if _RESULT_RANK[finding.result] > _RESULT_RANK[Result(entry["result"])]:
            entry["result"] = finding.result.value
        effect = _effect(finding)
        if _EFFECT_RANK[effect] > _EFFECT_RANK[entry["effect"]]:
            entry["effect"] = effect
    return results


_EFFECT_RANK = {"none": 0, "audit": 1, "waived": 2, "warn": 3, "deny": 4}


def _effect(finding: Finding) -> str:
    if finding.exception is not None:
        return "waived"
    return finding.action.value


def _attestation_summary(review: Mapping[str, Any]) -> dict[str, Any]:
    """Envelope digests examined and the approving principals, over all policies."""
    envelopes: set[str] = set()
    approvers: dict[str, list[str]] = {}
    for evidence in review.values():
        if not isinstance(evidence, Mapping):
            continue
        envelopes.update(str(e) for e in evidence.get("envelopes") or ())
        for digest, people in (evidence.get("approvers") or {}).items():
            known = approvers.setdefault(str(digest), [])
            known.extend(str(p) for p in people if str(p) not in known)
    return {"envelopes": sorted(envelopes), "approvers": approvers}


def _finding_record(finding: Finding) -> dict[str, Any]:
    return {
        "policy": finding.policy,
        "rule": finding.rule,
        "result": finding.result.value,
        "action": finding.action.value,
        "severity": finding.severity.value,
        "message": finding.message,
        "reasons": list(finding.reasons),
        "fix": finding.fix,
        "exception": finding.exception,
    }


def refuse(
    uid: str,
    reason: str,
    message: str,
    *,
    code: int = 403,
    request: AdmissionRequest | None = None,
    api_version: str = "admission.k8s.io/v1",
    enforcement: Action = Action.deny,
) -> AdmissionResult:
    """A denial that did not come from policies (unsupported, malformed, not ready)."""
    return AdmissionResult(
        uid=uid,
        allowed=False,
        code=code,
        message=message,
        reason=reason,
        api_version=api_version,
        request=request,
        enforcement=enforcement,
    )


def unsupported_reason(request: AdmissionRequest) -> str | None:
    """Why guard does not judge this request, or None when it does."""
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
    request: AdmissionRequest, location: str | None = None, line: int | None = None
) -> Subject:
    return workload_subject(
        kind=request.kind,
        name=request.name,
        namespace=request.namespace,
        operation=request.operation,
        obj=request.object,
        old_obj=request.old_object,
        requester=request.requester,
        dry_run=request.dry_run,
        sub_resource=request.sub_resource,
        location=location,
        line=line,
    )


def needs_review(
    policies: PolicySet, subject: Subject, *, controller_identities: frozenset[str] = frozenset()
) -> bool:
    """Whether any policy in force asks for review of this subject's images."""
    if any(policy.spec.review is not None for policy in policies.matching(subject)):
        return True
    return bool(upstream_review_policies(policies, subject, controller_identities))


def upstream_review_policies(
    policies: PolicySet, subject: Subject, controller_identities: frozenset[str] = frozenset()
) -> list[GuardPolicy]:
    """Review policies that judge what controllers make from a person's
    object, but not the object itself: they judge its review here.

    A controller's request (a ReplicaSet, a Pod) gets the signature and
    subject checks only, because the object a person applied was judged in
    full. When no review policy judges that object (a policy that matches
    only Pods, or selects labels only the pod template has), nothing would
    ever check expiry, maxAge or the deployer rules, and a break-glass claim
    would reach the Pods as *inherited*. So a person's request is also judged
    by the review of the policies that will judge what it makes.
    """
    if _by_controller(subject, controller_identities):
        return []
    made = breakglass.descendants(subject)
    if not made:
        return []
    own = {p.name for p in policies.matching(subject)}
    found: dict[str, GuardPolicy] = {}
    for child in made:
        for policy in policies.matching(child):
            if policy.spec.review is not None and policy.name not in own:
                found.setdefault(policy.name, policy)
    return list(found.values())


def _by_controller(subject: Subject, controller_identities: frozenset[str]) -> bool:
    request = subject.request or {}
    user = request.get("userInfo") if isinstance(request, Mapping) else None
    username = user.get("username") if isinstance(user, Mapping) else None
    return isinstance(username, str) and username in controller_identities


def upstream_review_findings(
    upstream: Sequence[GuardPolicy], subject: Subject, engine: Engine
) -> list[Finding]:
    """The review findings of ``upstream`` policies on the subject, as the
    engine makes them for the policies that match it."""
    if not subject.artifacts:
        return []
    context = (
        f" (this policy judges what controllers make from this {subject.kind}, "
        "so it judges it here)"
    )
    return [
        finding
        for policy in upstream
        for finding in engine.review_findings(policy, subject, context)
    ]


def broken_findings(policies: PolicySet, subject: Subject) -> list[Finding]:
    """Policies that failed to compile still judge what they match: as errors.

    Skipping them would let a typo in one rule switch the whole policy off;
    their error carries the policy's own action, so a deny policy keeps
    denying (with the compile error as the reason) until it is fixed.
    """
    by_name = {p.name: p for p in policies.policies}
    findings: list[Finding] = []
    for error in policies.broken_policies:
        policy = by_name.get(error.policy)
        if policy is None or not matches(policy, subject):
            continue
        findings.append(
            Finding(
                policy=policy.name,
                rule=error.rule,
                severity=policy.spec.severity,
                action=policy.spec.action.capped(policies.engine.enforcement),
                result=Result.error,
                target=Target.kubernetes,
                address=subject.address,
                message=f"policy cannot be evaluated: {error}",
                fix=f"fix rule {error.rule!r} of GuardPolicy {policy.name!r} "
                "(run `guard policy test` on it)",
            )
        )
    return findings


def judge(
    request: AdmissionRequest,
    policies: PolicySet,
    review: ReviewEvaluator | None,
    *,
    notes: Sequence[str] = (),
    evidence: Mapping[str, Any] | None = None,
    subject: Subject | None = None,
    controller_identities: frozenset[str] = frozenset(),
) -> AdmissionResult:
    """Judge one admission request with the policies in force.

    ``subject`` may be passed when the caller already built it from this
    request (to gather its envelopes); it is rebuilt otherwise.
    ``controller_identities`` are the Kubernetes controllers' usernames
    (for break-glass inherited from the object a person applied).
    """
    problem = unsupported_reason(request)
    if problem is not None:
        return refuse(
            request.uid,
            Reason.unsupported,
            problem,
            request=request,
            api_version=request.api_version,
            enforcement=policies.engine.enforcement,
        )
    subject = subject if subject is not None else subject_of(request)
    # The compiled engine is shared by every request; the evaluator belongs
    # to this one. A shallow copy carries it (the compiled rules are shared,
    # nothing is recompiled), so no other request, on this thread or
    # another, can ever be judged with this request's evidence.
    engine = copy.copy(policies.engine)
    engine.review = review
    findings = engine.evaluate(subject)
    upstream = upstream_review_policies(policies, subject, controller_identities)
    findings.extend(upstream_review_findings(upstream, subject, engine))
    findings.extend(broken_findings(policies, subject))
    matching = policies.matching(subject)
    findings, glass = breakglass.apply(
        request,
        subject,
        matching,
        policies.trust,
        findings,
        enforcement=engine.enforcement,
        controller_identities=controller_identities,
        inheriting=upstream,
    )
    all_notes = [*notes, *engine.exception_notes(), *policies.unenforced]
    if glass is not None and glass.problem and not glass.refused_by:
        all_notes.append(f"{breakglass.ANNOTATION}: {glass.problem}")
    decision = Decision.of(findings, subjects=1, notes=all_notes)
    return decided(
        request,
        subject,
        decision,
        engine.enforcement,
        evidence or {},
        glass,
        matched=tuple(sorted({p.name for p in (*matching, *upstream)})),
        policies=policies,
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
) -> AdmissionResult:
    warnings = [warning_text(f) for f in decision.warnings]
    if glass is not None and glass.admitted_by_glass:
        warnings.insert(0, _shown(glass.warning()))
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


def denial_message(subject: Subject, denials: Sequence[Finding], dry_run: bool) -> str:
    """One message listing every failure: policy, rule, what is wrong, how to fix it."""
    count = len(denials)
    head = f"guard denied {subject.address}: {count} problem{'s' if count != 1 else ''}"
    if dry_run:
        head += " (dry run)"
    lines = [head]
    # Each part on its own line, escaped: text from the object (an image
    # reference, a rule's messageExpression) cannot forge a line.
    for finding in denials[:MAX_LISTED_FINDINGS]:
        lines.append(printable(f"- [{finding.policy}/{finding.rule}] {finding.message}"))
        if finding.rule == "review" and len(finding.reasons) > 1:
            # The message names the first reason; list them (a flood of
            # bogus envelopes gives many: the audit record keeps them all).
            for reason in finding.reasons[:MAX_LISTED_REASONS]:
                lines.append(printable(f"    {reason}"))
            if len(finding.reasons) > MAX_LISTED_REASONS:
                more = len(finding.reasons) - MAX_LISTED_REASONS
                lines.append(f"    and {more} more (see the audit log)")
        if finding.fix:
            lines.append(printable(f"    fix: {finding.fix}"))
    if count > MAX_LISTED_FINDINGS:
        lines.append(f"- and {count - MAX_LISTED_FINDINGS} more (see the audit log)")
    return "\n".join(lines)


def warning_text(finding: Finding) -> str:
    text = f"guard [{finding.policy}/{finding.rule}] {finding.message}"
    if finding.fix:
        text += f" (fix: {finding.fix})"
    return _shown(text)


def _shown(text: str) -> str:
    """One warning as kube-apiserver will pass it on: printable (it drops a
    warning with a control character) and of bounded length."""
    text = printable(text)
    if len(text) > MAX_WARNING_CHARS:
        text = text[: MAX_WARNING_CHARS - 1] + "…"
    return text


def within_budget(warnings: Sequence[str]) -> list[str]:
    """The warnings that fit kube-apiserver's limits, in order, and a last
    one saying how many did not.

    Past ``MAX_WARNING_TOTAL_CHARS`` in one response the API server cuts
    every warning to 256 characters and drops the later ones, without a
    word: guard stops short of that itself and says so.
    """
    kept: list[str] = []
    total = 0
    for position, text in enumerate(warnings):
        left = len(warnings) - position - 1
        reserve = _MORE_CHARS if left else 0
        if len(kept) >= MAX_WARNINGS or total + len(text) + reserve > MAX_WARNING_TOTAL_CHARS:
            kept.append(f"guard: {len(warnings) - position} more warning(s) not shown")
            break
        kept.append(text)
        total += len(text)
    return kept
