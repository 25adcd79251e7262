"""The CEL specification's conformance cases against guard's CEL library.

The library's known gaps are pinned in cel_spec/known-failures.txt: an
upgrade that fixes one, or breaks a case that passed, fails here and is
looked at (docs/performance.md has the comparison with
common-expression-language, the library guard ran on before).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_cel import judge, prepare_cpp
from tests.policy.cel_spec import Uint, cases, parse, same, value_of

KNOWN = Path(__file__).parent / "cel_spec" / "known-failures.txt"


def test_the_library_fails_exactly_the_known_cases() -> None:
    kept, skipped = cases()
    assert len(kept) > 800 and skipped < 100
    known = {line for line in KNOWN.read_text().splitlines() if line and not line.startswith("#")}
    failing = {f"{c.file}/{c.name}" for c in kept if not judge(c, prepare_cpp)[0]}
    assert failing == known


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('value { int64_value: -3 }', -3),
        ('value { uint64_value: 7 }', Uint(7)),
        ('value { string_value: "a\\x41\\u00e9\\101" }', "aAéA"),
        ('value { bytes_value: "\\377" }', b"\xff"),
        ('value { list_value { values { bool_value: true } } }', [True]),
        ('value { map_value { entries { key { string_value: "k" } value { null_value: NULL_VALUE } } } }',
         {"k": None}),
    ],
)  # fmt: skip
def test_text_proto_values_are_read_as_cel_values(text: str, expected: object) -> None:
    assert value_of(parse(text)["value"][0]) == expected


def test_results_keep_the_types_cel_tells_apart() -> None:
    assert not same(1, 1.0)
    assert not same(1, True)
    assert not same(Uint(1), 1.0)
    assert same(float("nan"), float("nan"))
    assert same({"a": [1]}, {"a": [1]})
