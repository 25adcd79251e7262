"""Load guard documents from files, directories and multi-document YAML.

Errors name the file, the document, the field path, its line and the problem,
because a policy author must be able to fix a typo without reading a
traceback. Duplicate mapping keys are rejected: YAML would silently keep the
last one, which could switch a guardrail off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from controller.policy.documents import (
    DOCUMENT_KINDS,
    AnyDocument,
    GuardException,
    GuardPolicy,
    GuardPolicyTest,
    GuardTrust,
    ReviewAttestation,
)
from controller.policy.identity import suggestion

YAML_SUFFIXES = (".yaml", ".yml", ".json")


class DocumentError(Exception):
    """A document that cannot be used, with where and why."""

    def __init__(self, source: str, problem: str, *, line: int | None = None) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Loaded:
    """A document and where it came from (``file#index``)."""

    document: AnyDocument
    source: str
    line: int


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


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                # The missing or unknown field: point at the key itself if present.
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else best
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return best
            node = node.value[part]
        else:
            return best
        best = node.start_mark.line + 1
    return best


def _field_path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _unwrap(annotation: Any) -> Any:
    """The model or list inside ``Annotated``/``Optional`` wrappers."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return None
            annotation = options[0]
        else:
            return annotation


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, ...]:
    """The field names (as written) of the model at a location, for hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return ()
            current = field.annotation
        else:
            return ()
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return tuple(f.alias or n for n, f in current.model_fields.items())
    return ()


_TYPE_ERRORS = frozenset(
    {"int_type", "float_type", "bool_type", "string_type", "dict_type", "list_type"}
)


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             list: "a list", dict: "a mapping", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def validation_problems(
    model: type[BaseModel], exc: ValidationError, *, prefix: str = "", limit: int | None = None
) -> str:
    """The problems of a failed validation in one line, each with its field path
    (``prefix`` before it); at most ``limit`` of them, saying how many more."""
    problems = []
    errors = exc.errors()
    for error in errors[:limit]:
        loc = error["loc"]
        path = ".".join(p for p in (prefix, _field_path(loc)) if p)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in _TYPE_ERRORS and "input" in error:
            # Strict: "2" or true is not a number; say what was given.
            message = f"{message}, not {_type_name(error['input'])}"
        if error["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            nearest = suggestion(str(loc[-1]), known) if known and loc else None
            hint = f"did you mean {nearest!r}? " if nearest else ""
            message = f"unknown field ({hint}check its spelling; unknown fields are errors)"
        problems.append(f"{path}: {message}" if path else message)
    if limit is not None and len(errors) > limit:
        problems.append(f"and {len(errors) - limit} more")
    # One line: a value may carry a newline, and a message must not forge lines.
    return " ".join("; ".join(problems).splitlines())


def parse_documents(text: str, source: str) -> list[Loaded]:
    """Parse and validate every document in one YAML/JSON text."""
    try:
        nodes = list(yaml.compose_all(text, Loader=UniqueKeyLoader))
    except RecursionError:
        raise DocumentError(source, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(
            source, f"not valid YAML: {problem}", line=mark.line + 1 if mark else None
        ) from None
    loaded: list[Loaded] = []
    index = 0
    for node in nodes:
        if node is None:
            continue
        index += 1
        where = f"{source} (document {index})"
        loader = UniqueKeyLoader("")
        try:
            raw = loader.construct_document(node)  # type: ignore[no-untyped-call]
        except RecursionError:
            raise DocumentError(where, "nested too deeply") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise DocumentError(
                where, str(getattr(exc, "problem", exc)), line=mark.line + 1 if mark else None
            ) from None
        if raw is None:
            continue
        loaded.extend(_validate(raw, where, node, source))
    return loaded


def _validate(raw: Any, where: str, node: yaml.Node, source: str) -> Iterator[Loaded]:
    line = node.start_mark.line + 1
    if not isinstance(raw, dict):
        raise DocumentError(where, "a document must be a mapping", line=line)
    kind = raw.get("kind")
    if kind == "List" and isinstance(raw.get("items"), list):
        items_node = next((v for k, v in node.value if k.value == "items"), node)
        for position, item in enumerate(raw["items"]):
            item_node = (
                items_node.value[position] if isinstance(items_node, yaml.SequenceNode) else node
            )
            yield from _validate(item, f"{where} items[{position}]", item_node, source)
        return
    model = DOCUMENT_KINDS.get(str(kind))
    if model is None:
        known = ", ".join(sorted(DOCUMENT_KINDS))
        raise DocumentError(
            where, f"kind {kind!r} is not a guard document (one of {known})", line=line
        )
    name = (
        (raw.get("metadata") or {}).get("name") if isinstance(raw.get("metadata"), dict) else None
    )
    label = f"{where} {kind}/{name}" if name else where
    try:
        document = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DocumentError(
            label, validation_problems(model, exc), line=_line_of(node, first["loc"])
        ) from None
    yield Loaded(document=document, source=f"{source}", line=line)  # type: ignore[arg-type]


def iter_files(path: Path) -> list[Path]:
    """The YAML/JSON files under a path, in a stable order.

    Hidden entries are skipped: a ConfigMap or Secret mounted by the kubelet
    holds each file twice, once in a ``..<timestamp>`` folder and once as a
    link beside it, and reading both would define every document twice.
    """
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix in YAML_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.is_file():
        return [path]
    raise DocumentError(str(path), "no such file or directory")


def load_path(path: str | Path) -> list[Loaded]:
    """Every document from a file or a directory tree."""
    root = Path(path)
    loaded: list[Loaded] = []
    for file in iter_files(root):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DocumentError(str(file), f"cannot read: {exc}") from None
        loaded.extend(parse_documents(text, str(file)))
    return loaded


def load_paths(paths: Iterable[str | Path]) -> list[Loaded]:
    loaded: list[Loaded] = []
    for path in paths:
        loaded.extend(load_path(path))
    return loaded


@dataclass(frozen=True)
class Bundle:
    """Documents split by kind, with their sources, names unique per kind."""

    policies: tuple[GuardPolicy, ...]
    trusts: tuple[GuardTrust, ...]
    exceptions: tuple[GuardException, ...]
    tests: tuple[Loaded, ...]
    attestations: tuple[ReviewAttestation, ...]
    sources: dict[tuple[str, str], str]

    @classmethod
    def of(cls, loaded: Iterable[Loaded]) -> Bundle:
        seen: dict[tuple[str, str], str] = {}
        policies: list[GuardPolicy] = []
        trusts: list[GuardTrust] = []
        exceptions: list[GuardException] = []
        tests: list[Loaded] = []
        attestations: list[ReviewAttestation] = []
        for item in loaded:
            doc = item.document
            key = (doc.kind, doc.name)
            if key in seen:
                raise DocumentError(
                    f"{item.source}:{item.line}",
                    f"{doc.kind} {doc.name!r} is defined twice (also in {seen[key]})",
                )
            seen[key] = f"{item.source}:{item.line}"
            if isinstance(doc, GuardPolicy):
                policies.append(doc)
            elif isinstance(doc, GuardTrust):
                trusts.append(doc)
            elif isinstance(doc, GuardException):
                exceptions.append(doc)
            elif isinstance(doc, GuardPolicyTest):
                tests.append(item)
            else:
                attestations.append(doc)
        return cls(
            policies=tuple(sorted(policies, key=lambda p: p.name)),
            trusts=tuple(trusts),
            exceptions=tuple(exceptions),
            tests=tuple(tests),
            attestations=tuple(attestations),
            sources=seen,
        )


def load_bundle(*paths: str | Path) -> Bundle:
    return Bundle.of(load_paths(paths))
