"""``.tf`` files into subjects, before a plan exists (``guard tf-config``).

Reads every ``.tf`` file of a folder with python-hcl2, follows local modules
(``source = "./..."``), and resolves variable defaults (and
``terraform.tfvars`` / ``*.auto.tfvars`` at the root), locals and module
inputs. What cannot be resolved is unknown, never a failure; the share of
unknown attributes is reported so nobody mistakes a config check for a plan
check. Block lines come from the Lark parse tree (``parses_to_tree``): the
dict form has no positions.

``count`` and ``for_each`` (on resources and on module calls) are expanded
as Terraform would: one subject per instance, addressed like the plan
(``aws_s3_bucket.b[0]``, ``module.m["eu"].aws_s3_bucket.b``) with
``count.index`` / ``each.key`` / ``each.value`` resolved. A resource with
no instances (``count = 0``, a false conditional, an empty set) is not
judged, because Terraform would never create it. When the instances cannot
be known without a plan, the resource is judged once under its declared
address and its failures are reported as unknown (:meth:`ConfigResult.settle`).

Its size is deliberate: reading the files, resolving what is known and
expanding instances are one walk over the module tree, with one set of
limits; expressions themselves live in ``expressions``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions
from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from controller.errors import InputError
from controller.policy.documents import Action, Target
from controller.policy.results import Decision, Result, Subject
from controller.terraform.addresses import config_address, instance_key
from controller.terraform.expressions import TfSet, number_of, to_set
from controller.terraform.hcl import (
    UNKNOWN,
    LimitError,
    Lookup,
    resolve,
    split_unknowns,
    unquote_key,
)
from controller.terraform.inputs import TerraformInput
from controller.terraform.sensitive import SENSITIVE_MASK

# Resource arguments that are Terraform's, not the provider's.
META_ARGUMENTS = frozenset(
    {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
)
MAX_MODULE_DEPTH = 32
# Bounds on what one configuration can make guard do: a module that calls
# itself twice would otherwise double the work at every level.
MAX_MODULE_INSTANCES = 1_000
MAX_INSTANCES = 10_000  # of one resource or module block
MAX_SUBJECTS = 100_000
MAX_FILE_BYTES = 16 * 1024 * 1024
# Locals that refer to locals: deeper chains are unknown, not a stack overflow.
MAX_LOCALS_CHAIN = 32
UNCERTAIN_EXISTENCE = "whether it exists depends on count / for_each values known only at plan time"
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
    """The subjects of a configuration.

    ``uncertain`` holds the addresses of subjects whose instances could not
    be known (``count`` / ``for_each`` unknown, here or on a module call):
    they may not exist at all.
    """

    subjects: tuple[Subject, ...]
    total_attributes: int
    unknown_attributes: int
    notes: tuple[str, ...]
    locations: Mapping[str, tuple[str, int]]
    uncertain: frozenset[str] = frozenset()

    @property
    def unknown_share(self) -> float:
        return self.unknown_attributes / self.total_attributes if self.total_attributes else 0.0

    def settle(self, decision: Decision, unknown_action: Action) -> Decision:
        """The decision with failures on possibly absent resources made unknown.

        A rule can fail a resource Terraform may never create; like any
        verdict that depends on what only a plan knows, that is an unknown,
        whose action is capped by ``unknown_action``. Errors stay errors.
        """
        findings = []
        for finding in decision.findings:
            if finding.address in self.uncertain and finding.result is Result.fail:
                finding = replace(
                    finding,
                    result=Result.unknown,
                    action=finding.action.capped(unknown_action),
                    message=f"{finding.message} ({UNCERTAIN_EXISTENCE})",
                )
            findings.append(finding)
        return Decision(findings=tuple(findings), subjects=decision.subjects, notes=decision.notes)


@dataclass(frozen=True)
class Expansion:
    """The instances of a block: ``None`` keys when they cannot be known.

    Each instance is ``(key, value)``: the ``count.index`` (value ``None``),
    or the ``each.key`` and ``each.value``; a block without ``count`` or
    ``for_each`` has one instance with key ``None``.
    """

    instances: tuple[tuple[int | str | None, Any], ...] | None
    kind: str | None  # "count" | "for_each" | None

    def lookup(self, key: int | str | None, value: Any, outer: Lookup) -> Lookup:
        """``outer`` plus ``count.index`` / ``each.*`` of one instance."""

        def instance(kind: str, name: str) -> Any:
            if kind == "count":
                return key if self.kind == "count" and name == "index" else UNKNOWN
            if kind == "each":
                if self.kind != "for_each" or name not in ("key", "value"):
                    return UNKNOWN
                return key if name == "key" else value
            return outer(kind, name)

        return instance


SINGLE = Expansion(instances=((None, None),), kind=None)
UNKNOWN_INSTANCES = Expansion(instances=None, kind=None)


def expansion_of(body: Mapping[str, Any], lookup: Lookup, where: str) -> Expansion:
    """The instances ``count`` or ``for_each`` in ``body`` make, as far as known.

    ``where`` names the block (file:line address) in errors.
    """
    if "count" in body and "for_each" in body:
        raise InputError(f"{where}: count and for_each together; Terraform allows one")
    if "count" in body:
        value = resolve(body["count"], lookup)
        number = None if value is UNKNOWN else number_of(value)
        if number is None:
            return UNKNOWN_INSTANCES
        if isinstance(number, float) or number < 0:
            raise InputError(f"{where}: count is {number}; Terraform requires a whole number >= 0")
        _bounded(number, where)
        return Expansion(instances=tuple((i, None) for i in range(number)), kind="count")
    if "for_each" in body:
        value = resolve(body["for_each"], lookup)
        if isinstance(value, dict):
            _bounded(len(value), where)
            return Expansion(tuple((k, value[k]) for k in sorted(value)), kind="for_each")
        if isinstance(value, TfSet):
            if not all(isinstance(item, str) for item in value):
                raise InputError(
                    f"{where}: for_each is a set of {type(value[0]).__name__}s; "
                    "Terraform requires a map or a set of strings"
                )
            _bounded(len(value), where)
            return Expansion(tuple((k, k) for k in value), kind="for_each")
        return UNKNOWN_INSTANCES  # unknown, or a list only Terraform's types make a set
    return SINGLE


def _bounded(count: int, where: str) -> None:
    if count > MAX_INSTANCES:
        raise InputError(
            f"{where}: {count} instances; guard tf-config expands at most {MAX_INSTANCES} "
            "per block (check the plan with guard tf-plan)"
        )


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
    text = read_text(path)
    try:
        tree = hcl2.parses_to_tree(text)
        lines = [(_labels_of(node), node.meta.line) for node in _top_level_blocks(tree)]
        data = hcl2.serialize(hcl2.transform(tree), serialization_options=_OPTIONS)
    except RecursionError:
        raise InputError(f"{path}: not valid HCL: nested too deeply") from None
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


def read_text(path: Path) -> str:
    """A configuration file's text, refusing files no configuration needs."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES} bytes, refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read: not UTF-8 at byte {exc.start}") from None


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
        text = read_text(path)
        try:
            data = hcl2.loads(text, serialization_options=_OPTIONS)
            for name, value in data.items():
                values[name] = resolve(value, lambda _kind, _name: UNKNOWN)
        except RecursionError:
            raise InputError(f"{path}: not valid HCL: nested too deeply") from None
        except (LarkError, ValueError, RuntimeError) as exc:
            raise InputError(f"{path}: not valid HCL: {str(exc).splitlines()[0]}") from None
    return values


class _Scope:
    """Variables and locals of one module instance, resolved on demand."""

    def __init__(self, module: ModuleFiles, inputs: Mapping[str, Any]) -> None:
        self.variables: dict[str, Any] = {}
        sensitive: set[str] = set()
        sets: set[str] = set()
        for block in module.of_kind("variable"):
            if not block.labels:
                continue
            name = block.labels[0]
            default = block.body.get("default", UNKNOWN)
            self.variables[name] = UNKNOWN if default is UNKNOWN else resolve(default, self.lookup)
            if block.body.get("sensitive") is True:
                sensitive.add(name)
            declared = block.body.get("type")
            if isinstance(declared, str) and declared.replace(" ", "").startswith("${set("):
                sets.add(name)
        self.variables.update(inputs)
        # Terraform converts a value to the variable's declared type: a list
        # given to a set(...) variable is a set (what for_each needs).
        for name in sets:
            if isinstance(self.variables.get(name), list):
                self.variables[name] = to_set(self.variables[name])
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
        if kind != "local":
            return UNKNOWN  # count / each: only inside an expanded block
        if name in self._locals:
            return self._locals[name]
        if name not in self._raw_locals or name in self._resolving:
            return UNKNOWN  # undefined or a cycle: Terraform would reject it; not our call
        if len(self._resolving) >= MAX_LOCALS_CHAIN:
            return UNKNOWN
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
    uncertain: set[str] = field(default_factory=set)
    absent: list[str] = field(default_factory=list)
    unknown_instances: list[str] = field(default_factory=list)
    total: int = 0
    unknown: int = 0
    module_instances: int = 0
    cache: dict[Path, ModuleFiles] = field(default_factory=dict)

    def module(self, directory: Path) -> ModuleFiles:
        key = directory.resolve()
        if key not in self.cache:
            self.cache[key] = read_module(directory)
        return self.cache[key]

    def visit(
        self,
        directory: Path,
        prefix: str,
        inputs: Mapping[str, Any],
        depth: int,
        uncertain: bool = False,
    ) -> None:
        if depth > MAX_MODULE_DEPTH:
            self.notes.append(f"{prefix}: modules nested deeper than {MAX_MODULE_DEPTH}, not read")
            return
        self.module_instances += 1
        if self.module_instances > MAX_MODULE_INSTANCES:
            raise InputError(
                f"{directory}: more than {MAX_MODULE_INSTANCES} module instances; "
                "check the plan with guard tf-plan"
            )
        module = self.module(directory)
        scope = _Scope(module, inputs)
        for block in module.of_kind("resource"):
            if len(block.labels) == 2:
                with _located(block):
                    self._resource(block, prefix, scope.lookup, uncertain)
        for block in module.of_kind("data"):
            if len(block.labels) == 2:
                address = f"{prefix}data.{block.labels[0]}.{block.labels[1]}"
                self.locations[config_address(address)] = (str(block.file), block.line)
        for block in module.of_kind("module"):
            if block.labels:
                with _located(block):
                    self._module_call(block, directory, prefix, scope.lookup, depth, uncertain)

    def _module_call(
        self,
        block: Block,
        directory: Path,
        prefix: str,
        lookup: Lookup,
        depth: int,
        uncertain: bool,
    ) -> None:
        address = f"{prefix}module.{block.labels[0]}"
        self.locations[config_address(address)] = (str(block.file), block.line)
        source = resolve(block.body.get("source"), lookup)
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            self.notes.append(
                f"{address}: source {source if isinstance(source, str) else '?'} is not a "
                "local folder; its resources are checked only in a plan"
            )
            return
        expansion = expansion_of(block.body, lookup, f"{block.file}:{block.line}: {address}")
        for instance, instance_lookup, unknown in self._instances(address, expansion, lookup):
            child_inputs = {
                k: resolve(v, instance_lookup)
                for k, v in block.body.items()
                if not k.startswith("__")
                and k not in META_ARGUMENTS
                and k not in ("source", "version", "providers")
            }
            self.visit(
                directory / source, f"{instance}.", child_inputs, depth + 1, uncertain or unknown
            )

    def _instances(
        self, address: str, expansion: Expansion, lookup: Lookup
    ) -> Iterator[tuple[str, Lookup, bool]]:
        """Each instance's address and lookup, and whether its existence is unknown."""
        if expansion.instances is None:
            self.unknown_instances.append(address)
            yield address, lookup, True
            return
        if not expansion.instances:
            self.absent.append(address)
        for key, value in expansion.instances:
            suffix = "" if key is None else instance_key(key)
            yield address + suffix, expansion.lookup(key, value, lookup), False

    def _resource(self, block: Block, prefix: str, lookup: Lookup, uncertain: bool) -> None:
        resource_type, name = block.labels
        address = f"{prefix}{resource_type}.{name}"
        self.locations[config_address(address)] = (str(block.file), block.line)
        expansion = expansion_of(block.body, lookup, f"{block.file}:{block.line}: {address}")
        for instance, instance_lookup, unknown in self._instances(address, expansion, lookup):
            self._subject(block, instance, instance_lookup, uncertain or unknown)

    def _subject(self, block: Block, address: str, lookup: Lookup, uncertain: bool) -> None:
        if len(self.subjects) >= MAX_SUBJECTS:
            raise InputError(
                f"{block.file}:{block.line}: more than {MAX_SUBJECTS} resource instances; "
                "check the plan with guard tf-plan"
            )
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
        if uncertain:
            self.uncertain.add(address)
        resource_type, name = block.labels
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
                change_actions=("create",),
            )
        )

    def expansion_notes(self) -> list[str]:
        notes: list[str] = []
        if self.absent:
            notes.append(
                f"{_listed(self.absent)}: no instances (count = 0 or an empty for_each), "
                "so not judged: Terraform would create nothing"
            )
        if self.unknown_instances:
            notes.append(
                f"{_listed(self.unknown_instances)}: count / for_each cannot be known without "
                "a plan; judged once, and a failure there is unknown"
            )
        return notes


def _listed(addresses: list[str], limit: int = 5) -> str:
    shown = ", ".join(addresses[:limit])
    more = len(addresses) - limit
    return f"{shown} and {more} more" if more > 0 else shown


@contextmanager
def _located(block: Block) -> Iterator[None]:
    """Turns a limit hit while reading one block into an input error at that block."""
    try:
        yield
    except LimitError as exc:
        raise InputError(f"{block.file}:{block.line}: {exc}") from None


def read_config(root: Path) -> ConfigResult:
    """Every resource instance of the configuration in ``root`` and its local modules."""
    reader = _Reader(root)
    reader.visit(root, "", _tfvars(root), 0)
    if not reader.cache.get(root.resolve(), ModuleFiles(root)).blocks:
        raise InputError(f"{root}: no .tf files with blocks found")
    return ConfigResult(
        subjects=tuple(reader.subjects),
        total_attributes=reader.total,
        unknown_attributes=reader.unknown,
        notes=(*reader.notes, *reader.expansion_notes()),
        locations=dict(reader.locations),
        uncertain=frozenset(reader.uncertain),
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


def config_input(directory: Path) -> TerraformInput:
    """The ``.tf`` files of a folder, before a plan exists."""
    config = read_config(directory)
    share = config.unknown_share
    return TerraformInput(
        source=str(directory),
        subjects=config.subjects,
        resource_count=len(config.subjects),
        unknown_values=config.unknown_attributes,
        notes=(
            f"{config.unknown_attributes} of {config.total_attributes} attributes "
            f"({share:.0%}) could not be resolved without a plan and are unknown",
            "review requirements apply to plans (guard tf-plan), not to configuration",
            *config.notes,
        ),
        resources=config.subjects,
        settle=config.settle,
    )
