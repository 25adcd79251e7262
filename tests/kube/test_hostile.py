"""Hostile input to the admission path, below the server: request parsing,
image references, envelopes from other namespaces, the shared engine and
policy cache, warnings and the text that reaches logs."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import io
import json
import logging
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.attest.review import AttestationReview
from controller.attest.verify import MAX_CANDIDATES
from controller.kube.audit import AuditLog
from controller.kube.decide import judge, subject_of
from controller.kube.envelopes import IndexedEnvelope, annotation_envelopes, gather, index_entries
from controller.kube.kubeapi import list_path
from controller.kube.request import BadReview, parse_review
from controller.kube.result import AdmissionResult
from controller.kube.runtime import GuardRuntime
from controller.kube.settings import ServeSettings
from controller.kube.state import FileInputs, PolicyCache, PolicySet, build_policy_set
from controller.kube.subjects import image_digest, images_of
from controller.kube.text import json_line_safe, printable
from controller.kube.wording import (
    MAX_LISTED_REASONS,
    MAX_WARNING_TOTAL_CHARS,
    MAX_WARNINGS,
    within_budget,
)
from controller.policy.documents import Action, GuardPolicy
from controller.policy.results import Subject
from tests.kube.helpers import (
    CONTROLLER_USER,
    IMAGE,
    NO_PRIVILEGED,
    REVIEW_POLICY,
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    admission_review,
    envelope,
    expired_envelope,
    workload,
    write_documents,
)

HEX = "a" * 64


@pytest.fixture(scope="module")
def cast() -> Cast:
    return Cast.make()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, cast: Cast) -> FileInputs:
    directory = tmp_path_factory.mktemp("hostile")
    return FileInputs.load(
        [write_documents(directory / "p.yaml", TEST_POLICIES)],
        [write_documents(directory / "t.yaml", [cast.trust_document()])],
    )


@pytest.fixture(scope="module")
def policies(files: FileInputs) -> PolicySet:
    return build_policy_set(files, (), enforcement=Action.deny)


# --------------------------------------------------------------------------- requests


def _review() -> dict[str, Any]:
    return admission_review(workload("Deployment", "web", "prod", WEB))


@pytest.mark.parametrize(
    "namespace", ["../kube-system", "prod/x", "prod?watch=1", "PROD", "a" * 64, "prod\n"]
)
def test_namespace_must_be_a_namespace_name(namespace: str) -> None:
    review = _review()
    review["request"]["namespace"] = namespace
    with pytest.raises(BadReview, match=r"request\.namespace .* is not a namespace name"):
        parse_review(review)


def test_workload_without_namespace_is_malformed_but_other_resources_are_read() -> None:
    review = _review()
    del review["request"]["namespace"]
    with pytest.raises(BadReview, match=r"request\.namespace is missing"):
        parse_review(review)
    review["request"]["resource"] = {"group": "", "version": "v1", "resource": "namespaces"}
    assert parse_review(review).namespace is None  # refused later, as unsupported


@pytest.mark.parametrize("uid", ["a\nb", "x" * 129, "uid with spaces", ""])
def test_uid_must_be_one_short_token(uid: str) -> None:
    review = _review()
    review["request"]["uid"] = uid
    with pytest.raises(BadReview) as caught:
        parse_review(review)
    assert caught.value.uid == ""


def test_list_path_refuses_steering_segments() -> None:
    assert list_path("reviewattestations", "prod") == (
        "/apis/guard.dev/v1alpha1/namespaces/prod/reviewattestations"
    )
    for namespace in ("..", "a/../b", "x?y=1", "a b"):
        with pytest.raises(ValueError, match="not a valid path segment"):
            list_path("reviewattestations", namespace)


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("image", "digest"),
    [
        (f"nginx:1.25@sha256:{HEX}", f"sha256:{HEX}"),
        (f"nginx@sha256:{'b' * 64}@sha256:{HEX}", None),
        (f"nginx@sha256:{HEX} ", None),
        (f" nginx@sha256:{HEX}", None),
        (f"nginx@sha256:{HEX}\n", None),
        (f"nginx@ sha256:{HEX}", None),
        (f"@sha256:{HEX}", None),
        (f"nginx@SHA256:{HEX}", None),
    ],
)
def test_only_plain_pinned_references_have_a_digest(image: str, digest: str | None) -> None:
    assert image_digest(image) == digest


def test_image_volumes_are_images_of_the_workload() -> None:
    deployment = workload("Deployment", "w", "ns", WEB)
    deployment["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "payload", "image": {"reference": UNATTESTED, "pullPolicy": "IfNotPresent"}},
        {"name": "odd", "image": "not-a-mapping"},
    ]
    assert images_of("Deployment", deployment) == [WEB, UNATTESTED]


# --------------------------------------------------------------------------- envelopes


def _runtime(files: FileInputs, namespace_items: list[Mapping[str, Any]]) -> GuardRuntime:
    async def lister(_plural: str, _namespace: str | None) -> list[Mapping[str, Any]]:
        return namespace_items

    settings = ServeSettings(policy_paths=(), audit_stdout=False)
    return GuardRuntime(settings, files, lister=lister, audit=AuditLog(None, stream=None))


def test_a_flood_from_another_namespace_cannot_hide_the_real_attestation(
    files: FileInputs, cast: Cast
) -> None:
    # Anyone who may create ReviewAttestations somewhere can claim any digest;
    # the verifier examines a bounded number of candidates per digest.
    index: dict[str, list[IndexedEnvelope]] = {WEB_DIGEST: []}
    for number in range(MAX_CANDIDATES + 1):
        text = envelope(cast.stranger, [WEB_DIGEST], attester=f"forger-{number}")
        entries, _ = index_entries(text, f"ReviewAttestation attacker/f{number}", "attacker")
        index[WEB_DIGEST].append(entries[WEB_DIGEST])
    real, _ = index_entries(envelope(cast.ci), "ReviewAttestation prod/web", "prod")
    index[WEB_DIGEST].append(real[WEB_DIGEST])
    runtime = _runtime(files, [])
    request = parse_review(admission_review(workload("Deployment", "web", "prod", WEB)))
    result = asyncio.run(runtime.admit(request, attestations=index, resources=()))
    assert result.allowed, result.message
    # Without the real one, the denial lists a bounded number of reasons.
    flood = {WEB_DIGEST: index[WEB_DIGEST][:-1]}
    denied = asyncio.run(runtime.admit(request, attestations=flood, resources=()))
    assert not denied.allowed
    assert len(denied.message.splitlines()) <= 2 + MAX_LISTED_REASONS + 2
    assert "more (see the audit log)" in denied.message
    # The workload's own annotation comes before other namespaces too.
    annotated = workload(
        "Deployment",
        "web",
        "dev-prod",
        WEB,
        annotations={"guard.dev/attestations": json.dumps([envelope(cast.ci)])},
    )
    request = parse_review(admission_review(annotated))
    assert request.namespace == "dev-prod"
    result = asyncio.run(runtime.admit(request, attestations=flood, resources=()))
    assert result.allowed, result.message


def test_gather_orders_own_namespace_then_inline_then_others(cast: Cast) -> None:
    texts = [envelope(cast.ci, [WEB_DIGEST], attester=f"a{n}") for n in range(3)]
    index = {
        WEB_DIGEST: [
            index_entries(texts[0], "ReviewAttestation other/a", "other")[0][WEB_DIGEST],
            index_entries(texts[1], "ReviewAttestation prod/b", "prod")[0][WEB_DIGEST],
        ]
    }
    candidates = gather([WEB_DIGEST], index, [texts[2].encode()], namespace="prod")
    assert candidates.sources[WEB_DIGEST] == (
        "ReviewAttestation prod/b",
        "annotation",
        "ReviewAttestation other/a",
    )


@pytest.mark.parametrize(
    "value",
    [
        "[" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        json.dumps([{"payload": "x" * 10, "payloadType": 1, "signatures": []}] * 20),
        "\ud800",
        json.dumps(["\x00" * 1024] * 16),
    ],
)
def test_hostile_annotations_never_raise(value: str) -> None:
    obj = workload("Pod", "p", "ns", WEB, annotations={"guard.dev/attestations": value})
    texts, problems = annotation_envelopes("Pod", obj)
    assert len(texts) <= 16
    assert texts or problems


def test_hostile_annotation_is_denied_not_crashed(files: FileInputs) -> None:
    runtime = _runtime(files, [])
    obj = workload(
        "Deployment", "web", "prod", UNATTESTED, annotations={"guard.dev/attestations": "[" * 10**5}
    )
    request = parse_review(admission_review(obj))
    result = asyncio.run(runtime.admit(request, attestations={}, resources=()))
    assert not result.allowed
    assert result.code == 403
    assert any("nested too deeply" in note for note in result.notes)


# --------------------------------------------------------------------------- shared state


class _Reentrant:
    """A review evaluator that judges another request while judging its own,
    as a second request on the same engine would."""

    def __init__(self, policies: PolicySet, inner: Any) -> None:
        self.policies = policies
        self.inner = inner
        self.nested: AdmissionResult | None = None

    def review(self, policy: GuardPolicy, subject: Subject) -> Any:
        if self.nested is None:
            other = parse_review(admission_review(workload("Deployment", "w", "prod", UNATTESTED)))
            self.nested = judge(other, self.policies, None)
        return self.inner.review(policy, subject)


def test_each_request_is_judged_with_its_own_evaluator(
    tmp_path: Path, cast: Cast, files: FileInputs
) -> None:
    # Two review policies: the second is judged after the nested request ran.
    second = copy.deepcopy(REVIEW_POLICY)
    second["metadata"]["name"] = "require-review-again"
    policies = build_policy_set(
        FileInputs.load(
            [write_documents(tmp_path / "p.yaml", [*TEST_POLICIES, second])],
            [write_documents(tmp_path / "t.yaml", [cast.trust_document()])],
        ),
        (),
        enforcement=Action.deny,
    )
    request = parse_review(admission_review(workload("Deployment", "web", "prod", WEB)))
    candidates = gather([WEB_DIGEST], {}, [envelope(cast.ci).encode()])
    inner = AttestationReview(policies.trust, candidates, now=lambda: dt.datetime.now(dt.UTC))
    reentrant = _Reentrant(policies, inner)
    result = judge(request, policies, reentrant)
    assert result.allowed, result.message
    assert reentrant.nested is not None and not reentrant.nested.allowed
    # The shared engine holds no evaluator at all: each request passes its own.
    assert not hasattr(policies.engine, "review")


def test_policy_cache_returns_the_set_built_from_the_callers_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Status handlers run in Kopf's worker threads and call the cache while
    # admission does on the event loop: a build by one must never be handed
    # to the other. Here the other caller runs while the first logs its
    # broken resources, between building and answering.
    from controller.kube.state import entry_from_body

    broken = dict(NO_PRIVILEGED, metadata={"name": "broken"}, spec={"severity": "high"})
    first = [entry_from_body("GuardPolicy", broken)]
    second = [entry_from_body("GuardPolicy", NO_PRIVILEGED)]
    cache = PolicyCache(FileInputs(), Action.deny)
    cache.get([])
    seen: list[PolicySet] = []

    class Interleave(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not seen:
                seen.append(cache.get(second))

    handler = Interleave()
    logging.getLogger("controller.kube.state").addHandler(handler)
    try:
        mine = cache.get(first)
    finally:
        logging.getLogger("controller.kube.state").removeHandler(handler)
    assert seen, "the interleaving caller ran"
    assert "GuardPolicy broken" in mine.problems
    assert [p.name for p in seen[0].policies] == ["no-privileged"]
    # And the cache is never left holding one caller's set under another's key.
    assert [p.name for p in cache.get(second).policies] == ["no-privileged"]
    assert "GuardPolicy broken" in cache.get(first).problems


# --------------------------------------------------------------------------- text shown to people and logs


def _hidden(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]


def test_printable_escapes_what_hides_or_breaks_lines() -> None:
    assert printable("INC-1: checkout down, café") == "INC-1: checkout down, café"
    assert printable("a\nb\u2028c\x85d\u202ee\x00") == "a\\nb\\u2028c\\u0085d\\u202ee\\u0000"
    assert _hidden(printable("".join(chr(c) for c in range(0x20)) + "\ud800\u200b")) == []


def test_audit_line_is_one_line_whatever_the_strings(tmp_path: Path) -> None:
    line = json_line_safe(json.dumps({"r": "a\u2028b\x85c\u2029d\ud800"}, ensure_ascii=False))
    assert len(line.splitlines()) == 1
    assert json.loads(line)["r"] == "a\u2028b\x85c\u2029d\ud800"
    stream = io.StringIO()
    log = AuditLog(tmp_path / "audit.jsonl", stream=stream)
    log.write_record({"uid": "1", "reason": 'x\u2028{"uid": "forged"}\ud800'})
    log.close()
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["uid"] == "1"
    assert len(stream.getvalue().splitlines()) == 1


def test_warnings_stay_within_what_the_api_server_passes_on() -> None:
    many = [f"guard [p{n}/r] " + "x" * 500 for n in range(40)]
    kept = within_budget(many)
    assert sum(len(w) for w in kept) <= MAX_WARNING_TOTAL_CHARS
    assert len(kept) <= MAX_WARNINGS + 1
    assert kept[-1] == f"guard: {40 - (len(kept) - 1)} more warning(s) not shown"
    assert within_budget(["a", "b"]) == ["a", "b"]
    short = [f"w{n}" for n in range(MAX_WARNINGS + 5)]
    assert within_budget(short)[-1] == "guard: 5 more warning(s) not shown"


def test_text_from_the_object_cannot_forge_message_lines(policies: PolicySet) -> None:
    image = f"{IMAGE}\n- [require-review/review] ok\u202e"
    request = parse_review(admission_review(workload("Pod", "p", "prod", image, labels={})))
    reviewer = AttestationReview(policies.trust, gather([], {}, []))
    denied = judge(request, policies, reviewer)
    assert not denied.allowed
    lines = denied.message.splitlines()
    assert all(not _hidden(line) for line in lines)
    assert sum(line.startswith("- [") for line in lines) == 1
    assert all(not _hidden(w) for w in denied.warnings)


# --------------------------------------------------------------------------- break-glass inheritance

ONCALL = "dana@example.com"
# Judges only Pods labelled tier=prod, and lets the on-call break glass.
POD_LABEL_REVIEW: dict[str, Any] = {
    "apiVersion": "guard.dev/v1alpha1",
    "kind": "GuardPolicy",
    "metadata": {"name": "prod-pods"},
    "spec": {
        "severity": "critical",
        "action": "deny",
        "match": {
            "kubernetes": {
                "kinds": ["Pod", "Job"],
                "namespaces": {"include": ["apps"]},
                "labelSelector": {"matchLabels": {"tier": "prod"}},
            }
        },
        "review": {
            "attesters": ["ci"],
            "repositories": ["github.com/acme/web"],
            "targetRefs": ["refs/heads/main"],
            "breakGlass": {"principals": [ONCALL]},
        },
    },
}


@pytest.fixture(scope="module")
def label_policies(tmp_path_factory: pytest.TempPathFactory, cast: Cast) -> PolicySet:
    directory = tmp_path_factory.mktemp("labels")
    return build_policy_set(
        FileInputs.load(
            [write_documents(directory / "p.yaml", [*TEST_POLICIES, POD_LABEL_REVIEW])],
            [write_documents(directory / "t.yaml", [cast.trust_document()])],
        ),
        (),
        enforcement=Action.deny,
    )


def _cronjob_with_glass(reason: str) -> dict[str, Any]:
    cronjob = workload("CronJob", "nightly", "apps", UNATTESTED, labels={"tier": "dev"})
    job = cronjob["spec"]["jobTemplate"]
    job["metadata"] = {"labels": {"tier": "prod"}}
    job["spec"]["template"]["metadata"] = {
        "labels": {"tier": "prod"},
        "annotations": {"guard.dev/break-glass": reason},
    }
    return cronjob


def _glass_judge(policies: PolicySet, obj: dict[str, Any], user: str) -> Any:
    request = parse_review(admission_review(obj, user=user))
    return judge(request, policies, AttestationReview(policies.trust, gather([], {}, [])))


def test_break_glass_is_refused_where_the_made_objects_are_judged(
    label_policies: PolicySet,
) -> None:
    # The CronJob itself is labelled tier=dev: no review policy judges it,
    # but its Jobs and Pods (tier=prod) are, and they would inherit the claim.
    cronjob = _cronjob_with_glass("INC-9: nightly export broken")
    refused = _glass_judge(label_policies, cronjob, "carol@example.com")
    assert not refused.allowed
    assert refused.break_glass is not None and refused.break_glass.outcome == "refused"
    assert refused.break_glass.refused_by == ("prod-pods",)
    assert "judges what controllers make from this CronJob" in refused.message
    honoured = _glass_judge(label_policies, cronjob, ONCALL)
    assert honoured.allowed, honoured.message
    assert honoured.break_glass is not None and honoured.break_glass.honoured_by == ("prod-pods",)
    # On the template already: no hint to put it there.
    assert "put it on the pod template" not in honoured.warnings[0]
    assert "bypassed: prod-pods/review" in honoured.warnings[0]


def test_without_break_glass_made_objects_are_left_to_their_own_admission(
    label_policies: PolicySet,
) -> None:
    cronjob = workload("CronJob", "nightly", "apps", UNATTESTED, labels={"tier": "dev"})
    assert _glass_judge(label_policies, cronjob, "carol@example.com").allowed


def test_break_glass_reason_is_escaped_once(label_policies: PolicySet) -> None:
    pod = workload("Pod", "p", "apps", UNATTESTED, labels={"tier": "prod"})
    pod["metadata"]["annotations"] = {"guard.dev/break-glass": "INC-1\n trust me\u202e"}
    result = _glass_judge(label_policies, pod, ONCALL)
    assert result.allowed, result.message
    assert "(reason: 'INC-1\\n trust me\\u202e')" in result.warnings[0]
    assert result.break_glass is not None
    assert result.break_glass.reason == "INC-1\\n trust me\\u202e"


def test_review_of_made_objects_is_checked_in_full_at_the_parent(
    label_policies: PolicySet, cast: Cast
) -> None:
    # Controllers' requests skip expiry and deployer checks because the parent
    # was judged in full: when no review policy judges the parent, the
    # policies that judge what it makes must judge it, or an expired review
    # (or an author deploying alone) gets through a CronJob or Deployment.
    digest = UNATTESTED.split("@", 1)[1]
    stale = expired_envelope(cast.ci, [digest]).encode()
    cronjob = workload("CronJob", "nightly", "apps", UNATTESTED, labels={"tier": "dev"})
    job = cronjob["spec"]["jobTemplate"]
    job["spec"]["template"]["metadata"] = {"labels": {"tier": "prod"}}

    def decide_as(obj: dict[str, Any], user: str) -> Any:
        request = parse_review(admission_review(obj, user=user))
        reviewer = AttestationReview(label_policies.trust, gather([digest], {}, [stale]))
        subject = subject_of(request, controller_identities=frozenset({CONTROLLER_USER}))
        return judge(request, label_policies, reviewer, subject=subject)

    by_person = decide_as(cronjob, "carol@example.com")
    assert not by_person.allowed
    assert "[prod-pods/review]" in by_person.message
    assert "expired" in by_person.message
    assert "prod-pods" in by_person.matched
    pod = workload("Pod", "nightly-1-x", "apps", UNATTESTED, labels={"tier": "prod"})
    assert decide_as(pod, CONTROLLER_USER).allowed
    assert decide_as(workload("CronJob", "n", "apps", UNATTESTED), "carol@example.com").allowed
