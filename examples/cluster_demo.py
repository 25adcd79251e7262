"""The cluster half of the demo: the real operator, no cluster needed.

guard's Kopf operator runs against kmock's emulated Kubernetes API server
(the same harness its tests use), with the default policy bundle and the
demo trust and attestations. This script plays kube-apiserver: it sends the
AdmissionReviews a ``kubectl apply`` would cause, over HTTPS with the CA
verified, and prints each answer the way kubectl shows it, then the audit
line guard wrote and the Events it posted.

A real cluster uses the Helm chart in ``charts/guard`` instead.

The break-glass case needs a policy that lists who may break glass; the
default ``policies/review.yaml`` lists nobody, so this demo loads
``examples/manifests/require-review-break-glass.yaml`` in its place (the same
policy plus ``breakGlass.groups: [sre-oncall]``).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.attest import dsse  # noqa: E402
from controller.attest.keys import generate  # noqa: E402
from controller.report.output import colour_wanted  # noqa: E402
from tests.kube.helpers import admission_review  # noqa: E402
from tests.operator.harness import (  # noqa: E402
    Answer,
    EmulatedApi,
    RunningGuard,
    make_tls,
    serve_settings,
)

EXAMPLES = ROOT / "examples"
MANIFEST = EXAMPLES / "manifests" / "web.yaml"
GLASS_POLICY = EXAMPLES / "manifests" / "require-review-break-glass.yaml"
TRUST = EXAMPLES / "keys" / "demo-trust.yaml"
ATTESTATIONS = EXAMPLES / "attestations"
WEBHOOK = "users.guard.dev"
DEVELOPER = ("carol@example.com", ("system:authenticated", "developers"))
ONCALL = ("dana@example.com", ("system:authenticated", "sre-oncall"))
HOTFIX = "ghcr.io/example/app@sha256:" + "5f" * 32
REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 500: "InternalError"}
WAIT = 10.0

# Colour as guard's own reports: only on a terminal, never with NO_COLOR.
COLOUR = colour_wanted(sys.stdout)
BOLD = "\033[1m" if COLOUR else ""
DIM = "\033[2m" if COLOUR else ""
RESET = "\033[0m" if COLOUR else ""


def policy_paths() -> tuple[Path, ...]:
    """The default bundle, with require-review replaced by its break-glass twin."""
    bundle = sorted(
        p
        for p in (ROOT / "policies").glob("*.yaml")
        if not p.name.endswith(".test.yaml") and p.name != "review.yaml"
    )
    return (*bundle, GLASS_POLICY)


def kubectl_answer(answer: Answer, name: str, source: str) -> str:
    """What ``kubectl apply -f SOURCE`` prints for this answer."""
    lines = [f"Warning: {w}" for w in answer.warnings]
    if answer.allowed:
        lines.append(f"deployment.apps/{name} created")
    else:
        code = answer.code or answer.status
        lines.append(
            f"Error from server ({REASONS.get(code, 'InternalError')}): error when creating "
            f'"{source}": admission webhook "{WEBHOOK}" denied the request: {answer.message}'
        )
    return "\n".join(lines)


def forged_envelope() -> str:
    """The reviewed statement, re-signed by a key nobody trusts (claiming the CI's keyid)."""
    genuine = dsse.parse((ATTESTATIONS / "app-reviewed.json").read_bytes())
    impostor = generate("ecdsa")
    keyid = genuine.signatures[0].keyid
    signature = dsse.Signature(
        impostor.sign(dsse.pae(genuine.payload_type, genuine.payload)), keyid
    )
    return dsse.build(genuine.payload_type, genuine.payload, [signature]).to_json().decode()


def attestation(name: str, envelope: str) -> dict[str, Any]:
    return {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "ReviewAttestation",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"envelope": envelope},
    }


@dataclass(frozen=True)
class Case:
    title: str
    user: tuple[str, tuple[str, ...]]
    allowed: bool
    expect: str  # a phrase the answer must contain
    image: str | None = None
    annotations: Mapping[str, str] | None = None
    before: Callable[[RunningGuard], None] | None = None


def with_attestation(
    name: str, envelope: str, *, replaces: str | None = None
) -> Callable[[RunningGuard], None]:
    """Create (and replace) a ReviewAttestation, then wait until guard indexed it."""

    def apply(guard: RunningGuard) -> None:
        log = guard.runtime.watch_log
        if replaces is not None:
            guard.api.delete("reviewattestations", replaces, "shop")
            if not log.wait_for("ReviewAttestation", "shop", replaces, "DELETED", WAIT):
                raise RuntimeError(f"guard did not see ReviewAttestation shop/{replaces} go")
        guard.api.create("reviewattestations", attestation(name, envelope))
        if not log.wait_for("ReviewAttestation", "shop", name, "ADDED", WAIT):
            raise RuntimeError(f"guard did not index ReviewAttestation shop/{name}")

    return apply


def cases() -> list[Case]:
    reviewed = yaml.safe_load((ATTESTATIONS / "app-reviewed.yaml").read_text())["spec"]["envelope"]
    self_approved = (ATTESTATIONS / "app-self-approved.json").read_text()
    glass = {"guard.dev/break-glass": "INC-4711: checkout down, hotfix for CVE-2025-1234"}
    return [
        Case(
            "1. carol deploys the app; nobody has reviewed it",
            DEVELOPER,
            allowed=False,
            expect="no review attestation found",
        ),
        Case(
            "2. a ReviewAttestation signed by a key guard does not trust (forged)",
            DEVELOPER,
            allowed=False,
            expect="signature",
            before=with_attestation("app-forged", forged_envelope()),
        ),
        Case(
            "3. a correctly signed attestation, but alice approved her own change",
            DEVELOPER,
            allowed=False,
            expect="approved their own change",
            before=with_attestation("app-self-approved", self_approved, replaces="app-forged"),
        ),
        Case(
            "4. the reviewed attestation: alice wrote it, carol approved it, CI signed",
            DEVELOPER,
            allowed=True,
            expect="created",
            before=with_attestation("app-reviewed", reviewed, replaces="app-self-approved"),
        ),
        Case(
            "5. an emergency hotfix (unreviewed image) by dana of sre-oncall, with break-glass",
            ONCALL,
            allowed=True,
            expect="break-glass used by dana@example.com",
            image=HOTFIX,
            annotations=glass,
        ),
        Case(
            "6. the same break-glass by carol, who is not on call",
            DEVELOPER,
            allowed=False,
            expect="break-glass refused",
            image=HOTFIX,
            annotations=glass,
        ),
    ]


def deployment(case: Case) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(yaml.safe_load(MANIFEST.read_text()))
    if case.image is not None:
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = case.image
    if case.annotations:
        obj["metadata"]["annotations"] = dict(case.annotations)
        obj["spec"]["template"]["metadata"]["annotations"] = dict(case.annotations)
    return obj


AUDIT_FIELDS = ("uid", "decision", "request", "attestations", "breakGlass", "policyDigest")


def audit_excerpt(record: Mapping[str, Any]) -> str:
    """The audit line's key fields (the full line also has every finding,
    the object reference, exemptions, notes and the trust digest)."""
    shown = {k: record[k] for k in AUDIT_FIELDS if k in record}
    shown["request"] = {
        k: record["request"][k]
        for k in ("operation", "kind", "namespace", "name", "user", "groups")
    }
    shown["policies"] = {
        name: outcome
        for name, outcome in record.get("policies", {}).items()
        if outcome != {"result": "pass", "effect": "none"}
    }
    return json.dumps(shown)


def print_events(api: EmulatedApi) -> None:
    print(
        f"\n{BOLD}$ kubectl get events -n default --field-selector involvedObject.kind=GuardPolicy"
    )
    print(RESET, end="")
    print(f"{'TYPE':<8} {'REASON':<18} {'OBJECT':<32} MESSAGE")
    for event in api.events():
        involved = event["involvedObject"]
        target = f"guardpolicy/{involved['name']}"
        message = event["message"]
        if len(message) > 110:
            message = message[:109] + "…"
        print(f"{event['type']:<8} {event['reason']:<18} {target:<32} {message}")


def run_cases(guard: RunningGuard) -> bool:
    audit_file = guard.service.settings.audit_file
    assert audit_file is not None
    every_answer_as_expected = True
    for case in cases():
        print(f"\n{BOLD}== {case.title}{RESET}")
        if case.before is not None:
            case.before(guard)
            print(f"{DIM}(ReviewAttestation created in namespace shop){RESET}")
        user, groups = case.user
        review = admission_review(deployment(case), user=user, groups=groups)
        uid = review["request"]["uid"]
        answer = guard.post(review)
        print(f"$ kubectl apply -f examples/manifests/web.yaml   {DIM}# as {user}{RESET}")
        shown = kubectl_answer(answer, "web", "examples/manifests/web.yaml")
        print(shown)
        good = answer.allowed is case.allowed and case.expect in shown
        if not good:
            every_answer_as_expected = False
            print(f"!! expected {'allowed' if case.allowed else 'denied'} with {case.expect!r}")
        lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
        record = next(r for r in lines if r["uid"] == uid)
        print(f"{DIM}audit line (key fields): {audit_excerpt(record)}{RESET}")
    return every_answer_as_expected


def main() -> int:
    """Run the whole cluster demo; 0 when every answer was the expected one."""
    started = time.perf_counter()
    # Kopf warns that OS signals are ignored off the main thread: expected here.
    logging.getLogger("kopf").setLevel(logging.ERROR)
    print(f"{BOLD}== guard in a cluster: the real operator against an emulated API server{RESET}")
    print("(kmock plays the Kubernetes API; this script plays kube-apiserver calling the webhook)")
    print("policies: policies/ with require-review from examples/manifests/")
    print("trust: examples/keys/demo-trust.yaml (demo keys only)")
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as scratch:
        directory = Path(scratch)
        tls = make_tls(directory / "tls")
        settings = serve_settings(
            policy_paths()[0], TRUST, tls, directory / "audit.jsonl", policy_paths=policy_paths()
        )
        api = EmulatedApi()
        api.start()
        try:
            guard = RunningGuard(api, tls, settings).start()
            try:
                ok = run_cases(guard)
                if not guard.runtime.events.idle.wait(WAIT):
                    raise RuntimeError("guard's events were not posted in time")
                print_events(api)
            finally:
                guard.stop()
        finally:
            api.stop()
    print(f"\n{DIM}(cluster demo took {time.perf_counter() - started:.1f}s){RESET}")
    print("A real cluster installs guard with the Helm chart in charts/guard.")
    if not ok:
        print("cluster demo: some answers were not the expected ones")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
