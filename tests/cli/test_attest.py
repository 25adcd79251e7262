"""``guard keygen`` and ``guard attest review|sign|verify`` end to end, in process."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import cli
from controller.attest import dsse
from controller.attest.statement import parse_statement
from tests.attest import helpers as h
from tests.attest.helpers import Keys

COSIGN_KEY = (
    Path(__file__).parents[1]
    / "attest"
    / "data"
    / "cosign"
    / "cosign_sigstore_encrypted_key_password_hello.pem"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def team(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Key pairs for an attester and a reviewer, and a trust file naming them."""
    assert run(capsys, "keygen", "ci", "--dir", str(tmp_path))[0] == 0
    assert run(capsys, "keygen", "bob", "--dir", str(tmp_path), "--type", "ed25519")[0] == 0
    trust = {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "GuardTrust",
        "metadata": {"name": "team"},
        "spec": {
            "keys": [
                {"name": "ci", "role": "attester", "publicKey": (tmp_path / "ci.pub").read_text()},
                {
                    "name": "bob",
                    "role": "person",
                    "principal": "github:1002",
                    "publicKey": (tmp_path / "bob.pub").read_text(),
                },
            ],
            "principals": [{"id": "github:1004", "aliases": ["kubernetes:dave"]}],
        },
    }
    h.write_yaml(tmp_path / "trust.yaml", trust)
    h.write_yaml(tmp_path / "policy.yaml", h.policy_document(minApprovals=2, attesters=["ci"]))
    return tmp_path


def review_args(folder: Path, *extra: str) -> list[str]:
    return [
        "attest", "review", "--key", str(folder / "ci.key"),
        "--repository", h.REPOSITORY, "--target-ref", h.TARGET_REF,
        "--revision", h.BUILT, "--head-revision", h.HEAD, "--change-id", "42",
        "--author", "alice=github:1001", "--approval", "carol=github:1003",
        "--check", "unit-tests=pass", "--check", "coverage=pass:85/80",
        "--digest", f"{h.IMAGE}@{h.DIGEST}",
        "--output", str(folder / "review.json"), *extra,
    ]  # fmt: skip


def verify_args(folder: Path, *extra: str) -> list[str]:
    return [
        "attest", "verify", str(folder / "review.json"),
        "--trust", str(folder / "trust.yaml"), "--digest", h.DIGEST,
        "--policy", str(folder / "policy.yaml"), *extra,
    ]  # fmt: skip


def test_keygen_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "keygen", "ci", "--dir", str(tmp_path))
    assert code == 0
    assert stat.S_IMODE((tmp_path / "ci.key").stat().st_mode) == 0o600
    assert (tmp_path / "ci.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert "NOT encrypted" in out
    code, _, err = run(capsys, "keygen", "ci", "--dir", str(tmp_path))
    assert code == 2
    assert "already exists (use --force" in err
    assert run(capsys, "keygen", "ci", "--dir", str(tmp_path), "--force")[0] == 0
    code, _, err = run(capsys, "keygen", "../evil", "--dir", str(tmp_path))
    assert (code, "use letters, digits" in err) == (2, True)


def test_keygen_with_a_password_writes_a_cosign_encrypted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_PASSWORD", "correct horse")
    code, out, _ = run(
        capsys, "keygen", "ci", "--dir", str(tmp_path), "--password-env", "TEAM_PASSWORD"
    )
    assert code == 0
    assert "(private, mode 0600, encrypted)" in out
    text = (tmp_path / "ci.key").read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    monkeypatch.delenv("TEAM_PASSWORD")
    code, _, err = run(
        capsys, "keygen", "x", "--dir", str(tmp_path), "--password-env", "TEAM_PASSWORD"
    )
    assert (code, err.strip()) == (
        2,
        "guard: error: --password-env TEAM_PASSWORD: the variable is not set",
    )


def test_review_then_cosign_then_verify(team: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, *review_args(team))[0] == 0
    statement = parse_statement(dsse.parse((team / "review.json").read_bytes()).payload)
    review = statement.change_review()
    assert statement.subject_digests == (h.DIGEST,)
    assert review.approvals[0].reviewed_revision == h.HEAD
    assert review.checks[1].value == 85 and review.checks[1].threshold == 80

    code, out, _ = run(capsys, *verify_args(team))
    assert code == 1
    assert out.splitlines() == [
        f"rejected: {h.DIGEST} (policy 'reviewed-changes')",
        "  - 1 of 2 approvals from reviewers who are not authors (counted: carol)",
    ]

    code, _, err = run(
        capsys, "attest", "sign", str(team / "review.json"), "--key", str(team / "bob.key")
    )
    assert code == 0
    assert (
        f"signed change 42 of {h.REPOSITORY} into {h.TARGET_REF} at head revision {h.HEAD}" in err
    )
    code, out, _ = run(capsys, *verify_args(team))
    assert code == 0, out
    assert "approved by bob, carol" in out

    code, _, err = run(
        capsys, "attest", "sign", str(team / "review.json"), "--key", str(team / "bob.key")
    )
    assert (code, "already signed by this key" in err) == (2, True)


def test_review_from_an_input_file_and_a_subject_file(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predicate: dict[str, Any] = h.predicate()
    del predicate["attestedAt"], predicate["expiresAt"], predicate["attester"]
    (team / "predicate.yaml").write_text(yaml.safe_dump(predicate))
    (team / "tfplan.bin").write_bytes(b"plan bytes")
    code, _, err = run(
        capsys, "attest", "review", "--key", str(team / "ci.key"),
        "--input", str(team / "predicate.yaml"), "--subject-file", str(team / "tfplan.bin"),
        "--output", str(team / "review.json"),
    )  # fmt: skip
    assert code == 0, err
    envelope = dsse.parse((team / "review.json").read_bytes())
    statement = parse_statement(envelope.payload)
    assert statement.subjects[0].name == "tfplan.bin"
    assert statement.change_review().attester == "ci"
    code, out, _ = run(
        capsys, "attest", "verify", str(team / "review.json"), "--trust", str(team / "trust.yaml"),
        "--subject-file", str(team / "tfplan.bin"),
    )  # fmt: skip
    assert code == 0, out
    assert "no --policy" in out


def test_review_input_conflicts_and_missing_flags_are_bad_input(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (team / "p.json").write_text('{"repository": "a", "repository": "b"}')
    cases = [
        (["--input", str(team / "p.json")], "duplicate key 'repository'"),
        (["--input", str(team / "p.json"), "--repository", "x"], "drop --repository"),
        (["--repository", "x"], "needs --revision, --target-ref, --change-id, --author"),
        (["--repository", "x", "--revision", "r", "--target-ref", "t", "--change-id", "1",
          "--author", "alice"], "use LOGIN=ID"),
        (["--input", str(team / "p.json"), "--digest", "sha256:abc"], "is not a sha256 digest"),
    ]  # fmt: skip
    for extra, problem in cases:
        argv = ["attest", "review", "--key", str(team / "ci.key"), *extra]
        if "--digest" not in extra:
            argv += ["--digest", h.DIGEST]
        code, _, err = run(capsys, *argv)
        assert code == 2, extra
        assert problem in err, err
        assert "Traceback" not in err


def test_signing_with_a_cosign_encrypted_key(
    team: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, *review_args(team))[0] == 0
    code, _, err = run(
        capsys, "attest", "sign", str(team / "review.json"), "--key", str(COSIGN_KEY)
    )
    assert code == 2
    assert "the key is encrypted: set GUARD_KEY_PASSWORD" in err
    monkeypatch.setenv("GUARD_KEY_PASSWORD", "hello")
    assert (
        run(capsys, "attest", "sign", str(team / "review.json"), "--key", str(COSIGN_KEY))[0] == 0
    )
    assert len(dsse.parse((team / "review.json").read_bytes()).signatures) == 2


def test_verify_reads_a_review_attestation_document(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *review_args(team, "--approval", "dave=github:1004"))[0] == 0
    document = {
        "apiVersion": "guard.dev/v1alpha1",
        "kind": "ReviewAttestation",
        "metadata": {"name": "shop-42"},
        "spec": {"envelope": (team / "review.json").read_text()},
    }
    h.write_yaml(team / "review.yaml", document)
    args = verify_args(team)
    args[2] = str(team / "review.yaml")
    code, out, _ = run(capsys, *args)
    assert code == 0, out


def _bad_inputs(folder: Path, keys: Keys) -> list[tuple[list[str], str]]:
    (folder / "garbage.json").write_text("{not json")
    (folder / "empty.yaml").write_text("")
    (folder / "policy-file-as-trust.yaml").write_text(yaml.safe_dump(h.policy_document()))
    bad_key = h.trust_document(keys)
    bad_key["spec"]["keys"][0]["publicKey"] = (
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    h.write_yaml(folder / "bad-key-trust.yaml", bad_key)
    typo = h.trust_document(keys)
    typo["spec"]["keys"][0]["rol"] = "attester"
    h.write_yaml(folder / "typo-trust.yaml", typo)
    (folder / "no-review.yaml").write_text(yaml.safe_dump({**h.policy_document(), "spec": {
        "match": {"kubernetes": {}}, "rules": [{"name": "r", "target": "kubernetes",
        "expression": "true", "message": "m"}]}}))  # fmt: skip
    good = str(folder / "review.json")
    trust = str(folder / "trust.yaml")
    return [
        ([str(folder / "garbage.json"), "--trust", trust], "envelope is not valid: not valid JSON"),
        ([str(folder / "missing.json"), "--trust", trust], "cannot read envelope"),
        ([good, "--trust", str(folder / "ci.pub")], "this is a PEM key, not a GuardTrust"),
        ([good, "--trust", str(folder / "empty.yaml")], "no GuardTrust document found"),
        ([good, "--trust", str(folder / "policy-file-as-trust.yaml")], "GuardPolicy found where"),
        ([good, "--trust", str(folder / "bad-key-trust.yaml")], "key 'ci': cannot read public key"),
        ([good, "--trust", str(folder / "typo-trust.yaml")], "spec.keys[0].rol: unknown field"),
        ([good, "--trust", trust, "--policy", str(folder / "no-review.yaml")],
         "no GuardPolicy with a review block"),
        ([good, "--trust", trust, "--policy", str(folder / "policy.yaml"), "--policy-name", "x"],
         "no policy 'x' with a review block"),
        ([good, "--trust", trust, "--policy-name", "x"], "--policy-name needs --policy"),
    ]  # fmt: skip


def test_malformed_envelopes_keys_trust_and_policies_exit_2(
    team: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *review_args(team))[0] == 0
    for args, problem in _bad_inputs(team, keys):
        code, out, err = run(capsys, "attest", "verify", *args, "--digest", h.DIGEST)
        assert code == 2, (args, out, err)
        assert err.startswith("guard: error: ") and problem in err, (problem, err)
        assert len(err.strip().splitlines()) == 1


def test_verify_with_a_digest_that_is_not_one(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *review_args(team))[0] == 0
    code, _, err = run(capsys, "attest", "verify", str(team / "review.json"), "--trust",
                       str(team / "trust.yaml"), "--digest", "latest")  # fmt: skip
    assert code == 2
    assert "'latest' is not a sha256 digest" in err


def test_envelopes_written_are_compact_json(team: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, *review_args(team))[0] == 0
    document = json.loads((team / "review.json").read_text())
    assert list(document) == ["payloadType", "payload", "signatures"]


def test_resource_form_round_trips_through_sign_and_verify(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = team / "review.yaml"
    args = review_args(team, "--resource", "shop-42")
    args[args.index("--output") + 1] = str(target)
    assert run(capsys, *args)[0] == 0
    assert target.read_text().startswith(
        "apiVersion: guard.dev/v1alpha1\nkind: ReviewAttestation\n"
    )
    assert run(capsys, "attest", "sign", str(target), "--key", str(team / "bob.key"))[0] == 0
    document = yaml.safe_load(target.read_text())
    assert document["metadata"] == {"name": "shop-42"}
    assert len(dsse.parse(document["spec"]["envelope"]).signatures) == 2
    verify = verify_args(team)
    verify[2] = str(target)
    code, out, _ = run(capsys, *verify)
    assert code == 0, out
    bad = review_args(team, "--resource", "Shop_42")
    code, _, err = run(capsys, *bad)
    assert (code, "use lower-case letters" in err) == (2, True)


ROOT = Path(__file__).resolve().parents[2]
DEMO_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("envelope", "code", "line"),
    [
        ("app-reviewed.json", 0, "approved by bob, carol"),
        ("app-reviewed.yaml", 0, "approved by carol"),
        ("app-self-approved.json", 1, "  - alice approved their own change"),
    ],
)
def test_demo_attestations_match_the_default_review_policy(
    envelope: str, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result, out, err = run(
        capsys, "attest", "verify", str(ROOT / "examples" / "attestations" / envelope),
        "--trust", str(ROOT / "examples" / "keys" / "demo-trust.yaml"),
        "--policy", str(ROOT / "policies" / "review.yaml"), "--digest", DEMO_DIGEST,
    )  # fmt: skip
    assert result == code, out + err
    assert line in out


def test_unusable_signing_keys_exit_2(team: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (team / "garbage.key").write_text("not a key")
    for key, problem in [
        (team / "garbage.key", "not a PEM private key"),
        (team / "ci.pub", "'PUBLIC KEY' is not a private key"),
        (team / "absent.key", "cannot read key"),
    ]:
        args = review_args(team)
        args[args.index("--key") + 1] = str(key)
        code, _, err = run(capsys, *args)
        assert code == 2
        assert problem in err and str(key) in err, err


def test_verify_applies_deployer_rules_when_told_who_deploys(
    team: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *review_args(team, "--approval", "dave=github:1004"))[0] == 0
    h.write_yaml(
        team / "policy.yaml", h.policy_document(attesters=["ci"], deployer={"notAuthor": True})
    )
    code, out, _ = run(capsys, *verify_args(team, "--deployer", "github:1001"))
    assert code == 1
    assert "  - deployer github:1001 is an author of the change (alice, github:1001)" in out
    assert run(capsys, *verify_args(team, "--deployer", "dave"))[0] == 0
    code, out, _ = run(capsys, *verify_args(team, "--deployer", "erin"))
    assert code == 1 and "deployer erin is not mapped to a principal" in out
