"""Build provenance, source summaries and the chain, link by link.

The end-to-end denials (CLI, kube check, webhook) are in
tests/cli/test_provenance_chain.py and tests/operator/test_provenance_chain.py;
here each part is pinned on its own: the policy's model, the trust roles,
reading real and hostile provenance, and the chain's options.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.attest.chain import ChainVerifier
from controller.attest.keys import generate
from controller.attest.provenance import (
    PROVENANCE_V02,
    peek_source_commits,
    read_provenance,
    repository_name,
)
from controller.attest.review import EnvelopeList
from controller.attest.statement import (
    Statement,
    StatementError,
    SubjectEntry,
    normalize_subject,
    parse_statement,
)
from controller.attest.summary import VSA_V1, read_summary
from controller.attest.trust import Trust
from controller.attest.verify import Circumstances, Requirements, Verifier
from controller.kube.envelopes import index_entries
from controller.policy.documents import GuardPolicy, GuardTrustSpec
from tests.attest.chains import (
    FIXTURE,
    NOW,
    REF,
    REPOSITORY,
    ChainKeys,
    Scenario,
    chain_policy,
    hex_of,
    provenance,
    review,
    sign,
    summary,
)


@pytest.fixture(scope="module")
def chain_keys() -> ChainKeys:
    return ChainKeys.make()


def _policy(**changes: Any) -> GuardPolicy:
    document = chain_policy()
    review_block = document["spec"]["review"]
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = review_block
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return GuardPolicy.model_validate(document)


def _requirements(**changes: Any) -> Requirements:
    policy = _policy(**changes)
    assert policy.spec.review is not None
    return Requirements.from_review(policy.spec.review)


def _verify(
    keys: ChainKeys,
    envelopes: list[str],
    digest: str,
    requirements: Requirements | None = None,
    **circumstances: Any,
) -> Any:
    trust = Trust.from_spec(GuardTrustSpec.model_validate(keys.trust_document()["spec"]))
    source = EnvelopeList(e.encode() for e in envelopes)
    return ChainVerifier(Verifier(trust)).verify(
        digest,
        source.for_digest,
        requirements or _requirements(),
        Circumstances(now=NOW, **circumstances),
    )


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    "event", ["pull_request", "pull_request_target", "workflow_run", "issue_comment"]
)
def test_a_policy_can_never_allow_the_events_that_build_unreviewed_code(event: str) -> None:
    with pytest.raises(ValidationError, match=f"event '{event}' can never be allowed"):
        _policy(provenance__github__events=["push", event])


def test_only_push_is_allowed_unless_more_events_are_listed() -> None:
    policy = _policy()
    assert policy.spec.review is not None and policy.spec.review.provenance is not None
    assert policy.spec.review.provenance.github.events == ["push"]
    assert policy.spec.review.provenance.github.runner_environments == ["github-hosted"]
    with pytest.raises(ValidationError, match="did you mean 'release'"):
        _policy(provenance__github__events=["relase"])


@pytest.mark.parametrize("field", ["builders", "repositories", "refs"])
def test_builders_repositories_and_refs_are_required_and_non_empty(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _policy(**{f"provenance__{field}": []})
    with pytest.raises(ValidationError, match=field):
        _policy(**{f"provenance__{field}": None})


@pytest.mark.parametrize("identity", ["", "abc", "12 3", "-1", 495574555])
def test_a_repository_id_is_the_numeric_id_as_text(identity: Any) -> None:
    with pytest.raises(ValidationError):
        _policy(provenance__repositories=[{"name": REPOSITORY, "id": identity}])


def test_source_summaries_need_the_chain_and_a_max_age() -> None:
    with pytest.raises(ValidationError, match="acceptSourceVSA needs provenance"):
        _policy(provenance=None)
    with pytest.raises(ValidationError, match="acceptSourceVSA needs maxAge"):
        _policy(maxAge=None)
    with pytest.raises(ValidationError, match=r"acceptSourceVsa|acceptSourceVSA"):
        GuardPolicy.model_validate(
            json.loads(json.dumps(chain_policy()).replace("acceptSourceVSA", "acceptSourceVsa"))
        )


# --------------------------------------------------------------------------- roles


def test_a_builder_never_vouches_for_a_review_and_a_verifier_never_for_provenance(
    chain_keys: ChainKeys,
) -> None:
    scenario = Scenario("roles", "")
    by_builder = [
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit)),
        sign(chain_keys.builder, review(scenario.commit)),
    ]
    verdict = _verify(chain_keys, by_builder, scenario.digest)
    assert not verdict.ok
    assert any("not signed by an attester" in r and "(builder)" in r for r in verdict.reasons)
    by_verifier = [
        sign(chain_keys.verifier, provenance(scenario.digest, scenario.commit)),
        sign(chain_keys.attester, review(scenario.commit)),
    ]
    verdict = _verify(chain_keys, by_verifier, scenario.digest)
    assert any("signed by 'source-verifier' (verifier)" in r for r in verdict.reasons)


def test_trust_accepts_the_four_roles_and_nothing_else(chain_keys: ChainKeys) -> None:
    spec = chain_keys.trust_document()["spec"]
    roles = {k.role for k in Trust.from_spec(GuardTrustSpec.model_validate(spec)).keys}
    assert roles == {"builder", "attester", "verifier"}
    bad = copy.deepcopy(spec)
    bad["keys"][0]["role"] = "build"
    with pytest.raises(ValidationError, match="did you mean 'builder'"):
        GuardTrustSpec.model_validate(bad)


# --------------------------------------------------------------------------- reading


def test_the_real_github_provenance_reads_as_built() -> None:
    statement = parse_statement(FIXTURE.read_bytes())
    built = read_provenance(statement)
    assert built.github_actions
    assert built.event == "push"
    assert (built.repository_id, built.owner_id) == ("495574555", "71096353")
    assert built.workflow_path == ".github/workflows/release.yml"
    assert built.workflow_ref == REF
    assert built.runner_environment == "github-hosted"  # from the hosted builder's id
    (source,) = built.sources
    assert source.repository == REPOSITORY
    assert source.ref == REF
    assert source.commit == "gitCommit:d9093d4b3b99d9ee446633ac7074e43cea78c727"


def test_provenance_v02_reads_too() -> None:
    commit = hex_of("v0.2", 40)
    predicate = {
        "builder": {"id": "https://github.com/actions/runner/github-hosted"},
        "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
        "invocation": {
            "configSource": {
                "uri": f"git+https://{REPOSITORY}@{REF}",
                "digest": {"sha1": commit},
                "entryPoint": ".github/workflows/release.yml",
            },
            "environment": {"github_event_name": "push", "github_repository_id": "495574555"},
        },
        "materials": [{"uri": f"git+https://{REPOSITORY}@{REF}", "digest": {"sha1": commit}}],
    }
    statement = Statement("https://in-toto.io/Statement/v0.1", PROVENANCE_V02, (), predicate)
    built = read_provenance(statement)
    assert built.sources[0].commit == f"gitCommit:{commit}"
    assert (built.event, built.repository_id, built.workflow_ref) == ("push", "495574555", REF)


def test_provenance_v02_is_accepted_where_the_policy_lists_its_build_type(
    chain_keys: ChainKeys,
) -> None:
    scenario = Scenario("v0.2", "")
    statement = provenance(scenario.digest, scenario.commit)
    v1 = statement["predicate"]
    statement["predicateType"] = PROVENANCE_V02
    statement["predicate"] = {
        "builder": v1["runDetails"]["builder"],
        "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
        "invocation": {
            "configSource": {
                "uri": f"git+https://{REPOSITORY}@{REF}",
                "entryPoint": ".github/workflows/release.yml",
            },
            "environment": {"github_event_name": "push", "github_repository_id": "495574555"},
        },
        "materials": [
            {"uri": f"git+https://{REPOSITORY}@{REF}", "digest": {"sha1": scenario.commit}}
        ],
    }
    envelopes = [
        sign(chain_keys.builder, statement),
        sign(chain_keys.attester, review(scenario.commit)),
    ]
    denied = _verify(chain_keys, envelopes, scenario.digest)
    assert any("has build type" in r for r in denied.reasons)
    listed = _requirements(
        provenance__buildTypes=[
            "https://github.com/slsa-framework/slsa-github-generator/generic@v1"
        ]
    )
    assert _verify(chain_keys, envelopes, scenario.digest, listed).ok


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("runDetails", None, "runDetails.builder.id is missing"),
        ("buildDefinition.buildType", 7, "buildDefinition.buildType is missing or not"),
        ("buildDefinition.resolvedDependencies", {"uri": "x"}, "is missing or not a list"),
        ("buildDefinition.internalParameters.github.event_name", ["push"], "event_name"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_reason_not_a_default(
    path: str, value: Any, message: str
) -> None:
    statement = provenance("sha256:" + "a" * 64, "b" * 40)
    *parents, last = path.split(".")
    node = statement["predicate"]
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(StatementError, match=message):
        read_provenance(parse_statement(json.dumps(statement).encode()))


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("git+https://github.com/Acme/Shop.git", "github.com/acme/shop"),
        ("https://github.com/acme/shop/", "github.com/acme/shop"),
        ("git+ssh://git@github.com/acme/shop", "github.com/acme/shop"),
        ("github.com/acme/shop", "github.com/acme/shop"),
    ],
)
def test_repository_names_compare_as_policies_spell_them(uri: str, name: str) -> None:
    assert repository_name(uri) == name


_SIGNER = generate("ecdsa")
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_shaped = st.fixed_dictionaries(
    {
        "buildDefinition": st.fixed_dictionaries(
            {
                "buildType": _json,
                "externalParameters": _json,
                "internalParameters": st.fixed_dictionaries({"github": _json}) | _json,
                "resolvedDependencies": st.lists(
                    st.fixed_dictionaries({"uri": _json, "digest": _json}), max_size=3
                )
                | _json,
            }
        ),
        "runDetails": st.fixed_dictionaries({"builder": st.fixed_dictionaries({"id": _json})}),
    }
)


@settings(max_examples=300, deadline=None)
@given(predicate=_shaped | _json)
def test_hostile_provenance_is_read_or_refused_with_a_reason(predicate: Any) -> None:
    """Whatever the predicate holds, reading it raises only StatementError,
    and peeking at it (for look-ups) never raises at all."""
    statement = Statement(
        "https://in-toto.io/Statement/v1",
        "https://slsa.dev/provenance/v1",
        (SubjectEntry("", {"sha256": "a" * 64}),),
        predicate,
    )
    try:
        read_provenance(statement)
    except StatementError as exc:
        assert str(exc)
    payload = json.dumps(
        {
            "_type": statement.type,
            "subject": [{"digest": {"sha256": "a" * 64}}],
            "predicateType": statement.predicate_type,
            "predicate": predicate,
        }
    ).encode()
    raw = sign(_SIGNER, json.loads(payload)).encode()
    assert all(c.startswith("gitCommit:") for c in peek_source_commits([raw, b"{", b""]))


@settings(max_examples=200, deadline=None)
@given(predicate=_json)
def test_hostile_summaries_are_read_or_refused_with_a_reason(predicate: Any) -> None:
    statement = Statement("https://in-toto.io/Statement/v1", VSA_V1, (), predicate)
    try:
        read_summary(statement)
    except StatementError as exc:
        assert str(exc)


def test_source_refs_may_be_spelt_either_way_at_either_place() -> None:
    for where in (
        {"sourceRefs": [REF]},
        {"annotations": {"sourceRefs": [REF]}},
        {"source_refs": [REF]},
    ):
        statement = summary("c" * 40, **{"annotations": {}, **where})
        read = read_summary(parse_statement(json.dumps(statement).encode()))
        assert read.source_refs == (REF,)


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("gitCommit:" + "A" * 40, "gitCommit:" + "a" * 40),
        ("gitCommit:" + "b" * 64, "gitCommit:" + "b" * 64),
        ("gitTree:" + "c" * 40, "gitTree:" + "c" * 40),
        ("sha256:" + "D" * 64, "sha256:" + "d" * 64),
    ],
)
def test_subject_keys(value: str, key: str) -> None:
    assert normalize_subject(value) == key


@pytest.mark.parametrize("value", ["gitCommit:abc", "gitCommit:" + "g" * 40, "gitBlob:" + "a" * 40])
def test_partial_or_unknown_revisions_are_refused(value: str) -> None:
    with pytest.raises(StatementError):
        normalize_subject(value)


def test_the_index_keys_a_review_by_its_commit(chain_keys: ChainKeys) -> None:
    commit = hex_of("indexed", 40)
    entries, problem = index_entries(sign(chain_keys.attester, review(commit)), "test")
    assert problem is None
    assert set(entries) == {f"gitCommit:{commit}"}
    scenario = Scenario("indexed", "")
    entries, _ = index_entries(
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit)), "test"
    )
    assert set(entries) == {scenario.digest}


# --------------------------------------------------------------------------- chain options


def _built_by(
    chain_keys: ChainKeys, name: str, path: str, value: Any
) -> tuple[Scenario, list[str]]:
    scenario = Scenario(name, "")

    def change(predicate: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = predicate
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return scenario, [
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit, change)),
        sign(chain_keys.attester, review(scenario.commit)),
    ]


def test_a_release_build_counts_only_where_the_policy_lists_release(
    chain_keys: ChainKeys,
) -> None:
    scenario, envelopes = _built_by(
        chain_keys, "release", "buildDefinition.internalParameters.github.event_name", "release"
    )
    denied = _verify(chain_keys, envelopes, scenario.digest)
    assert any("was built by a release run; the policy allows push" in r for r in denied.reasons)
    listed = _requirements(provenance__github__events=["push", "release"])
    assert _verify(chain_keys, envelopes, scenario.digest, listed).ok


def test_self_hosted_runners_count_only_where_listed(chain_keys: ChainKeys) -> None:
    scenario, envelopes = _built_by(
        chain_keys,
        "self-hosted",
        "buildDefinition.internalParameters.github.runner_environment",
        "self-hosted",
    )
    denied = _verify(chain_keys, envelopes, scenario.digest)
    assert any("ran on a self-hosted runner" in r for r in denied.reasons)
    listed = _requirements(provenance__github__runnerEnvironments=["self-hosted"])
    assert _verify(chain_keys, envelopes, scenario.digest, listed).ok


def test_the_workflow_and_the_builder_id_can_be_pinned(chain_keys: ChainKeys) -> None:
    scenario, envelopes = _built_by(
        chain_keys,
        "other-workflow",
        "buildDefinition.externalParameters.workflow.path",
        ".github/workflows/debug.yml",
    )
    denied = _verify(chain_keys, envelopes, scenario.digest)
    assert any("workflow .github/workflows/debug.yml is not one" in r for r in denied.reasons)
    good = Scenario("builder-id", "")
    chain = [
        sign(chain_keys.builder, provenance(good.digest, good.commit)),
        sign(chain_keys.attester, review(good.commit)),
    ]
    pinned = _requirements(provenance__builderIds=["https://builder.example/trusted"])
    verdict = _verify(chain_keys, chain, good.digest, pinned)
    assert any(
        "names builder 'https://github.com/actions/runner/github-hosted'" in r
        for r in verdict.reasons
    )


def test_the_review_must_be_for_the_builds_repository_and_ref(chain_keys: ChainKeys) -> None:
    scenario = Scenario("review-elsewhere", "")
    envelopes = [
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit)),
        sign(chain_keys.attester, review(scenario.commit, targetRef="refs/heads/release")),
    ]
    verdict = _verify(
        chain_keys,
        envelopes,
        scenario.digest,
        _requirements(targetRefs=["refs/heads/*"], provenance__refs=["refs/heads/main"]),
    )
    assert not verdict.ok
    assert any(
        "the review is for a change into refs/heads/release, but the image was built from "
        "refs/heads/main" in r
        for r in verdict.reasons
    )


def test_a_controller_request_keeps_an_aged_summary(chain_keys: ChainKeys) -> None:
    """As for reviews: scaling never fails because evidence aged."""
    scenario = Scenario("aged-summary", "")
    old = (NOW - dt.timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelopes = [
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit)),
        sign(chain_keys.verifier, summary(scenario.commit, timeVerified=old)),
    ]
    assert not _verify(chain_keys, envelopes, scenario.digest).ok
    assert _verify(chain_keys, envelopes, scenario.digest, controller=True).ok


def test_an_accepted_chain_records_each_link(chain_keys: ChainKeys) -> None:
    scenario = Scenario("accepted", "")
    verdict = _verify(chain_keys, scenario.envelopes(chain_keys), scenario.digest)
    assert verdict.ok
    links = dict(verdict.chain)
    assert links["commit"] == f"gitCommit:{scenario.commit}"
    assert links["review"] == verdict.accepted
    assert set(links) == {"provenance", "commit", "review"}
    assert verdict.approvers == ("bob",)


_text = st.text(max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    uri=_text,
    event=_text,
    path=_text,
    ref=_text,
    builder=_text,
    repository_id=_text,
    result=_text,
)
def test_what_a_signed_statement_says_never_forges_a_reason_line(
    chain_keys: ChainKeys,
    uri: str,
    event: str,
    path: str,
    ref: str,
    builder: str,
    repository_id: str,
    result: str,
) -> None:
    """Values a trusted key signed are quoted in reasons: never a line
    break, an invisible character, or an unbounded length."""
    scenario = Scenario("hostile-text", "")

    def change(predicate: dict[str, Any]) -> None:
        definition = predicate["buildDefinition"]
        definition["resolvedDependencies"][0]["uri"] = "git+" + uri
        definition["internalParameters"]["github"].update(
            event_name=event, repository_id=repository_id
        )
        definition["externalParameters"]["workflow"].update(path=path, ref=ref)
        predicate["runDetails"]["builder"]["id"] = builder or "x"

    envelopes = [
        sign(chain_keys.builder, provenance(scenario.digest, scenario.commit, change)),
        sign(chain_keys.verifier, summary(scenario.commit, verificationResult=result)),
    ]
    verdict = _verify(
        chain_keys, envelopes, scenario.digest, _requirements(provenance__builderIds=["b"])
    )
    for reason in verdict.reasons:
        assert reason.isprintable(), reason
        assert len(reason) < 1200


_KEY = re.compile(r"(sha256:[0-9a-f]{64}|git(Commit|Tree):[0-9a-f]{40}([0-9a-f]{24})?)")


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(max_size=80)
    | st.builds(
        lambda a, h: f"{a}:{h}",
        st.sampled_from(["gitCommit", "gitTree", "sha256", "GitCommit", "gitBlob"]),
        st.text(alphabet="0123456789abcdefABCDEFg \\n", max_size=70),
    )
)
def test_a_subject_key_is_one_spelling_or_refused(value: str) -> None:
    """Whatever a flag or a statement says, a subject key is one canonical
    spelling (so the index and the checks compare equal things) or refused."""
    try:
        key = normalize_subject(value)
    except StatementError as exc:
        assert str(exc)
        return
    assert _KEY.fullmatch(key), key
    assert normalize_subject(key) == key
