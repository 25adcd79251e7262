"""Load guard documents from files, directories and multi-document YAML.

Errors name the file, the document, the field path, its line and the problem,
because a policy author must be able to fix a typo without reading a
traceback. Duplicate mapping keys are rejected: YAML would silently keep the
last one, which could switch a guardrail off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.errors import InputError
from controller.policy.baseline import GuardBaseline
from controller.policy.documents import (
    DOCUMENT_KINDS,
    AnyDocument,
    GuardException,
    GuardPolicy,
    GuardPolicyTest,
    GuardTrust,
    ReviewAttestation,
)
from controller.policy.problems import validation_problems
from controller.strict import YAMLDocumentError, read_yaml_documents

YAML_SUFFIXES = (".yaml", ".yml", ".json")
TEST_SUFFIXES = tuple(f".test{suffix}" for suffix in YAML_SUFFIXES)

# The two ways YAML writes a string that is not literally in the text:
# escapes in double quotes ("Guard\x50olicy") and tags (!!binary).
_WRITTEN_INDIRECTLY = r"[\\!]"


class DocumentError(InputError):
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

    document: AnyDocument | GuardBaseline
    source: str
    line: int


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


def parse_documents(text: str, source: str) -> list[Loaded]:
    """Parse and validate every document in one YAML/JSON text."""
    try:
        documents = read_yaml_documents(text, source)
    except YAMLDocumentError as exc:
        raise DocumentError(exc.where, exc.problem, line=exc.line) from None
    loaded: list[Loaded] = []
    for document in documents:
        where = f"{source} (document {document.index})"
        loaded.extend(_validate(document.data, where, document.node, source))
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


def only_policy_tests(file: Path, text: str) -> bool:
    """True when a ``*.test.yaml`` file can only hold GuardPolicyTest documents.

    Commands that judge (``tf-plan``) skip such files in a folder rather
    than parse and validate every test case. The check is on the text and
    errs towards reading: a test file that names any other kind, or writes a
    string YAML could decode into one, is read like any other file, so a
    policy never goes unenforced because of its file's name.
    """
    if not file.name.endswith(TEST_SUFFIXES) or "GuardPolicyTest" not in text:
        return False
    # Read from the registry each time: a kind added later is covered too.
    others = sorted(kind for kind in DOCUMENT_KINDS if kind != "GuardPolicyTest")
    names = "|".join(re.escape(kind) for kind in others)
    return re.search(rf"\b(?:{names})\b|{_WRITTEN_INDIRECTLY}", text) is None


def load_path(path: str | Path, *, tests: bool = True) -> list[Loaded]:
    """Every document from a file or a directory tree.

    ``tests=False`` skips the test files of a folder (``only_policy_tests``);
    a file named on its own is always read.
    """
    root = Path(path)
    loaded: list[Loaded] = []
    for file in iter_files(root):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DocumentError(str(file), f"cannot read: {exc}") from None
        if not tests and file != root and only_policy_tests(file, text):
            continue
        loaded.extend(parse_documents(text, str(file)))
    return loaded


def load_paths(paths: Iterable[str | Path], *, tests: bool = True) -> list[Loaded]:
    loaded: list[Loaded] = []
    for path in paths:
        loaded.extend(load_path(path, tests=tests))
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
    baselines: tuple[GuardBaseline, ...] = ()

    @classmethod
    def of(cls, loaded: Iterable[Loaded]) -> Bundle:
        seen: dict[tuple[str, str], str] = {}
        policies: list[GuardPolicy] = []
        trusts: list[GuardTrust] = []
        exceptions: list[GuardException] = []
        tests: list[Loaded] = []
        attestations: list[ReviewAttestation] = []
        baselines: list[GuardBaseline] = []
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
            elif isinstance(doc, GuardBaseline):
                baselines.append(doc)
            else:
                attestations.append(doc)
        return cls(
            policies=tuple(sorted(policies, key=lambda p: p.name)),
            trusts=tuple(trusts),
            exceptions=tuple(exceptions),
            tests=tuple(tests),
            attestations=tuple(attestations),
            sources=seen,
            baselines=tuple(baselines),
        )


def load_bundle(*paths: str | Path, tests: bool = True) -> Bundle:
    """The documents under ``paths``; ``tests=False`` leaves test files out
    (``load_path``), for commands that judge rather than test."""
    return Bundle.of(load_paths(paths, tests=tests))
