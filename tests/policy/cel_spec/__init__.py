"""The CEL specification's conformance cases, read from their text protos.

The ``*.textproto`` files here are copied unchanged from the public CEL
specification (see ORIGIN). Only what these files use of the protobuf text
format is read: fields, nested messages, strings with C escapes, numbers,
enum names and comments. A case is kept when it needs nothing guard's
engine cannot give a rule: no protobuf messages, no containers, no typed
declarations beyond variables bound to plain values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<punct>[{}:<>\[\],;])
    |(?P<word>[-+]?[A-Za-z0-9_.+-]+)""",
    re.VERBOSE,
)
_ESCAPES = {
    "n": 10, "t": 9, "r": 13, "\\": 92, "'": 39, '"': 34, "a": 7, "b": 8,
    "f": 12, "v": 11, "?": 63,
}  # fmt: skip


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = text[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2 :])
            assert m is not None
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        elif n in "uU":
            width = 4 if n == "u" else 8
            out += chr(int(text[i + 2 : i + 2 + width], 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        else:
            m = re.match(r"[0-7]{1,3}", text[i + 1 :])
            assert m is not None, text
            out.append(int(m.group(), 8))
            i += 1 + len(m.group())
    return bytes(out)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read text proto at {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.lastgroup is not None:
            yield m.lastgroup, m.group(m.lastgroup)


Message = dict[str, list[Any]]


def _parse(tokens: list[tuple[str, str]], pos: int, end: str | None) -> tuple[Message, int]:
    message: Message = {}
    while pos < len(tokens):
        kind, text = tokens[pos]
        if kind == "punct" and text == end:
            return message, pos + 1
        if kind == "punct" and text in ",;":
            pos += 1
            continue
        name = text
        pos += 1
        if tokens[pos] == ("punct", ":"):
            pos += 1
        kind, text = tokens[pos]
        if kind == "punct" and text in "{<":
            value, pos = _parse(tokens, pos + 1, "}" if text == "{" else ">")
            message.setdefault(name, []).append(value)
        elif kind == "punct" and text == "[":
            raise ValueError("list syntax is not used by the kept files")
        elif kind == "string":
            raw = b""
            while pos < len(tokens) and tokens[pos][0] == "string":
                raw += _unescape(tokens[pos][1][1:-1])
                pos += 1
            message.setdefault(name, []).append(raw)
        else:
            message.setdefault(name, []).append(text)
            pos += 1
    if end is not None:
        raise ValueError(f"missing {end!r}")
    return message, pos


def parse(text: str) -> Message:
    message, _ = _parse(list(_tokens(text)), 0, None)
    return message


@dataclass(frozen=True)
class Uint:
    """A CEL ``uint`` expectation (Python has one integer type)."""

    value: int


@dataclass
class Case:
    file: str
    name: str
    expr: str
    bindings: dict[str, Any] = field(default_factory=dict)
    expected: Any = None
    error: bool = False


class Unsupported(Exception):
    """A value kind guard's rules never see (protobuf messages, enums, types)."""


def _number(text: str) -> float:
    lowered = text.lower()
    if lowered in ("inf", "infinity", "+inf"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    if lowered == "nan":
        return math.nan
    return float(text)


def value_of(message: Message) -> Any:
    """A ``cel.expr.Value`` as a plain Python value."""
    ((kind, (raw,)),) = message.items()
    if kind == "null_value":
        return None
    if kind == "bool_value":
        return raw == "true"
    if kind == "int64_value":
        return int(raw, 0)
    if kind == "uint64_value":
        return Uint(int(raw, 0))
    if kind == "double_value":
        return _number(raw)
    if kind == "string_value":
        return raw.decode("utf-8")
    if kind == "bytes_value":
        return raw
    if kind == "list_value":
        return [value_of(v) for v in raw.get("values", [])]
    if kind == "map_value":
        result = {}
        for entry in raw.get("entries", []):
            key = value_of(entry["key"][0])
            result[key.value if isinstance(key, Uint) else key] = value_of(entry["value"][0])
        return result
    raise Unsupported(kind)


# Cases that need a container, macros turned off, type-checking only or
# unknown-set results: nothing a guard rule can ask for.
_SKIP_FIELDS = {"container", "disable_macros", "check_only", "typed_result", "any_eval_errors",
                "unknown", "any_unknowns"}  # fmt: skip


def cases(files: list[str] | None = None) -> tuple[list[Case], int]:
    """The kept cases of the given files (all copied files by default) and how
    many were left out as needing what rules never use."""
    kept: list[Case] = []
    skipped = 0
    for path in sorted(HERE.glob("*.textproto")):
        if files is not None and path.stem not in files:
            continue
        document = parse(path.read_text())
        for section in document.get("section", []):
            for test in section.get("test", []):
                if _SKIP_FIELDS & set(test):
                    skipped += 1
                    continue
                try:
                    bindings = {
                        b["key"][0].decode(): plain(value_of(b["value"][0]["value"][0]))
                        for b in test.get("bindings", [])
                    }
                    case = Case(
                        file=path.stem,
                        name=f"{section['name'][0].decode()}/{test['name'][0].decode()}",
                        expr=test["expr"][0].decode("utf-8"),
                        bindings=bindings,
                    )
                    if "eval_error" in test:
                        case.error = True
                    elif "value" in test:
                        case.expected = value_of(test["value"][0])
                    else:
                        raise Unsupported("no value")
                except (Unsupported, KeyError):
                    skipped += 1
                    continue
                kept.append(case)
    return kept, skipped


def plain(value: Any) -> Any:
    """A binding as a library takes it (a ``uint`` as an integer)."""
    if isinstance(value, Uint):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(expected: Any, actual: Any) -> bool:
    """CEL equality of results, with types that CEL tells apart kept apart
    (``1``, ``1.0`` and ``true`` differ; NaN equals NaN here)."""
    if isinstance(expected, Uint):
        return type(actual) is int and actual == expected.value
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, float):
        if type(actual) is not float:
            return False
        return (math.isnan(expected) and math.isnan(actual)) or expected == actual
    if isinstance(expected, int):
        return type(actual) is int and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(same(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, bytes):
        # cel-cpp's bindings hand bytes back as a bytearray: the same value.
        return isinstance(actual, bytes | bytearray) and bytes(actual) == expected
    return type(expected) is type(actual) and expected == actual
