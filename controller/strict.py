"""Strict data reading: JSON and YAML that refuse what attackers use to confuse parsers.

The bottom layer: every package reads documents, envelopes, plans and
manifests through here, so one policy (no duplicate keys, no non-finite
numbers, bounded nesting) holds everywhere.


Two parsers reading one document must see one meaning. Python's ``json``
keeps the last of two equal keys while other languages keep the first, so a
signed envelope with two ``payload`` keys could mean one thing to the signer
and another to us: duplicate keys are rejected. ``NaN`` and ``Infinity`` are
not JSON and are rejected too, and so are numbers that only read as one by
overflowing (``1e400`` would become infinity and pass any minimum) or that
are too long to convert. Every failure is a ``StrictJSONError``, never a bare
``ValueError`` or ``RecursionError`` that a caller might not expect.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from controller.errors import InputError

# Far beyond any count or measurement an attestation carries; Python refuses
# more than 4300 digits anyway, with a bare ValueError.
MAX_INT_DIGITS = 64


class StrictJSONError(InputError, ValueError):
    """The text is not plain, unambiguous JSON (or YAML)."""


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


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text[:32]} is not a finite number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(f"number too long ({len(text)} digits)")
    return int(text)


def loads(data: bytes | str) -> Any:
    """Parse JSON, rejecting duplicate keys, NaN/Infinity and invalid UTF-8."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise StrictJSONError("not valid JSON: nested too deeply") from None


def load_json_or_yaml(text: str) -> Any:
    """Parse a JSON or YAML document (YAML is a superset), rejecting duplicate keys."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except RecursionError:
        raise StrictJSONError("not valid JSON or YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
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
        nodes = list(yaml.compose_all(text, Loader=UniqueKeyLoader))
    except RecursionError:
        raise YAMLDocumentError(source, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
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
