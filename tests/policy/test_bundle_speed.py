"""Structural properties that keep the default bundle fast; nothing here is timed.

The CEL library converts every argument of a helper call into Python values,
whole, on each call: ``lookup(c, 'image', '')`` on a container costs about
30 times ``has(c.image) && c.image != ''``. And the engine converts only the
top-level fields of ``object``/``after`` that rules name, and probes unknown
Terraform values only for rules that name them, unless a rule reads the
object whole (``lookup(after, f, ...)`` with a variable ``f``, ``size(after)``).
These checks read the bundle's rule sources and compiled rules so that a
change which brings the slow forms back fails here, not in a benchmark
(docs/policies.md, "Writing fast rules", has the numbers).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.policy._readpaths import TRIMMED_VARIABLES
from controller.policy.celenv import HELPERS
from controller.policy.documents import GuardPolicy, Target
from controller.policy.engine import Engine, compile_policy
from controller.policy.loader import load_bundle
from controller.policy.results import Subject

POLICIES = Path(__file__).resolve().parents[2] / "policies"

# Variables that hold a whole object or a whole pod spec. A helper given one
# of them (or one container of ``containers``) copies all of it per call.
WHOLE_VARIABLES = frozenset({"object", "oldObject", "after", "before", "podSpec", "containers"})

# Helper calls that may take a whole object or container anyway, as
# (policy, rule, field, argument). Each entry needs its reason.
ALLOWED_WHOLE_ARGUMENTS: dict[tuple[str, str, str, str], str] = {
    # The pod template's labels sit four or five levels deep and any level
    # may be absent. A has() chain copies spec again at every level and
    # costs more than one lookup; the paths are literals, so the engine still
    # converts only the fields the rule names.
    ("require-owner", "owner-label", "expression", "object"): "deep optional path",
}

_MACRO_RE = re.compile(r"\.\s*(all|exists_one|exists|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_NAME_PATH_RE = re.compile(r"[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class HelperUse:
    """One argument of one helper call that is a whole object or container."""

    policy: str
    rule: str
    field: str
    helper: str
    argument: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.policy, self.rule, self.field, self.argument)


_STRING_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _blank_strings(source: str) -> str:
    """The source with string literals blanked, so brackets and commas in
    them do not count (the positions of everything else are kept)."""
    chars = list(source)
    for literal in _STRING_RE.finditer(source):
        for index in range(literal.start() + 1, literal.end() - 1):
            chars[index] = " "
    return "".join(chars)


def _closing(code: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(code)):
        if code[index] in "([{":
            depth += 1
        elif code[index] in ")]}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced brackets after position {opening}")


def _opening(code: str, closing: int) -> int:
    depth = 0
    for index in range(closing, -1, -1):
        if code[index] in ")]}":
            depth += 1
        elif code[index] in "([{":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced brackets before position {closing}")


def _arguments(code: str, opening: int) -> list[str]:
    """The top-level arguments of the call whose ``(`` is at ``opening``."""
    closing = _closing(code, opening)
    arguments: list[str] = []
    depth, start = 0, opening + 1
    for index in range(opening + 1, closing):
        if code[index] in "([{":
            depth += 1
        elif code[index] in ")]}":
            depth -= 1
        elif code[index] == "," and depth == 0:
            arguments.append(code[start:index].strip())
            start = index + 1
    arguments.append(code[start:closing].strip())
    return arguments


def _receiver_span(code: str, dot: int) -> tuple[int, int]:
    """Where the expression a ``.name(`` call or macro is applied to lies,
    ending at ``dot``: a name path, or a bracketed expression and the name
    path before it."""
    end = dot
    while end > 0 and code[end - 1].isspace():
        end -= 1
    if end > 0 and code[end - 1] in ")]":
        start = _opening(code, end - 1)
        path = _NAME_PATH_RE.search(code[:start])
        return (path.start() if path else start), end
    path = _NAME_PATH_RE.search(code[:end])
    return (path.start(), end) if path else (end, end)


def container_variables(source: str) -> set[str]:
    """Names that comprehension macros bind to the items of a container list.

    The range of ``xs.map(c, f(c))`` holds ``f(c)``, not containers, so a
    macro over the result of ``map`` binds no container.
    """
    code = _blank_strings(source)
    names: set[str] = set()
    for match in _MACRO_RE.finditer(code):
        start, end = _receiver_span(code, match.start())
        over = code[start:end]
        maps = list(re.finditer(r"\.\s*map\s*\(", over))
        if maps and _closing(over, maps[-1].end() - 1) == len(over) - 1:
            continue
        # The original text, so that lookup(podSpec, 'containers', []) counts.
        if "ontainers" in source[start:end]:
            names.add(match.group(2))
    return names


def whole_arguments(source: str) -> Iterator[tuple[str, str]]:
    """(helper, argument) for each helper argument that is a whole object or
    container: ``lookup(c, ...)``, ``imageRegistry(after)``, ``after.join()``."""
    code = _blank_strings(source)
    whole = WHOLE_VARIABLES | container_variables(source)
    names = "|".join(sorted(HELPERS, key=len, reverse=True))
    for match in re.finditer(rf"(?<![\w.])({names})\s*\(", code):
        for argument in _arguments(code, match.end() - 1):
            if argument in whole:
                yield match.group(1), argument
    for match in re.finditer(rf"\.\s*({names})\s*\(", code):
        start, end = _receiver_span(code, match.start())
        if code[start:end] in whole:
            yield match.group(1), code[start:end]


def helper_uses(policies: list[GuardPolicy]) -> list[HelperUse]:
    uses: list[HelperUse] = []
    for policy in policies:
        for rule in policy.spec.rules:
            fields = {"expression": rule.expression, "messageExpression": rule.message_expression}
            for field, source in fields.items():
                for helper, argument in whole_arguments(source or ""):
                    uses.append(HelperUse(policy.name, rule.name, field, helper, argument))
    return uses


@pytest.fixture(scope="module")
def bundled() -> list[GuardPolicy]:
    policies = list(load_bundle(POLICIES).policies)
    assert len(policies) >= 10, "the default bundle should be found"
    return policies


def test_no_helper_is_given_a_whole_object_or_container(bundled: list[GuardPolicy]) -> None:
    slow = [
        f"{u.policy}/{u.rule} {u.field}: {u.helper}({u.argument}, ...)"
        for u in helper_uses(bundled)
        if u.key not in ALLOWED_WHOLE_ARGUMENTS
    ]
    assert slow == [], (
        "read fields with has() and field access, or pass the helper the smallest map "
        "that holds the path (docs/policies.md, 'Writing fast rules')"
    )


def test_every_allowed_whole_argument_is_still_used(bundled: list[GuardPolicy]) -> None:
    used = {u.key for u in helper_uses(bundled)}
    assert set(ALLOWED_WHOLE_ARGUMENTS) <= used, (
        "remove allow-list entries the bundle no longer needs"
    )


def test_no_rule_reads_the_whole_object(bundled: list[GuardPolicy]) -> None:
    """Every rule and message reads the object through field paths, so the
    engine converts only those paths into CEL values."""
    whole = [
        f"{compiled.name}/{rule.rule.name} {name}"
        for compiled in map(compile_policy, bundled)
        for rule in compiled.rules
        for name, paths in rule.reads.paths.items()
        if paths is None and name in rule.variables and name in TRIMMED_VARIABLES
    ]
    whole += [
        f"{compiled.name}/{rule.rule.name} expression"
        for compiled in map(compile_policy, bundled)
        for rule in compiled.rules
        if rule.reads.reads_whole_object
    ]
    assert whole == [], "name the fields of object/after literally; see 'Writing fast rules'"


def test_terraform_comprehension_variables_cannot_be_attribute_names(
    bundled: list[GuardPolicy],
) -> None:
    """Terraform attributes are lower snake_case and longer than one letter;
    a variable named like one (``arn``) makes the engine probe the rule
    whenever that attribute is unknown, which ``arn`` and ``id`` almost
    always are."""
    clashing = [
        f"{policy.name}/{rule.name}: {name}"
        for policy in bundled
        for rule in policy.spec.rules
        if rule.target is Target.terraform
        for source in (rule.expression, rule.message_expression or "")
        for _, name in _MACRO_RE.findall(_blank_strings(source))
        if len(name) > 1 and name == name.lower()
    ]
    assert clashing == [], "use one letter or camelCase (policyArn) for comprehension variables"


def test_terraform_rules_are_not_probed_for_unknowns_they_do_not_read(
    bundled: list[GuardPolicy],
) -> None:
    """``id`` and ``arn`` are unknown in nearly every planned resource; a rule
    that does not read them must not be probed for them."""
    probed = [
        f"{compiled.name}/{rule.rule.name}"
        for compiled in map(compile_policy, bundled)
        for rule in compiled.rules
        if rule.rule.target is Target.terraform and rule.may_depend_on(("id", "arn"))
    ]
    assert probed == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("containers.all(c, lookup(c, 'image', '') != '')", [("lookup", "c")]),
        ("containers.all(c, imageHasDigest(lookup(c, 'image', '')))", [("lookup", "c")]),
        ("['a', 'b'].exists(f, lookup(after, f, '') == 'host')", [("lookup", "after")]),
        ("lookup(podSpec, 'volumes', []).all(v, !has(v.hostPath))", [("lookup", "podSpec")]),
        (
            "(podSpec.containers + podSpec.initContainers).all(c, lookup(c, 'a.b', '') != '')",
            [("lookup", "c")],
        ),
        ("containers.all(c, c.join(',') != '')", [("join", "c")]),
        ("containers.all(c, has(c.image) && imageHasDigest(c.image))", []),
        ("containers.all(c, has(c.s) && lookup(c.s, 'capabilities.add', []).size() > 0)", []),
        ("lookup(object, 'spec.template.metadata.labels.owner', '') != ''", [("lookup", "object")]),
        ("containers.map(c, c.image).filter(i, lookup(i, 'x', '') == '').size() == 0", []),
        ("podSpec.volumes.all(v, lookup(v, 'hostPath.path', '') == '')", []),
        (
            "(lookup(podSpec, 'containers', []) + []).all(c, lookup(c, 'a', '') != '')",
            [("lookup", "podSpec"), ("lookup", "c")],
        ),
        ("lookup(after, 'c, after', '') == ''", [("lookup", "after")]),
    ],
)
def test_the_check_finds_helpers_given_a_whole_object(
    source: str, expected: list[tuple[str, str]]
) -> None:
    assert list(whole_arguments(source)) == expected


def test_the_engine_flags_a_rule_that_reads_after_whole() -> None:
    """The property the bundle check relies on: a variable path turns it on."""
    policy = GuardPolicy.model_validate(
        {
            "apiVersion": "guard.dev/v1alpha1",
            "kind": "GuardPolicy",
            "metadata": {"name": "probe"},
            "spec": {
                "match": {"terraform": {"types": ["aws_*"]}},
                "rules": [
                    {
                        "name": "variable-path",
                        "target": "terraform",
                        "expression": "!['a', 'b'].exists(f, lookup(after, f, '') == 'host')",
                        "message": "m",
                    },
                    {
                        "name": "literal-fields",
                        "target": "terraform",
                        "expression": "!(has(after.a) && after.a == 'host')",
                        "message": "m",
                    },
                ],
            },
        }
    )
    variable_path, literal_fields = compile_policy(policy).rules
    assert variable_path.reads.reads_whole_object
    assert not literal_fields.reads.reads_whole_object


def test_the_registry_message_names_each_refused_image_and_works_out_its_registry_once(
    bundled: list[GuardPolicy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message of ``allowed-registries`` pairs each image with its
    registry once, not once per allowed pattern (ten times as many helper
    calls, each a round trip through Python)."""
    calls: list[str] = []
    registry_of = HELPERS["imageRegistry"]

    def counted(image: str) -> str:
        calls.append(image)
        return str(registry_of(image))

    monkeypatch.setitem(HELPERS, "imageRegistry", counted)  # type: ignore[arg-type]
    policy = next(p for p in bundled if p.name == "allowed-registries")
    images = ["ghcr.io/example/app", "redis:7", "registry.example.com/shop/app:1"]
    pod = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    subject = Subject(target=Target.kubernetes, address="Pod shop/p", kind="Pod", type="Pod",
                      name="p", namespace="shop", action="create",
                      object={"apiVersion": "v1", "kind": "Pod", "spec": pod})  # fmt: skip
    (finding,) = Engine([policy]).evaluate(subject).findings
    assert finding.message == (
        "image(s) from registries that are not allowed: redis:7 (docker.io), "
        "registry.example.com/shop/app:1 (registry.example.com)"
    )
    # The rule once per image, and the message once per image.
    assert sorted(calls) == sorted(images * 2)
