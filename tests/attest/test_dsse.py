"""Envelope parsing under hostile input."""

from __future__ import annotations

import base64
import json

import pytest

from controller.attest import dsse
from controller.attest.dsse import EnvelopeError
from controller.strict import StrictJSONError, load_json_or_yaml, loads


def _envelope(**fields: object) -> bytes:
    document: dict[str, object] = {
        "payloadType": dsse.IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(b"{}").decode(),
        "signatures": [{"keyid": "k", "sig": base64.b64encode(b"sig").decode()}],
    }
    document.update(fields)
    return json.dumps(document).encode()


def test_round_trip_keeps_payload_bytes_and_digest_of_the_text() -> None:
    raw = _envelope()
    envelope = dsse.parse(raw)
    assert envelope.payload == b"{}"
    assert envelope.signatures == (dsse.Signature(sig=b"sig", keyid="k"),)
    assert envelope.digest == dsse.sha256_digest(raw)
    assert dsse.parse(envelope.to_json()).payload == b"{}"


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("aGk=", True),  # standard, padded
        ("-_8=", True),  # URL-safe alphabet, padded
        ("aGk", False),  # missing padding
        ("aGl=", False),  # non-zero trailing bits: a second text for the same bytes
        ("aG k=", False),  # whitespace
        ("aGk=\n", False),
        ("a+_8", False),  # mixed alphabets
        ("aGk==", False),
    ],
)
def test_base64_must_be_canonical(text: str, accepted: bool) -> None:
    if accepted:
        assert dsse.b64decode_strict(text, "payload")
    else:
        with pytest.raises(EnvelopeError, match="payload is not"):
            dsse.b64decode_strict(text, "payload")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"payloadType": "a", "payloadType": "b"}', "duplicate key 'payloadType'"),
        (b'{"x": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (_envelope(extra=1), r"unknown field\(s\): extra"),
        (_envelope(payloadType=""), "payloadType must be a non-empty string"),
        (_envelope(payload=7), "payload must be a base64 string"),
        (_envelope(payload="!!"), "payload is not base64"),
        (_envelope(signatures=[]), "signatures must be a non-empty list"),
        (_envelope(signatures=["x"]), r"signatures\[0\] must be an object"),
        (_envelope(signatures=[{"sig": "aGk=", "cert": "x"}]), "unknown field"),
        (_envelope(signatures=[{"keyid": 1, "sig": "aGk="}]), "keyid must be a string"),
        (_envelope(signatures=[{"keyid": "k"}]), "sig must be a non-empty base64"),
        (_envelope(signatures=[{"sig": "aGk"}]), r"signatures\[0\].sig is not valid base64"),
    ],
)
def test_malformed_envelopes_say_why(raw: bytes, problem: str) -> None:
    with pytest.raises(EnvelopeError, match=problem):
        dsse.parse(raw)


def test_signature_count_is_capped() -> None:
    many = [{"keyid": str(i), "sig": "aGk="} for i in range(dsse.MAX_SIGNATURES + 1)]
    with pytest.raises(EnvelopeError, match=f"more than the limit of {dsse.MAX_SIGNATURES}"):
        dsse.parse(_envelope(signatures=many))
    dsse.parse(_envelope(signatures=many[: dsse.MAX_SIGNATURES]))


def test_size_is_capped_before_parsing() -> None:
    raw = b" " * (dsse.MAX_ENVELOPE_BYTES - len(_envelope())) + _envelope()
    assert dsse.parse(raw).payload == b"{}"
    with pytest.raises(EnvelopeError, match="larger than the 262144-byte limit"):
        dsse.parse(b" " + raw)


def test_duplicate_keys_rejected_at_any_depth() -> None:
    with pytest.raises(StrictJSONError, match="duplicate key 'b'"):
        loads(b'{"a": {"b": 1, "b": 2}}')
    with pytest.raises(StrictJSONError, match="duplicate key 'b'"):
        load_json_or_yaml("a:\n  b: 1\n  b: 2\n")
