"""``.tf`` files into subjects, before a plan exists (``guard tf-config``).

Reads every ``.tf`` file of a folder with python-hcl2, follows local modules
(``source = "./..."``), and resolves variable defaults (and
``terraform.tfvars`` / ``*.auto.tfvars`` at the root), literal locals and
module inputs. What cannot be resolved is unknown, never a failure; the
share of unknown attributes is reported so nobody mistakes a config check
for a plan check. Block lines come from the Lark parse tree
(``parses_to_tree``): the dict form has no positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions
from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from controller.errors import InputError
from controller.policy.documents import Target
from controller.policy.subject import Subject
from controller.terraform.addresses import config_address
from controller.terraform.hcl import UNKNOWN, Lookup, resolve, split_unknowns, unquote_key
from controller.terraform.sensitive import SENSITIVE_MASK

# Resource arguments that are Terraform's, not the provider's.
META_ARGUMENTS = frozenset(
    {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
)
MAX_MODULE_DEPTH = 32
_OPTIONS = SerializationOptions(
    with_comments=False, preserve_heredocs=False, preserve_scientific_notation=False
)


@dataclass(frozen=True)
class Block:
    """One top-level block of a file, resolved later in its module's scope."""

    kind: str
    labels: tuple[str, ...]
    body: Mapping[str, Any]
    file: Path
    line: int


@dataclass
class ModuleFiles:
    """The blocks of one module folder, by kind."""

    directory: Path
    blocks: list[Block] = field(default_factory=list)

    def of_kind(self, kind: str) -> Iterator[Block]:
        return (b for b in self.blocks if b.kind == kind)


@dataclass(frozen=True)
class ConfigResult:
    subjects: tuple[Subject, ...]
    total_attributes: int
    unknown_attributes: int
    notes: tuple[str, ...]
    locations: Mapping[str, tuple[str, int]]

    @property
    def unknown_share(self) -> float:
        return self.unknown_attributes / self.total_attributes if self.total_attributes else 0.0


def _labels_of(block: Tree[Any]) -> tuple[str, tuple[str, ...]]:
    kind = ""
    labels: list[str] = []
    for child in block.children:
        if isinstance(child, Tree) and child.data == "identifier" and not kind:
            kind = str(child.children[0])
        elif isinstance(child, Tree) and child.data == "string":
            labels.append("".join(str(t) for t in child.scan_values(_is_string_chars)))
        elif isinstance(child, Tree) and child.data == "identifier":
            labels.append(str(child.children[0]))
        elif isinstance(child, Token) and child.type == "LBRACE":
            break
    return kind, tuple(labels)


def _is_string_chars(token: Any) -> bool:
    return isinstance(token, Token) and token.type != "DBLQUOTE"


def parse_file(path: Path) -> list[Block]:
    """The top-level blocks of one ``.tf`` file with their first lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        tree = hcl2.parses_to_tree(text)
        lines = [(_labels_of(node), node.meta.line) for node in _top_level_blocks(tree)]
        data = hcl2.serialize(hcl2.transform(tree), serialization_options=_OPTIONS)
    except UnexpectedInput as exc:
        raise InputError(f"{path}:{exc.line}:{exc.column}: not valid HCL") from None
    except (LarkError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not valid HCL: {str(exc).splitlines()[0]}") from None
    blocks: list[Block] = []
    lines_by_key: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for key, line in lines:
        lines_by_key.setdefault(key, []).append(line)
    for kind, items in data.items():
        if not isinstance(items, list):
            continue
        for item in items:
            for labels, body in _unwrap_labels(item):
                candidates = lines_by_key.get((kind, labels)) or [1]
                line = candidates.pop(0) if len(candidates) > 1 else candidates[0]
                blocks.append(Block(kind, labels, body, path, line))
    return blocks


def _top_level_blocks(tree: Tree[Any]) -> Iterator[Tree[Any]]:
    for body in tree.children:
        if isinstance(body, Tree) and body.data == "body":
            for child in body.children:
                if isinstance(child, Tree) and child.data == "block":
                    yield child


def _unwrap_labels(
    item: Any, labels: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """python-hcl2 nests labelled blocks as ``{"\\"type\\"": {"\\"name\\"": body}}``."""
    if not isinstance(item, dict):
        return
    if item.get("__is_block__") is True or not item:
        yield labels, item
        return
    keys = [k for k in item if not k.startswith("__")]
    if len(keys) == 1 and isinstance(item[keys[0]], dict):
        yield from _unwrap_labels(item[keys[0]], (*labels, unquote_key(keys[0])))
    else:
        yield labels, item


def read_module(directory: Path) -> ModuleFiles:
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of .tf files")
    module = ModuleFiles(directory)
    for path in sorted(directory.glob("*.tf")):
        module.blocks.extend(parse_file(path))
    return module


def _tfvars(directory: Path) -> dict[str, Any]:
    """Root variable values from terraform.tfvars and *.auto.tfvars (literals only)."""
    values: dict[str, Any] = {}
    files = [directory / "terraform.tfvars", *sorted(directory.glob("*.auto.tfvars"))]
    for path in files:
        if not path.is_file():
            continue
        try:
            data = hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=_OPTIONS)
        except (LarkError, ValueError, RuntimeError, OSError) as exc:
            raise InputError(f"{path}: not valid HCL: {str(exc).splitlines()[0]}") from None
        for name, value in data.items():
            values[name] = resolve(value, lambda _kind, _name: UNKNOWN)
    return values


class _Scope:
    """Variables and locals of one module instance, resolved on demand."""

    def __init__(self, module: ModuleFiles, inputs: Mapping[str, Any]) -> None:
        self.variables: dict[str, Any] = {}
        sensitive: set[str] = set()
        for block in module.of_kind("variable"):
            if not block.labels:
                continue
            name = block.labels[0]
            default = block.body.get("default", UNKNOWN)
            self.variables[name] = UNKNOWN if default is UNKNOWN else resolve(default, self.lookup)
            if block.body.get("sensitive") is True:
                sensitive.add(name)
        self.variables.update(inputs)
        # Sensitive variables are masked before any rule sees them, as in plans.
        for name in sensitive:
            if self.variables.get(name, UNKNOWN) is not UNKNOWN:
                self.variables[name] = SENSITIVE_MASK
        self._raw_locals: dict[str, Any] = {}
        for block in module.of_kind("locals"):
            self._raw_locals.update({k: v for k, v in block.body.items() if not k.startswith("__")})
        self._locals: dict[str, Any] = {}
        self._resolving: set[str] = set()

    def lookup(self, kind: str, name: str) -> Any:
        if kind == "var":
            return self.variables.get(name, UNKNOWN)
        if name in self._locals:
            return self._locals[name]
        if name not in self._raw_locals or name in self._resolving:
            return UNKNOWN  # undefined or a cycle: Terraform would reject it; not our call
        self._resolving.add(name)
        value = resolve(self._raw_locals[name], self.lookup)
        self._resolving.discard(name)
        self._locals[name] = value
        return value


@dataclass
class _Reader:
    root: Path
    subjects: list[Subject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    locations: dict[str, tuple[str, int]] = field(default_factory=dict)
    total: int = 0
    unknown: int = 0
    cache: dict[Path, ModuleFiles] = field(default_factory=dict)

    def module(self, directory: Path) -> ModuleFiles:
        key = directory.resolve()
        if key not in self.cache:
            self.cache[key] = read_module(directory)
        return self.cache[key]

    def visit(self, directory: Path, prefix: str, inputs: Mapping[str, Any], depth: int) -> None:
        if depth > MAX_MODULE_DEPTH:
            self.notes.append(f"{prefix}: modules nested deeper than {MAX_MODULE_DEPTH}, not read")
            return
        module = self.module(directory)
        scope = _Scope(module, inputs)
        for block in module.of_kind("resource"):
            if len(block.labels) == 2:
                self._resource(block, prefix, scope.lookup)
        for block in module.of_kind("data"):
            if len(block.labels) == 2:
                self.locations[f"{prefix}data.{block.labels[0]}.{block.labels[1]}"] = (
                    str(block.file),
                    block.line,
                )
        for block in module.of_kind("module"):
            if not block.labels:
                continue
            name = block.labels[0]
            address = f"{prefix}module.{name}"
            self.locations[address] = (str(block.file), block.line)
            source = resolve(block.body.get("source"), scope.lookup)
            if not isinstance(source, str) or not source.startswith(("./", "../")):
                self.notes.append(
                    f"{address}: source {source if isinstance(source, str) else '?'} is not a "
                    "local folder; its resources are checked only in a plan"
                )
                continue
            child_inputs = {
                k: resolve(v, scope.lookup)
                for k, v in block.body.items()
                if not k.startswith("__")
                and k not in META_ARGUMENTS
                and k not in ("source", "version", "providers")
            }
            self.visit(directory / source, f"{address}.", child_inputs, depth + 1)

    def _resource(self, block: Block, prefix: str, lookup: Lookup) -> None:
        resource_type, name = block.labels
        address = f"{prefix}{resource_type}.{name}"
        self.locations[address] = (str(block.file), block.line)
        body = {
            k: v
            for k, v in block.body.items()
            if not k.startswith("__") and k not in META_ARGUMENTS
        }
        dynamic_labels: list[str] = []
        for dynamic in body.pop("dynamic", None) or []:
            if isinstance(dynamic, dict):
                dynamic_labels.extend(unquote_key(k) for k in dynamic if not k.startswith("__"))
        value = resolve(body, lookup)
        for label in dynamic_labels:
            value[label] = UNKNOWN  # generated blocks: known only when Terraform expands them
        obj, paths, leaves = split_unknowns(value)
        self.total += leaves
        self.unknown += len(paths)
        self.subjects.append(
            Subject(
                target=Target.terraform,
                address=address,
                kind="resource",
                type=resource_type,
                name=name,
                namespace=None,
                action="create",
                object=obj,
                unknowns=tuple(paths),
                location=str(block.file),
                line=block.line,
            )
        )


def read_config(root: Path) -> ConfigResult:
    """Every resource of the configuration in ``root`` and its local modules."""
    reader = _Reader(root)
    reader.visit(root, "", _tfvars(root), 0)
    if not reader.cache.get(root.resolve(), ModuleFiles(root)).blocks:
        raise InputError(f"{root}: no .tf files with blocks found")
    return ConfigResult(
        subjects=tuple(reader.subjects),
        total_attributes=reader.total,
        unknown_attributes=reader.unknown,
        notes=tuple(reader.notes),
        locations=dict(reader.locations),
    )


@dataclass(frozen=True)
class ConfigIndex:
    """Where each resource of a configuration is declared, for report locations."""

    locations: Mapping[str, tuple[str, int]]

    @classmethod
    def of(cls, root: Path) -> ConfigIndex:
        return cls(read_config(root).locations)

    def locate(self, address: str) -> tuple[str, int] | None:
        return self.locations.get(config_address(address))
