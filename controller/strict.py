"""Strict data reading: JSON and YAML that refuse what attackers use to confuse parsers.

The bottom layer above the error root: every package reads documents,
envelopes, plans and manifests through here, so one policy (no duplicate
keys, no non-finite numbers, bounded size and nesting) holds everywhere.


Two parsers reading one document must see one meaning. Python's ``json``
keeps the last of two equal keys while other languages keep the first, so a
signed envelope with two ``payload`` keys could mean one thing to the signer
and another to us: duplicate keys are rejected. (So must any faster parser
that is ever put in front of this one: most of them keep the last key
silently, which turns ``"resource_changes": [...], "resource_changes": []``
into an empty plan.) ``NaN`` and ``Infinity`` are not JSON and are rejected
too, and so are numbers that only read as one by overflowing (``1e400``
would become infinity and pass any minimum) or that are too long to convert.
Strings must be valid Unicode: a lone UTF-16 surrogate (``"\\ud800"``) parses
but cannot be written out again, so it would break a report long after the
input was accepted.

Every failure is a ``StrictJSONError``, never a bare ``ValueError`` or
``RecursionError`` that a caller might not expect. This module imports
nothing from the rest of guard but the error root: every side reads its
input through it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from controller.errors import InputError

# Far beyond any count or measurement an attestation carries; Python refuses
# more than 4300 digits anyway, with a bare ValueError.
MAX_INT_DIGITS = 64

# An escaped UTF-16 surrogate: only then can a parsed string hold a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class StrictJSONError(InputError, ValueError):
    """The text is not plain, unambiguous JSON (or YAML).

    ``truncated`` is set when the text ends where more JSON was expected,
    which callers report as a cut-off file rather than as garbage.
    """

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@dataclass(frozen=True)
class Limits:
    """Bounds on one document, so hostile input fails in one line, not later.

    ``max_bytes``: the encoded size. ``max_depth``: how deeply arrays and
    objects nest, checked without recursion (``None``: only the parser's own
    recursion guard applies, for callers that bound the parts they walk).
    ``max_int_digits``: the longest integer, in decimal digits.
    """

    max_bytes: int | None = None
    max_depth: int | None = None
    max_int_digits: int = MAX_INT_DIGITS


DEFAULT_LIMITS = Limits()


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:32]} is not a finite number")
    return value


class _BoundedInt:
    """``parse_int`` that refuses integers longer than a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, text: str) -> int:
        if len(text.lstrip("-")) > self.limit:
            raise StrictJSONError(f"number too long ({len(text)} digits)")
        return int(text)


def _int_parser(limit: int) -> _BoundedInt | None:
    """A checking ``parse_int``, or ``None`` when the interpreter already refuses.

    Calling Python for every integer of a large plan costs about a tenth of
    the parse; when the interpreter's own digit limit is at least as strict,
    its refusal (a plain ``ValueError``) is caught and reported instead.
    """
    interpreter = sys.get_int_max_str_digits()
    if 0 < interpreter <= limit:
        return None
    return _BoundedInt(limit)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and back on after,
    if it was on).

    Parsing creates containers and no cycles; with the collector on, every
    few thousand new containers it walks all the containers built so far,
    which for a large plan costs more than the parse itself (measured: a
    62 MB plan parses in 1.0 s with it off, 4.5 s with it on).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loads(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse JSON, rejecting duplicate keys, NaN/Infinity, invalid UTF-8 and
    anything beyond ``limits``."""
    size = len(data)
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise StrictJSONError(f"too large ({size} bytes; the limit is {limits.max_bytes})")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        with collector_paused():
            value = json.loads(
                text,
                object_pairs_hook=_unique_object,
                parse_constant=_no_constants,
                parse_float=_finite_float,
                parse_int=_int_parser(limits.max_int_digits),
            )
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated")
        raise StrictJSONError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            truncated=truncated,
        ) from None
    except RecursionError:
        raise StrictJSONError("not valid JSON: nested too deeply") from None
    except ValueError:
        # The interpreter's own integer digit limit (see _int_parser).
        raise StrictJSONError(f"number too long (over {limits.max_int_digits} digits)") from None
    raw = data if isinstance(data, bytes) else None
    if (raw is None or _SURROGATE_ESCAPE.search(raw)) and not _encodable(value):
        raise StrictJSONError("not valid Unicode: a string holds a lone UTF-16 surrogate")
    if limits.max_depth is not None and nested_deeper_than(value, limits.max_depth):
        raise StrictJSONError(f"nested too deeply (more than {limits.max_depth} levels)")
    return value


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels.

    Level by level, without recursion, so it answers for any depth the parser
    accepted; a scalar is depth 0, ``[]`` and ``{}`` are depth 1.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
    return False


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _encodable(value: Any) -> bool:
    try:
        for text in _strings(value):
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)

# libyaml's parser (C), when PyYAML was built with it: the same resolver and
# constructors, so the same documents and the same refusals, about ten times
# faster than the pure-Python reader. Its own nesting limit (1,000 levels)
# refuses a bomb before Python would recurse; construction, where duplicate
# keys are found, stays in Python (``_construct_mapping``).
_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FastUniqueKeyLoader(_Parser):  # type: ignore[valid-type,misc]
    """``UniqueKeyLoader`` with libyaml's parser."""


_FastUniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _problem(exc: yaml.YAMLError) -> str:
    """The reason a YAML text was refused, the same from either parser."""
    problem = str(getattr(exc, "problem", None) or exc)
    # libyaml's own nesting limit says so in its words; Python's recursion
    # guard is reported as "nested too deeply", and one refusal reads one way.
    return "nested too deeply" if "maximum nesting depth" in problem else problem


# How many values a document's aliases may add to it, beyond the nodes its
# text writes. A few lines of anchors that each repeat the one before twice
# (a "billion laughs") expand to more values than any walk of the document
# (its depth check, its conversion into CEL, its key) can finish.
MAX_ALIASED_VALUES = 1_000_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def aliased_values(root: yaml.Node) -> int:
    """How many values the aliases of a composed document add: its size
    written out as a tree, less its distinct nodes. Each node is sized once
    (no recursion, no expansion). An alias inside the node it names (a value
    that contains itself, which no JSON or API object can be) is an error."""
    sizes: dict[int, int] = {}
    expanding: set[int] = set()
    stack = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in sizes:
            stack.pop()
        elif key not in expanding:
            expanding.add(key)
            for child in _children(node):
                if id(child) in expanding and id(child) not in sizes:
                    # Expanded and not yet sized: the child is an ancestor.
                    raise yaml.YAMLError("an alias is used inside the value it names")
                if id(child) not in sizes:
                    stack.append(child)
        else:
            stack.pop()
            sizes[key] = 1 + sum(sizes.get(id(c), 0) for c in _children(node))
    return sizes[id(root)] - len(sizes)


def _check_aliases(node: yaml.Node) -> None:
    if aliased_values(node) > MAX_ALIASED_VALUES:
        raise yaml.YAMLError(
            f"its aliases repeat more than {MAX_ALIASED_VALUES:,} values (an alias bomb)"
        )


def load_json_or_yaml(text: str) -> Any:
    """Parse a JSON or YAML document (YAML is a superset), rejecting duplicate keys."""
    try:
        node = yaml.compose(text, Loader=_FastUniqueKeyLoader)
        if node is None:
            return None
        _check_aliases(node)
        return UniqueKeyLoader("").construct_document(node)  # type: ignore[no-untyped-call]
    except RecursionError:
        raise StrictJSONError("not valid JSON or YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = _problem(exc)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StrictJSONError(f"not valid JSON or YAML{where}: {problem}") from None


class YAMLDocumentError(StrictJSONError):
    """A YAML stream that cannot be read, with where (source, document) and line."""

    def __init__(self, where: str, problem: str, line: int | None = None) -> None:
        super().__init__(f"{where}:{line}: {problem}" if line else f"{where}: {problem}")
        self.where = where
        self.problem = problem
        self.line = line


@dataclass(frozen=True)
class YAMLDocument:
    """One non-empty document of a YAML stream, with its node (for lines)."""

    data: Any
    node: yaml.Node
    index: int  # 1-based, among the non-empty documents

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1


def read_yaml_documents(text: str, source: str) -> list[YAMLDocument]:
    """Every document of a multi-document YAML (or JSON) text, read strictly:
    duplicate keys and nesting bombs are errors naming the source and line.

    The one reader for policies, trust, tests and manifests, so no input is
    read more leniently than another.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_FastUniqueKeyLoader))
    except RecursionError:
        raise YAMLDocumentError(source, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = _problem(exc)
        raise YAMLDocumentError(
            source, f"not valid YAML: {problem}", mark.line + 1 if mark else None
        ) from None
    documents: list[YAMLDocument] = []
    index = 0
    for node in nodes:
        if node is None:
            continue
        index += 1
        where = f"{source} (document {index})"
        try:
            _check_aliases(node)
            data = UniqueKeyLoader("").construct_document(node)  # type: ignore[no-untyped-call]
        except RecursionError:
            raise YAMLDocumentError(where, "nested too deeply") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise YAMLDocumentError(
                where, str(getattr(exc, "problem", exc)), mark.line + 1 if mark else None
            ) from None
        if data is not None:
            documents.append(YAMLDocument(data, node, index))
    return documents
