"""Compiled state caching, envelopes from annotations and the index, and the
bounded fallback read."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError
from controller.kube.envelopes import annotation_envelopes, index_entries
from controller.kube.fallback import FallbackReader, TokenBucket
from controller.kube.state import FileInputs, PolicyCache, entry_from_body
from controller.policy.documents import Action
from tests.kube.helpers import (
    NO_PRIVILEGED,
    WEB,
    WEB_DIGEST,
    Cast,
    attestation_resource,
    envelope,
    workload,
    write_documents,
)


def test_policy_cache_rebuilds_only_when_a_document_changes() -> None:
    cache = PolicyCache(FileInputs(), Action.deny)
    first = entry_from_body("GuardPolicy", NO_PRIVILEGED)
    with_status = dict(NO_PRIVILEGED, status={"guard": {"valid": True}})
    cache.get([first])
    cache.get([entry_from_body("GuardPolicy", with_status)])
    assert cache.builds == 1
    changed = copy.deepcopy(NO_PRIVILEGED)
    changed["spec"]["action"] = "warn"
    policies = cache.get([entry_from_body("GuardPolicy", changed)])
    assert cache.builds == 2
    assert policies.policies[0].spec.action is Action.warn


def test_conflicting_trust_resource_is_not_used(tmp_path: Path) -> None:
    cast = Cast.make()
    trust_file = write_documents(tmp_path / "t.yaml", [cast.trust_document()])
    other = cast.trust_document()
    other["metadata"]["name"] = "second"
    other["spec"]["keys"][0]["publicKey"] = cast.stranger.public.pem()
    cache = PolicyCache(FileInputs.load([], [trust_file]), Action.deny)
    policies = cache.get([entry_from_body("GuardTrust", other)])
    assert "key name 'ci' is also defined" in policies.problems["GuardTrust second"]
    assert [k.public.keyid for k in policies.trust.keys] == [cast.ci.keyid]


def test_trust_in_policy_files_is_refused(tmp_path: Path) -> None:
    path = write_documents(tmp_path / "p.yaml", [Cast.make().trust_document()])
    with pytest.raises(InputError, match="belong in --trust"):
        FileInputs.load([path], [])


def test_annotation_envelopes_as_strings_and_objects() -> None:
    cast = Cast.make()
    text = envelope(cast.ci)
    as_object = json.loads(text)
    annotations = {"guard.dev/attestations": json.dumps([text, as_object])}
    obj = workload("Deployment", "w", "ns", WEB, annotations=annotations)
    texts, problems = annotation_envelopes("Deployment", obj)
    assert problems == []
    assert len(texts) == 1  # the same envelope twice is one candidate


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('[{"a": 1, "a": 2}]', "duplicate key"),
        ("[1]", "must be an envelope object or string"),
        (json.dumps(["x"] * 17), "only the first 16 are read"),
    ],
)
def test_bad_annotations_are_reported(value: str, problem: str) -> None:
    obj = workload("Pod", "p", "ns", WEB, annotations={"guard.dev/attestations": value})
    _, problems = annotation_envelopes("Pod", obj)
    assert any(problem in p for p in problems)


def test_index_entries_by_claimed_digest() -> None:
    entries, problem = index_entries(envelope(Cast.make().ci), "ReviewAttestation ns/a")
    assert problem is None
    assert list(entries) == [WEB_DIGEST]
    assert index_entries('{"payloadType": "x"}', "s")[1] is not None


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=2.0, clock=lambda: now[0])
    assert [bucket.take(), bucket.take(), bucket.take()] == [True, True, False]
    now[0] = 1.0
    assert bucket.take() is True


def test_fallback_finds_times_out_and_survives_errors() -> None:
    text = envelope(Cast.make().ci)
    body = attestation_resource("a", "ns", text)

    async def found(_: str | None) -> list[Mapping[str, Any]]:
        return [body]

    async def slow(_: str | None) -> list[Mapping[str, Any]]:
        await asyncio.Event().wait()
        return []

    async def broken(_: str | None) -> list[Mapping[str, Any]]:
        raise RuntimeError("403 Forbidden")

    async def run() -> list[str]:
        hit = await FallbackReader(found).read("ns", [WEB_DIGEST])
        assert [e.source for e in hit.found[WEB_DIGEST]] == ["ReviewAttestation ns/a"]
        late = await FallbackReader(slow, timeout=0.01).read("ns", [WEB_DIGEST])
        failed = await FallbackReader(broken).read("ns", [WEB_DIGEST])
        return [hit.note, late.note, failed.note]

    notes = asyncio.run(run())
    assert notes == [
        "fallback API read of namespace ns found 1 candidate envelope(s)",
        "fallback API read of namespace ns timed out after 0.01s",
        "fallback API read of namespace ns failed: 403 Forbidden",
    ]


def test_an_empty_trust_folder_is_the_charts_default_not_an_error(tmp_path: Path) -> None:
    """The chart mounts its trust Secret even with no keys: guard starts, and
    review fails closed until a GuardTrust exists. A folder with anything
    else in it still has to hold trust."""
    empty = tmp_path / "trust"
    empty.mkdir()
    assert FileInputs.load([], [empty]).trust_specs == ()
    (empty / "stray.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(InputError):
        FileInputs.load([], [empty])
