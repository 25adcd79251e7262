"""The CEL environment shared by Kubernetes and Terraform rules.

The CEL library is ``cel-expr-python``, Google's cel-cpp behind Python
bindings (chosen by measurement: docs/performance.md, "The CEL library").
This module declares the helpers policy authors know from Kubernetes
ValidatingAdmissionPolicy, compiles each expression once with the type
checker (syntax errors, undefined variables, unknown functions and type
errors the checker can prove are refused at load), and evaluates it over an
activation, which converts each of a subject's variables when a rule first
reads it. Nothing else in guard touches the library.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cel_expr_python import cel

from controller import strict
from controller.errors import InputError
from controller.policy._readpaths import blank_strings
from controller.policy.documents import Target

# Parameters of guard's helpers: any CEL value. (A ``dyn`` parameter
# matches no argument at run time in this library; ``google.protobuf.Any``
# is its "any kind" and matches every one.)
_ANY = cel.Type("google.protobuf.Any")

# Variables a rule may read, by target (DESIGN.md, "CEL").
VARIABLES: Mapping[Target, frozenset[str]] = {
    Target.kubernetes: frozenset(
        {"object", "oldObject", "resource", "request", "podSpec", "containers"}
    ),
    Target.terraform: frozenset({"object", "oldObject", "after", "before", "resource"}),
}

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


def _glob(text: str, pattern: str | list[str]) -> bool:
    """``glob(s, pattern)``: shell-style, case-sensitive (``fnmatch.fnmatchcase``);
    ``glob(s, [pattern, ...])``: whether any of the patterns matches.

    Called once per element from inside CEL comprehensions, so each pattern's
    compiled form is kept; a pattern without wildcards is a comparison. A list
    of patterns is one call from CEL where ``patterns.exists(p, glob(s, p))``
    is one per pattern, and each call into Python costs more than matching.
    """
    if not isinstance(text, str):
        raise ValueError(f"glob matches a string, not {type(text).__name__}")
    patterns = pattern if isinstance(pattern, list) else [pattern]
    for one in patterns:
        if not isinstance(one, str):
            raise ValueError(f"a glob pattern is a string, not {type(one).__name__}")
    return any(_glob_test(one)(text) for one in patterns)


def _glob_test(pattern: str) -> Callable[[str], Any]:
    test = _GLOBS.get(pattern)
    if test is None:
        if any(c in pattern for c in "*?["):
            test = re.compile(fnmatch.translate(pattern)).match
        else:
            test = pattern.__eq__
        if len(_GLOBS) >= _GLOBS_MAX:
            _GLOBS.clear()
        _GLOBS[pattern] = test
    return test


# Terraform plans carry IAM policies, bucket policies and container definitions
# as JSON strings; a document larger or deeper than this is refused rather
# than parsed (deeper values than a plan's own are never needed, and CEL's
# runtime walks values recursively).
_JSON_MAX_CHARS = 1_000_000
_JSON_LIMITS = strict.Limits(max_depth=100)


def _json_decode(text: str) -> Any:
    """``jsonDecode(s)``: a JSON string (such as a plan's IAM ``policy``) as a value.

    Read as strictly as guard reads plans: invalid JSON, a duplicate key (AWS
    and JSON parsers disagree on which copy counts) or a non-finite number
    raises, so the rule errors (never a pass); a placeholder for an unknown
    value is not JSON either, so a rule over it becomes unknown.
    """
    if not isinstance(text, str):
        raise ValueError(f"jsonDecode needs a string, not {type(text).__name__}")
    if len(text) > _JSON_MAX_CHARS:
        raise ValueError(f"jsonDecode refuses a document over {_JSON_MAX_CHARS} characters")
    return strict.loads(text, _JSON_LIMITS)


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


class CelCompileError(InputError, ValueError):
    """An expression that cannot be used, with the reason."""


class CelEvaluationError(InputError, RuntimeError):
    """An expression that could not be evaluated on these values, with the reason."""


def _helper(name: str) -> Callable[..., Any]:
    """Helper ``name`` as CEL calls it: looked up in ``HELPERS`` at each
    call (the one table of helpers), and a failure names the helper (the
    library reports only the exception's text)."""

    def call(*args: Any) -> Any:
        try:
            return HELPERS[name](*args)
        except Exception as exc:
            text = str(exc)
            raise ValueError(text if text.startswith(name) else f"{name}: {text}") from None

    return call


def _declarations() -> list[Any]:
    """Every helper, callable both as ``name(x, ...)`` and as ``x.name(...)``,
    once per number of arguments it takes."""
    declarations = []
    for name, function in HELPERS.items():
        parameters = list(inspect.signature(function).parameters.values())
        required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
        impl = _helper(name)
        overloads = [
            cel.Overload(
                id=f"guard_{name}_{style}_{arity}",
                return_type=cel.Type.DYN,
                parameters=[_ANY] * arity,
                is_member=style == "member",
                impl=impl,
            )
            for arity in range(required, len(parameters) + 1)
            for style in ("global", "member")
        ]
        declarations.append(cel.FunctionDecl(name, overloads))
    return declarations


_DECLARATIONS = _declarations()
# One environment per target: the variables its rules may read, all dynamic
# (objects are whatever the API server or the plan holds), and the helpers.
_ENVIRONMENTS = {
    target: cel.NewEnv(
        variables={name: cel.Type.DYN for name in sorted(names)}, functions=_DECLARATIONS
    )
    for target, names in VARIABLES.items()
}
# Activations hold only values; any environment builds them.
_ACTIVATIONS = _ENVIRONMENTS[Target.kubernetes]
_ERROR = cel.Type.ERROR


@dataclass(frozen=True)
class Compiled:
    """One checked expression, with the variables its text names
    (over-approximated: a comprehension's own name that shadows a variable
    counts as reading it, which only converts or probes more)."""

    source: str
    expression: Any  # the library's checked Expression
    variables: frozenset[str]

    def run(self, context: Any) -> Any:
        """The expression's value on ``context`` (``new_context``), as a
        Python value; ``CelEvaluationError`` when CEL reports an error."""
        try:
            value = self.expression.eval(context)
        except Exception as exc:  # such as a helper's value CEL cannot hold: never a pass
            raise CelEvaluationError(_evaluation_message(str(exc))) from None
        # Most results are booleans: ``value()`` alone tells them apart (an
        # error's ``value()`` is its text), and costs a third of ``type()``.
        result = value.value()
        if result is True or result is False:
            return result
        if value.type() == _ERROR:
            raise CelEvaluationError(_evaluation_message(str(result)))
        return value.plain_value()


# ``NOT_FOUND: ...`` (a status code first) and `` [INVALID_ARGUMENT]`` after.
_STATUS_RE = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$")
_MESSAGES = (
    (re.compile(r"^Key not found in map : "), "no such key "),
    (re.compile(r"^Applying SELECT to non-message type"), "selecting a field of a value that is not a map"),
    (re.compile(r"^Non-CEL value type for 'Python function '<function (?:_helper\.<locals>\.)?(\w+)[^']*''(?:\[\d+\])?: "),
     "a helper returned a value CEL cannot hold: "),
)  # fmt: skip


def _evaluation_message(text: str) -> str:
    text = _STATUS_RE.sub("", text.strip().splitlines()[0] if text.strip() else "")
    for pattern, replacement in _MESSAGES:
        text = pattern.sub(replacement, text, count=1)
    return text or "evaluation error"


# ``ERROR: <input>:LINE:COLUMN: message`` at the start of a line, one per
# problem the library found; the lines between echo the source, which may
# itself hold such text.
_PROBLEM_RE = re.compile(r"^ERROR: <input>:(-?\d+):(-?\d+): ([^\n]*)", re.MULTILINE)
_UNDECLARED_RE = re.compile(r"^undeclared reference to '([^']+)'")


def _compile_problem(message: str, source: str, target: Target) -> str:
    """The library's report on ``source`` as one line: undefined variables
    and unknown functions by name, else the first problem with its place."""
    problems = [
        (int(line), int(column), _STATUS_RE.sub("", text))
        for line, column, text in _PROBLEM_RE.findall(_STATUS_RE.sub("", message.strip()))
    ]
    if not problems:
        first = _STATUS_RE.sub("", message.strip().splitlines()[0] if message.strip() else "")
        return first or "the expression does not compile"
    variables: list[str] = []
    functions: list[str] = []
    lines = source.split("\n")
    for line, column, text in problems:
        undeclared = _UNDECLARED_RE.match(text)
        if undeclared is None:
            continue
        name = undeclared.group(1)
        before, at = "", ""
        if 0 < line <= len(lines) and column > 0:
            before, at = lines[line - 1][: column - 1], lines[line - 1][column - 1 : column]
        # The library points at a call's parenthesis, right after the name.
        if at == "(" and before.rstrip().endswith(name.rsplit(".", 1)[-1]):
            functions.append(name)
        else:
            variables.append(name.split(".", 1)[0])
    parts = []
    if variables:
        parts.append(
            f"undefined variable(s) {', '.join(sorted(set(variables)))}; "
            f"{target.value} rules can read {', '.join(sorted(VARIABLES[target]))}"
        )
    if functions:
        parts.append(f"unknown function(s) {', '.join(sorted(set(functions)))}")
    if parts:
        return "; ".join(parts)
    line, column, text = problems[0]
    # The library gives no place (-1) for limits on the whole expression.
    at = f" at {line}:{column}" if line > 0 and column > 0 else ""
    if text.startswith("Syntax error: "):
        return f"syntax error{at}: {text.removeprefix('Syntax error: ')}"
    if text.startswith(("unsupported syntax", "Exceeded max recursion depth")):
        return f"syntax error{at}: {text}"
    return f"type error{at}: {text}"


def compile_expression(source: str, target: Target) -> Compiled:
    """Compile and check one expression; raise ``CelCompileError`` with the reason."""
    try:
        expression = _ENVIRONMENTS[target].compile(source)
    except (ValueError, RuntimeError) as exc:
        raise CelCompileError(_compile_problem(str(exc), source, target)) from None
    blank = blank_strings(source)
    quoted = _QUOTED_NAME_RE.search(blank)
    if quoted is not None:
        # The read-path analysis knows fields by their plain names only.
        raise CelCompileError(
            f"write [{quoted.group(1)!r}], not .{quoted.group(0)}: "
            "backtick-quoted names are not supported"
        )
    leading = _LEADING_DOT_RE.search(blank)
    if leading is not None:
        # ``.after`` is ``after`` to CEL, but guard's read-path analysis (what
        # is converted, trimmed and probed for unknowns) reads it as a field.
        name = leading.group(1)
        raise CelCompileError(f"write {name}, not .{name}: a leading dot is not supported")
    return Compiled(
        source=source, expression=expression, variables=_names_read(blank, VARIABLES[target])
    )


# An identifier, with the ``.`` that makes it a field or method before it
# and the ``(`` that makes it a call after it.
_NAME_USE_RE = re.compile(r"(\.\s*)?(?<!\w)([A-Za-z_]\w*)(\s*\()?")
# A name with a dot before it and no operand before the dot (``.after``):
# the dot follows nothing, an operator (``in`` among them), or an opening
# bracket.
_LEADING_DOT_RE = re.compile(r"(?:^|[^\w\s)\]}'\"]|\bin)\s*\.\s*([A-Za-z_]\w*)")
_QUOTED_NAME_RE = re.compile(r"`([^`\n]*)`")


def _names_read(blank: str, names: frozenset[str]) -> frozenset[str]:
    """The variables among ``names`` that the source (strings and comments
    blanked) names, other than as a field (``x.object``) or a call."""
    return frozenset(
        match.group(2)
        for match in _NAME_USE_RE.finditer(blank)
        if match.group(2) in names and not match.group(1) and not match.group(3)
    )


def new_context(variables: Mapping[str, Any]) -> Any:
    """The values of one subject's variables, for every rule that judges it.

    The library converts a variable, whole, when an expression first reads
    it, and keeps it for the others: building this is cheap, and what no
    rule reads is never converted. Its runtime walks values recursively, so
    they must come bounded in depth, as every reader of guard bounds them
    (admission requests, plans, test cases, ``jsonDecode``): a value nested
    several thousand levels deep would crash the process, not fail a rule.
    """
    return _ACTIVATIONS.Activation(variables)
