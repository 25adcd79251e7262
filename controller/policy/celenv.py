"""The CEL environment shared by Kubernetes and Terraform rules.

The CEL library (``common-expression-language``, Rust-backed) has no type
checker and lacks helpers policy authors know from Kubernetes
ValidatingAdmissionPolicy. This module registers those helpers, compiles
expressions once, and lints them statically: syntax errors, undefined
variables and unknown functions are caught at load; type errors surface when
each rule runs on its test cases (see ``controller.policy.testing``).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.machinery
import importlib.util
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

from controller.errors import InputError
from controller.policy.documents import Target


def _load_cel() -> ModuleType:
    """The CEL library's compiled module, without its package's command line.

    ``import cel`` runs the package's ``__init__``, which imports the
    library's interactive shell (typer, rich, prompt_toolkit): about a fifth
    of a second added to every ``guard`` command for nothing guard uses. The
    compiled extension ``cel.cel`` is the whole library; it is loaded by
    itself and registered under its own name, so a later ``import cel``
    (by a user's code in the same process) reuses it instead of
    initialising the extension a second time, which it refuses.
    """
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the CEL library (common-expression-language) is not installed")
    spec = importlib.machinery.PathFinder.find_spec("cel", package.submodule_search_locations)
    if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
        raise ImportError("the CEL library's compiled module (cel.cel) is missing")
    # The extension's init function is named after the last part of the name.
    spec = importlib.util.spec_from_file_location("cel.cel", spec.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cel.cel"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["cel.cel"]
        raise
    return module


cel = _load_cel()

# The library logs every failed helper call; those failures already come back
# as rule errors (or unknowns), so the log lines would only be noise.
logging.getLogger("cel").setLevel(logging.CRITICAL)

# Variables a rule may read, by target (DESIGN.md, "CEL").
VARIABLES: Mapping[Target, frozenset[str]] = {
    Target.kubernetes: frozenset(
        {"object", "oldObject", "resource", "request", "podSpec", "containers"}
    ),
    Target.terraform: frozenset({"object", "oldObject", "after", "before", "resource"}),
}

# CEL's standard functions and macros as the library names them.
BUILTIN_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "has", "all", "exists",
        "exists_one", "map", "filter", "int", "uint", "double", "string", "bytes", "bool",
        "timestamp", "duration", "type", "dyn", "max", "min",
        "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear",
        "getHours", "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
    }
)  # fmt: skip

_QUANTITY_RE = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)([a-zA-Z]*|[eE][+-]?[0-9]+)?$")
_QUANTITY_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}  # fmt: skip


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity (``500m``, ``1Gi``, ``2e3``) as a number."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    parsed = _quantity_of_text(str(value).strip())
    if isinstance(parsed, float):
        return parsed
    if parsed is None:
        raise ValueError(f"not a quantity: {value!r}")
    raise ValueError(f"unknown quantity suffix {parsed!r} in {value!r}")


# Helpers run once per element inside comprehensions, on values that repeat
# across a cluster's workloads and a plan's resources ("500m", "10.0.0.0/8"):
# their parsed forms are remembered (immutable values).
_PARSED_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _quantity_of_text(text: str) -> float | str | None:
    """The quantity ``text`` writes; else the suffix it does not know, or
    None when it is not a quantity at all (the caller names the value)."""
    match = _QUANTITY_RE.match(text)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return float(Decimal(number + suffix))
        if suffix not in _QUANTITY_SUFFIX:
            return suffix
        return float(Decimal(number) * _QUANTITY_SUFFIX[suffix])
    except InvalidOperation:
        return None


def _is_quantity(value: Any) -> bool:
    try:
        parse_quantity(value)
    except ValueError:
        return False
    return True


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return _network_of_text(str(value).strip())


@functools.lru_cache(maxsize=_PARSED_CACHE_SIZE)
def _network_of_text(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _is_cidr(value: Any) -> bool:
    try:
        _network(value)
    except ValueError:
        return False
    return "/" in str(value)


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def _cidr_contains(cidr: str, other: str) -> bool:
    outer = _network(cidr)
    inner = _network(other)
    return outer.version == inner.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _cidr_is_public_any(cidr: str) -> bool:
    """True for a CIDR that opens to the whole internet (0.0.0.0/0, ::/0)."""
    return _network(cidr).prefixlen == 0


def _lookup(value: Any, path: str, default: Any) -> Any:
    """``lookup(obj, "a.b.0.c", default)``: a nested read that never errors.

    Stands in for CEL's optional syntax (``obj.?a.?b``), which the library
    does not parse.
    """
    current = value
    for part in str(path).split("."):
        # The library hands maps over as dicts; the ABC check is the slow path.
        if (type(current) is dict or isinstance(current, Mapping)) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return default
        if current is None:
            return default
    return current


def _image_has_digest(image: str) -> bool:
    _, _, digest = str(image).partition("@")
    return bool(re.fullmatch(r"sha256:[0-9a-f]{64}", digest))


def _image_registry(image: str) -> str:
    """The registry host of an image reference, as the container runtime reads it."""
    name = str(image).split("@", 1)[0]
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _image_repository(image: str) -> str:
    """``registry/path`` without tag or digest, with Docker Hub's implicit parts."""
    name = str(image).split("@", 1)[0]
    last_slash = name.rfind("/")
    if name.rfind(":") > last_slash:
        name = name[: name.rfind(":")]
    registry = _image_registry(image)
    if registry == "docker.io" and not name.startswith("docker.io/"):
        path = name if "/" in name else f"library/{name}"
        return f"docker.io/{path}"
    return name


def _split(text: str, separator: str, limit: int = -1) -> list[str]:
    if int(limit) == 0:
        return []
    if int(limit) < 0:
        return str(text).split(str(separator))
    return str(text).split(str(separator), int(limit) - 1)


def _index_of(text: str, sub: str) -> int:
    return str(text).find(str(sub))


def _last_index_of(text: str, sub: str) -> int:
    return str(text).rfind(str(sub))


def _join(items: list[Any], separator: str = "") -> str:
    return str(separator).join(str(i) for i in items)


# Compiled glob patterns (a policy's lists are few and fixed; the bound keeps
# patterns that come from the judged objects themselves from growing it).
_GLOBS: dict[str, Callable[[str], Any]] = {}
_GLOBS_MAX = 4096


def _glob(text: str, pattern: str) -> bool:
    """``glob(s, pattern)``: shell-style, case-sensitive (``fnmatch.fnmatchcase``).

    Called once per element from inside CEL comprehensions, so the pattern's
    compiled form is kept; a pattern without wildcards is a comparison.
    """
    pattern = str(pattern)
    test = _GLOBS.get(pattern)
    if test is None:
        if any(c in pattern for c in "*?["):
            test = re.compile(fnmatch.translate(pattern)).match
        else:
            test = pattern.__eq__
        if len(_GLOBS) >= _GLOBS_MAX:
            _GLOBS.clear()
        _GLOBS[pattern] = test
    return bool(test(str(text)))


# Terraform plans carry IAM policies, bucket policies and container definitions
# as JSON strings; a document larger than this is refused rather than parsed.
_JSON_MAX_CHARS = 1_000_000


def _json_decode(text: str) -> Any:
    """``jsonDecode(s)``: a JSON string (such as a plan's IAM ``policy``) as a value.

    Invalid JSON raises, so the rule errors (never a pass); a placeholder for
    an unknown value is not JSON either, so a rule over it becomes unknown.
    """
    if not isinstance(text, str):
        raise ValueError(f"jsonDecode needs a string, not {type(text).__name__}")
    if len(text) > _JSON_MAX_CHARS:
        raise ValueError(f"jsonDecode refuses a document over {_JSON_MAX_CHARS} characters")
    return json.loads(text)


def _compare_quantity(a: Any, b: Any) -> int:
    left, right = parse_quantity(a), parse_quantity(b)
    return (left > right) - (left < right)


# Registered helpers, by name. Each is tested in tests/policy/test_celenv.py.
HELPERS: Mapping[str, Callable[..., Any]] = {
    # strings (Kubernetes CEL string library)
    "lowerAscii": lambda s: str(s).lower(),
    "upperAscii": lambda s: str(s).upper(),
    "trim": lambda s: str(s).strip(),
    "split": _split,
    "join": _join,
    "replace": lambda s, old, new: str(s).replace(str(old), str(new)),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "glob": _glob,
    # quantities (Kubernetes CEL quantity library, as plain numbers)
    "quantity": parse_quantity,
    "isQuantity": _is_quantity,
    "asApproximateFloat": parse_quantity,
    "compareQuantity": _compare_quantity,
    "isGreaterThan": lambda a, b: _compare_quantity(a, b) > 0,
    "isLessThan": lambda a, b: _compare_quantity(a, b) < 0,
    # networks (Kubernetes CEL IP/CIDR library, simplified)
    "isIP": _is_ip,
    "isCIDR": _is_cidr,
    "cidrContains": _cidr_contains,
    "cidrIsAny": _cidr_is_public_any,
    # images
    "imageHasDigest": _image_has_digest,
    "imageRegistry": _image_registry,
    "imageRepository": _image_repository,
    # structure
    "lookup": _lookup,
    "jsonDecode": _json_decode,
}

# CEL type names, usable as values (``type(x) == list``); the library reports
# them as variables.
TYPE_NAMES = frozenset(
    {"bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type"}
)

# Names comprehension macros bind (``c`` in ``containers.all(c, ...)``), which
# the library reports as variables.
_BOUND_RE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class CelCompileError(InputError, ValueError):
    """An expression that cannot be used, with the reason."""


@dataclass(frozen=True)
class Compiled:
    source: str
    program: Any  # cel.Program

    def run(self, context: Any) -> Any:
        return self.program.execute(context)


def compile_expression(source: str, target: Target) -> Compiled:
    """Compile and lint one expression; raise ``CelCompileError`` with the reason."""
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        message = str(exc).replace("Failed to parse expression", "syntax error in")
        # The library draws a caret under the source on extra lines; the
        # position is already in the first line, and errors are one line.
        first = message.strip().splitlines()[0] if message.strip() else "syntax error"
        raise CelCompileError(first) from None
    bound = set(_BOUND_RE.findall(source))
    allowed = VARIABLES[target]
    unknown_vars = sorted(set(program.variables()) - allowed - bound - set(HELPERS) - TYPE_NAMES)
    if unknown_vars:
        raise CelCompileError(
            f"undefined variable(s) {', '.join(unknown_vars)}; "
            f"{target.value} rules can read {', '.join(sorted(allowed))}"
        )
    unknown_functions = sorted(
        name
        for name in program.functions()
        if not name.startswith(("_", "@", "!"))
        and name not in BUILTIN_FUNCTIONS
        and name not in HELPERS
    )
    if unknown_functions:
        raise CelCompileError(f"unknown function(s) {', '.join(unknown_functions)}")
    return Compiled(source=source, program=program)


def helpers_used(program: Any) -> frozenset[str]:
    """The registered helpers a compiled expression calls."""
    return frozenset(name for name in program.functions() if name in HELPERS)


def new_context(variables: Mapping[str, Any], helpers: Iterable[str] | None = None) -> Any:
    """A context with the given variables and helpers (all of them by default),
    built once per subject.

    Registering a helper costs about as much as converting a small value, so
    the engine names only the helpers its rules call.
    """
    context = cel.Context()
    for name in HELPERS if helpers is None else helpers:
        context.add_function(name, HELPERS[name])
    for name, value in variables.items():
        context.add_variable(name, value)
    return context
