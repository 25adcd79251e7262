"""Evaluating the HCL expressions python-hcl2 hands back as text, as far as known.

python-hcl2 returns every expression as its source text (``${var.n > 0 ? 1
: 0}``). What guard needs without a plan is a subset: literals, lists and
objects, references to variables, locals, ``count.index`` and
``each.key`` / ``each.value``, arithmetic, comparison, logic, conditionals,
templates and a few pure functions that shape ``count`` / ``for_each``
(``toset``, ``length``, ``keys``...). Anything else (other resources'
attributes, ``for`` expressions, splats, unlisted functions) is
:data:`UNKNOWN`, which is what Terraform would also know only at plan or
apply time.

Soundness over reach: an unknown operand makes the result unknown unless
the result cannot depend on it (``false && x``, a conditional whose branches
agree), and a value whose type Terraform would refuse is unknown rather than
a guess. Nesting is bounded, so hostile text fails as a :class:`LimitError`.

Its size is deliberate: it is one small interpreter (tokens, a precedence
parser, evaluation and the pure functions), whose parts only make sense
together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hcl2.utils import process_escape_sequences

from controller.errors import InputError


class _UnknownType:
    """The marker of a value that cannot be known without a plan."""

    _instance: _UnknownType | None = None

    def __new__(cls) -> _UnknownType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _UnknownType()
MAX_EXPRESSION_DEPTH = 64

# Resolves ``var.NAME``, ``local.NAME``, ``count.index``, ``each.key`` and
# ``each.value`` (kind, name) to a value, or UNKNOWN.
Lookup = Callable[[str, str], Any]
_KINDS = frozenset({"var", "local", "count", "each"})


class LimitError(InputError, ValueError):
    """An expression or value nested deeper than guard reads."""


class TfSet(list[Any]):
    """A Terraform set (from ``toset``): a list to rules, a set to ``for_each``.

    Elements are unique and in Terraform's order (strings lexically,
    numbers numerically).
    """


class _Unsupported(Exception):
    """Syntax this evaluator does not follow: the whole expression is unknown."""


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<string>")
  | (?P<op>\.\.\.|=>|==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}=])
    """,
    re.VERBOSE | re.ASCII | re.DOTALL,
)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | string | op | end
    text: str
    value: Any = None


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _Unsupported(text[position:])
        kind = match.lastgroup or ""
        if kind == "string":
            end = _string_end(text, match.end())
            tokens.append(_Token("string", text[match.start() : end], text[match.end() : end - 1]))
            position = end
            continue
        if kind != "space":
            tokens.append(_Token(kind, match.group()))
        position = match.end()
    tokens.append(_Token("end", ""))
    return tokens


def _string_end(text: str, start: int) -> int:
    """The position after the closing quote of a string whose body starts at ``start``.

    Quotes inside ``${ ... }`` belong to the interpolation, not the string.
    """
    position = start
    depth = 0
    while position < len(text):
        if depth == 0:
            if text.startswith(("$${", "%%{"), position):
                position += 3  # escaped: a literal "${"
                continue
            char = text[position]
            if char == "\\":
                position += 2
            elif char == '"':
                return position + 1
            elif text.startswith(("${", "%{"), position):
                depth, position = 1, position + 2
            else:
                position += 1
            continue
        char = text[position]
        if char == '"':
            position = _string_end(text, position + 1)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        position += 1
    raise _Unsupported("unterminated string")


def evaluate(text: str, lookup: Lookup) -> Any:
    """The value of one expression's text, or UNKNOWN."""
    try:
        return _Parser(_tokens(text), lookup).whole()
    except _Unsupported:
        return UNKNOWN
    except RecursionError:
        raise LimitError("expression nested too deeply") from None


def template(body: str, lookup: Lookup) -> Any:
    """A quoted template's value (escapes processed), or UNKNOWN."""
    try:
        return _template(body, lookup, 0)
    except _Unsupported:
        return UNKNOWN
    except RecursionError:
        raise LimitError("template nested too deeply") from None


def _template(body: str, lookup: Lookup, depth: int) -> Any:
    if depth > MAX_EXPRESSION_DEPTH:
        raise LimitError(f"templates nested deeper than {MAX_EXPRESSION_DEPTH} levels")
    parts: list[str] = []
    position = 0
    literal_start = 0
    while position < len(body):
        if body.startswith(("$${", "%%{"), position):
            parts.append(
                process_escape_sequences(body[literal_start:position])
                + body[position + 1 : position + 3]
            )
            position += 3
            literal_start = position
            continue
        if body.startswith("%{", position):
            return UNKNOWN  # directives (if / for) need evaluation
        if body.startswith("${", position):
            parts.append(process_escape_sequences(body[literal_start:position]))
            end = _interpolation_end(body, position + 2)
            inner = body[position + 2 : end].strip()
            if inner.startswith("~") or inner.endswith("~"):
                return UNKNOWN  # strip markers trim the text around: not followed
            value = _Parser(_tokens(inner), lookup, depth + 1).whole()
            if value is UNKNOWN or value is None or isinstance(value, list | dict):
                return UNKNOWN
            parts.append(text_of(value))
            position = end + 1
            literal_start = position
            continue
        position += 1
    parts.append(process_escape_sequences(body[literal_start:]))
    return "".join(parts)


def _interpolation_end(body: str, start: int) -> int:
    depth = 0
    position = start
    while position < len(body):
        char = body[position]
        if char == '"':
            position = _string_end(body, position + 1)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return position
            depth -= 1
        position += 1
    raise _Unsupported("unterminated interpolation")


def text_of(value: Any) -> str:
    """A scalar as Terraform converts it to a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def number_of(value: Any) -> int | float | None:
    """A number, or a string Terraform would convert to one; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return _tidy(float(value) if any(c in value for c in ".eE") else int(value))
    return None


def _tidy(value: int | float) -> int | float | Any:
    """Integral results as ints (plan JSON writes ``2``, not ``2.0``); no infinities."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return UNKNOWN
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    return None


def _known(value: Any) -> bool:
    """Whether no part of ``value`` is UNKNOWN."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is UNKNOWN:
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def equal(left: Any, right: Any) -> bool:
    """HCL equality of two known values: types must match (``1 != "1"``, ``true != 1``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return type(left) is type(right) and left == right


# Binding powers, lowest first, as HCL orders its operators.
_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 4,
    ">": 4,
    "<=": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
_UNARY = 7


class _Parser:
    """A Pratt parser that evaluates as it parses."""

    def __init__(self, tokens: list[_Token], lookup: Lookup, depth: int = 0) -> None:
        self.tokens = tokens
        self.position = 0
        self.lookup = lookup
        self.depth = depth

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        if self.take().text != text:
            raise _Unsupported(text)

    def whole(self) -> Any:
        value = self.expression(0)
        if self.peek().kind != "end":
            raise _Unsupported("trailing tokens")
        return value

    def expression(self, power: int) -> Any:
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise LimitError(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} levels")
        try:
            left = self._unary()
            while True:
                token = self.peek()
                if token.text == "?" and power == 0:
                    self.take()
                    yes = self.expression(0)
                    self.expect(":")
                    no = self.expression(0)
                    left = _conditional(left, yes, no)
                    continue
                strength = _BINARY.get(token.text) if token.kind == "op" else None
                if strength is None or strength <= power:
                    return left
                self.take()
                right = self.expression(strength)
                left = _binary(token.text, left, right)
        finally:
            self.depth -= 1

    def _unary(self) -> Any:
        token = self.peek()
        if token.kind == "op" and token.text in ("!", "-"):
            self.take()
            operand = self.expression(_UNARY)
            if operand is UNKNOWN:
                return UNKNOWN
            if token.text == "!":
                flag = _bool(operand)
                return UNKNOWN if flag is None else not flag
            number = number_of(operand)
            return UNKNOWN if number is None else _tidy(-number)
        return self._postfix(self._primary())

    def _primary(self) -> Any:
        token = self.take()
        if token.kind == "number":
            number = number_of(token.text)
            return UNKNOWN if number is None else number
        if token.kind == "string":
            return _template(token.value, self.lookup, self.depth + 1)
        if token.text == "(":
            value = self.expression(0)
            self.expect(")")
            return value
        if token.text == "[":
            return self._list()
        if token.text == "{":
            return self._object()
        if token.kind == "name":
            if token.text in ("true", "false"):
                return token.text == "true"
            if token.text == "null":
                return None
            if self.peek().text == "(":
                self.take()
                return self._call(token.text)
            if token.text in _KINDS and self.peek().text == ".":
                self.take()
                name = self.take()
                if name.kind != "name":
                    raise _Unsupported(name.text)
                return self.lookup(token.text, name.text)
            # Other references (resources, data, modules, path.*): known only
            # to Terraform. Their attribute steps are consumed as postfix steps.
            return UNKNOWN
        raise _Unsupported(token.text)

    def _postfix(self, value: Any) -> Any:
        while True:
            token = self.peek()
            if token.text == "." and self.tokens[self.position + 1].kind in ("name", "number"):
                self.take()
                step = self.take()
                if step.kind == "number" and not step.text.isdigit():
                    raise _Unsupported(step.text)
                value = _index(value, step.text if step.kind == "name" else int(step.text))
            elif token.text == "[":
                self.take()
                if self.peek().text == "*":
                    raise _Unsupported("splat")
                key = self.expression(0)
                self.expect("]")
                value = _index(value, key)
            elif token.text == "." and self.tokens[self.position + 1].text == "*":
                raise _Unsupported("splat")
            else:
                return value

    def _items(self, closer: str) -> Iterator[None]:
        """Yields once per item position of a comma-separated list up to ``closer``."""
        while self.peek().text != closer:
            yield None
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != closer:
                raise _Unsupported("missing comma")
        self.take()

    def _list(self) -> Any:
        if self.peek().text == "for":
            raise _Unsupported("for expression")
        items: list[Any] = []
        for _ in self._items("]"):
            items.append(self.expression(0))
        return items

    def _object(self) -> Any:
        if self.peek().text == "for":
            raise _Unsupported("for expression")
        result: dict[str, Any] = {}
        unknown_key = False
        for _ in self._items("}"):
            key_token = self.peek()
            if key_token.kind == "name" and self.tokens[self.position + 1].text in ("=", ":"):
                self.take()
                key: Any = key_token.text
            else:
                key = self.expression(0)
            if self.take().text not in ("=", ":"):
                raise _Unsupported("object item")
            value = self.expression(0)
            if key is UNKNOWN or not isinstance(key, str | int | float) or isinstance(key, bool):
                unknown_key = True
                continue
            result[text_of(key)] = value
        return UNKNOWN if unknown_key else result

    def _call(self, name: str) -> Any:
        arguments: list[Any] = []
        for _ in self._items(")"):
            if self.peek().text == "...":
                raise _Unsupported("expanded arguments")
            arguments.append(self.expression(0))
            if self.peek().text == "...":
                raise _Unsupported("expanded arguments")
        function = _FUNCTIONS.get(name)
        if function is None:
            return UNKNOWN
        try:
            return function(*arguments)
        except (TypeError, ValueError, KeyError, IndexError):
            return UNKNOWN  # Terraform would refuse these arguments; not ours to judge


def _index(value: Any, key: Any) -> Any:
    if value is UNKNOWN or key is UNKNOWN:
        return UNKNOWN
    if isinstance(value, Mapping):
        return value.get(text_of(key), UNKNOWN) if not isinstance(key, list | dict) else UNKNOWN
    if isinstance(value, list) and not isinstance(value, TfSet):
        position = number_of(key)
        if isinstance(position, int) and 0 <= position < len(value):
            return value[position]
    return UNKNOWN


def _conditional(condition: Any, yes: Any, no: Any) -> Any:
    flag = _bool(condition) if condition is not UNKNOWN else None
    if flag is not None:
        return yes if flag else no
    if _known(yes) and _known(no) and equal(yes, no):
        return yes  # either way the same
    return UNKNOWN


def _binary(operator: str, left: Any, right: Any) -> Any:
    if operator in ("&&", "||"):
        short = operator == "||"  # true || x is true; false && x is false
        flags = [None if v is UNKNOWN else _bool(v) for v in (left, right)]
        if short in flags:
            return short
        if None in flags:
            return UNKNOWN
        return (flags[0] and flags[1]) if operator == "&&" else (flags[0] or flags[1])
    if not (_known(left) and _known(right)):
        return UNKNOWN
    if operator == "==":
        return equal(left, right)
    if operator == "!=":
        return not equal(left, right)
    a, b = number_of(left), number_of(right)
    if a is None or b is None:
        return UNKNOWN
    if operator == "<":
        return a < b
    if operator == ">":
        return a > b
    if operator == "<=":
        return a <= b
    if operator == ">=":
        return a >= b
    if operator == "+":
        return _tidy(a + b)
    if operator == "-":
        return _tidy(a - b)
    if operator == "*":
        return _tidy(a * b)
    if b == 0:
        return UNKNOWN  # Terraform refuses division by zero
    if operator == "/":
        return _tidy(a / b)
    return _tidy(math.fmod(a, b))  # "%": the sign of the dividend, as cty's Modulo


# ------------------------------------------------------------------ functions


def _strings(value: Any) -> str:
    if isinstance(value, bool | str | int | float):
        return text_of(value)
    raise TypeError("not a string")


def to_set(value: Any) -> Any:
    """``toset(value)``: a :class:`TfSet`, or UNKNOWN when its elements are not all known."""
    if not isinstance(value, list) or not _known(value):
        return UNKNOWN  # an unknown element might equal a known one: the size is unknown
    if any(isinstance(item, list | dict) or item is None for item in value):
        return UNKNOWN
    if all(isinstance(item, str) for item in value):
        return TfSet(sorted(set(value)))
    if all(number_of(item) is not None and not isinstance(item, str) for item in value):
        return TfSet(sorted(set(value)))
    if all(isinstance(item, bool) for item in value):
        return TfSet(sorted(set(value)))
    return TfSet(sorted({_strings(item) for item in value}))  # unified to strings


def _tolist(value: Any) -> Any:
    return list(value) if isinstance(value, list) else UNKNOWN


def _tomap(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else UNKNOWN


def _length(value: Any) -> Any:
    if isinstance(value, list | dict):
        return len(value)
    if isinstance(value, str) and value.isascii():
        return len(value)  # grapheme clusters otherwise: leave it to Terraform
    return UNKNOWN


def _keys(value: Any) -> Any:
    return sorted(value) if isinstance(value, dict) else UNKNOWN


def _values(value: Any) -> Any:
    return [value[k] for k in sorted(value)] if isinstance(value, dict) else UNKNOWN


def _contains(collection: Any, item: Any) -> Any:
    if not isinstance(collection, list) or not _known(item):
        return UNKNOWN
    if any(_known(element) and equal(element, item) for element in collection):
        return True
    return False if _known(collection) else UNKNOWN


def _concat(*lists: Any) -> Any:
    if not all(isinstance(item, list) for item in lists):
        return UNKNOWN
    return [element for item in lists for element in item]


def _merge(*maps: Any) -> Any:
    if not all(isinstance(item, dict) for item in maps):
        return UNKNOWN
    merged: dict[str, Any] = {}
    for item in maps:
        merged.update(item)
    return merged


def _lookup(mapping: Any, key: Any, *default: Any) -> Any:
    if not isinstance(mapping, dict) or key is UNKNOWN or len(default) > 1:
        return UNKNOWN
    name = _strings(key)
    if name in mapping:
        return mapping[name]
    return default[0] if default else UNKNOWN


def _case(convert: Callable[[str], str]) -> Callable[[Any], Any]:
    def function(value: Any) -> Any:
        return UNKNOWN if value is UNKNOWN else convert(_strings(value))

    return function


def _join(separator: Any, *lists: Any) -> Any:
    if not all(isinstance(item, list) and _known(item) for item in lists) or not _known(separator):
        return UNKNOWN
    return _strings(separator).join(_strings(element) for item in lists for element in item)


def _tostring(value: Any) -> Any:
    return UNKNOWN if value is UNKNOWN or value is None else _strings(value)


def _tonumber(value: Any) -> Any:
    number = number_of(value)
    return UNKNOWN if number is None else number


def _tobool(value: Any) -> Any:
    flag = _bool(value)
    return UNKNOWN if flag is None else flag


_FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "toset": to_set,
    "tolist": _tolist,
    "tomap": _tomap,
    "length": _length,
    "keys": _keys,
    "values": _values,
    "contains": _contains,
    "concat": _concat,
    "merge": _merge,
    "lookup": _lookup,
    "lower": _case(str.lower),
    "upper": _case(str.upper),
    "join": _join,
    "tostring": _tostring,
    "tonumber": _tonumber,
    "tobool": _tobool,
}


def supported_functions() -> Sequence[str]:
    """The functions evaluated without a plan (for docs and notes)."""
    return sorted(_FUNCTIONS)
