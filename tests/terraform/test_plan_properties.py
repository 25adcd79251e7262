"""Properties of plan reading over generated and mutated plan JSON.

1. Whatever the input, reading, judging and rendering a plan either works or
   stops with one ``InputError`` line: never another exception.
2. A mutation never turns a denial into an allow unless it removes the
   reason: it edits the resource change the denial is about, or removes that
   change from every view of the plan (``resource_changes``,
   ``planned_values``, ``configuration``). A duplicate key, a cut, an edit
   elsewhere leaves every other denial standing.
3. Duplicate keys and truncation are always input errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import InputError
from controller.policy.documents import Action
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from controller.policy.results import Decision
from controller.report import FORMAT_NAMES, ReportContext, render
from controller.terraform.addresses import config_address
from controller.terraform.normalize import normalize
from controller.terraform.planfile import check_format_version, parse_plan_json
from tests.terraform.conftest import PLANS

AWS_POLICIES = Path(__file__).parent / "aws-policies"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Path_ = tuple[str | int, ...]


@cache
def _engine() -> Engine:
    return Engine(load_bundle(AWS_POLICIES).policies, enforcement=Action.deny)


def _base() -> dict[str, Any]:
    """The failing AWS plan with every view filled in, as terraform writes them."""
    plan: dict[str, Any] = json.loads((PLANS / "aws-failing.json").read_text())
    changes = plan["resource_changes"]
    plan["planned_values"] = {
        "root_module": {
            "resources": [
                {"address": c["address"], "type": c["type"], "values": c["change"]["after"]}
                for c in changes
                if c["change"]["after"] is not None
            ]
        }
    }
    declared = sorted({config_address(c["address"]) for c in changes})
    plan["configuration"] = {
        "root_module": {
            "resources": [
                {
                    "address": a,
                    "mode": "managed",
                    "type": a.split(".")[-2],
                    "name": a.split(".")[-1],
                }
                for a in declared
                if not a.startswith("module.")
            ]
        }
    }
    return plan


BASE = _base()
BASE_TEXT = json.dumps(BASE)


def judge(data: bytes) -> Decision:
    """The whole pipeline of ``guard tf-plan`` on JSON bytes, reports included."""
    plan = parse_plan_json("plan.json", data)
    check_format_version("plan.json", plan)
    normalized = normalize(plan, "plan.json", "sha256:0")
    decision = _engine().decide(normalized.resources)
    context = ReportContext("guard tf-plan", "plan.json", subjects=normalized.resources)
    for name in FORMAT_NAMES:
        render(name, decision, context).encode("utf-8")  # writable as the CLI writes it
    return decision


def outcome(data: bytes) -> Decision | None:
    """The decision, or ``None`` for an input error of exactly one line."""
    try:
        return judge(data)
    except InputError as exc:
        message = str(exc)
        assert message.startswith("plan.json: "), message
        assert "\n" not in message and "\r" not in message, message
        return None


def _denials(decision: Decision) -> set[tuple[str, str]]:
    return {(f.policy, f.address) for f in decision.denials}


BASE_DENIALS = _denials(judge(BASE_TEXT.encode()))


def _entry_paths(plan: Any) -> dict[str, Path_]:
    changes = plan.get("resource_changes") if isinstance(plan, dict) else None
    if not isinstance(changes, list):
        return {}
    return {
        c["address"]: ("resource_changes", i)
        for i, c in enumerate(changes)
        if isinstance(c, dict) and isinstance(c.get("address"), str)
    }


BASE_ENTRIES = _entry_paths(BASE)


def _paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _paths(item, (*prefix, position))


def _at(value: Any, path: Path_) -> Any:
    for step in path:
        value = value[step]
    return value


ALL_PATHS = list(_paths(BASE))
OBJECT_PATHS = [p for p in ALL_PATHS if isinstance(_at(BASE, p), dict) and _at(BASE, p)]


def diff(old: Any, new: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """The paths where ``new`` differs from ``old`` (a list that changed length is one)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() | new.keys():
            if key not in old or key not in new:
                yield (*prefix, key)
            else:
                yield from diff(old[key], new[key], (*prefix, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for position, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from diff(a, b, (*prefix, position))
    elif type(old) is not type(new) or old != new:
        yield prefix


def _declared(plan: dict[str, Any], address: str) -> bool:
    """Whether ``planned_values`` or ``configuration`` still name ``address``."""
    planned = plan.get("planned_values") or {}
    stack = [planned.get("root_module") or {}]
    while stack:
        module = stack.pop()
        if any(r.get("address") == address for r in module.get("resources") or []):
            return True
        stack.extend(module.get("child_modules") or [])
    root = (plan.get("configuration") or {}).get("root_module") or {}
    return any(
        r.get("address") == config_address(address) and r.get("mode") == "managed"
        for r in root.get("resources") or []
    )


def _removes_reason(changed: Path_, reason: Path_, mutated: dict[str, Any], address: str) -> bool:
    if changed[: len(reason)] == reason and len(changed) > len(reason):
        return True  # an edit inside the resource change
    if reason[: len(changed)] == changed:
        return not _declared(mutated, address)  # gone, and gone from every view
    return False


def assert_no_unexplained_allow(mutated_text: bytes) -> Decision | None:
    decision = outcome(mutated_text)
    if decision is None:
        return None
    mutated = json.loads(mutated_text)  # parsed strictly above, so plain json agrees
    changed = list(diff(BASE, mutated))
    after = _denials(decision)
    for policy, address in BASE_DENIALS:
        reason = BASE_ENTRIES[address]
        if any(_removes_reason(path, reason, mutated, address) for path in changed):
            continue
        assert (policy, address) in after, (policy, address, changed)
    return decision


# ------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["create", "delete", "no-op", "public-read", "0.0.0.0/0", "1.2", "*"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _set(plan: Any, path: Path_, value: Any) -> None:
    _at(plan, path[:-1])[path[-1]] = value


def _delete(plan: Any, path: Path_) -> None:
    del _at(plan, path[:-1])[path[-1]]


@st.composite
def tree_mutations(draw: st.DrawFn) -> bytes:
    plan = json.loads(BASE_TEXT)
    kind = draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
    if kind == "cut":
        # What filtering a plan does: resource changes dropped, or the whole list.
        count = len(plan["resource_changes"])
        dropped = draw(st.sets(st.integers(min_value=0, max_value=count - 1), min_size=1))
        if draw(st.booleans()) and len(dropped) == count:
            del plan["resource_changes"]
        else:
            plan["resource_changes"] = [
                c for i, c in enumerate(plan["resource_changes"]) if i not in dropped
            ]
    elif kind == "insert":
        path = draw(st.sampled_from(OBJECT_PATHS))
        _at(plan, path)[draw(st.text(max_size=8))] = draw(json_values)
    else:
        path = draw(st.sampled_from(ALL_PATHS[1:]))
        if kind == "replace":
            _set(plan, path, draw(json_values))
        else:
            _delete(plan, path)
    return json.dumps(plan).encode()


def _dump_with_duplicate(value: Any, target: Path_, key: str, extra: Any, here: Path_ = ()) -> str:
    """JSON text of ``value`` where the object at ``target`` repeats ``key``."""
    if isinstance(value, dict):
        items = [
            f"{json.dumps(k)}: {_dump_with_duplicate(v, target, key, extra, (*here, k))}"
            for k, v in value.items()
        ]
        if here == target:
            items.append(f"{json.dumps(key)}: {json.dumps(extra)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        parts = [
            _dump_with_duplicate(v, target, key, extra, (*here, i)) for i, v in enumerate(value)
        ]
        return "[" + ", ".join(parts) + "]"
    return json.dumps(value)


# ------------------------------------------------------------------ properties


def test_the_base_plan_denies_and_is_complete() -> None:
    assert BASE_DENIALS, "the property needs denials to protect"
    assert len(BASE_ENTRIES) == len(BASE["resource_changes"])


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_are_judged_or_refused_in_one_line(data: bytes) -> None:
    outcome(data)


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_judged_or_refused_in_one_line(text: str) -> None:
    outcome(text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(tree_mutations())
def test_a_mutation_never_turns_a_denial_into_an_allow_unless_it_removes_the_reason(
    data: bytes,
) -> None:
    assert_no_unexplained_allow(data)


@SETTINGS
@given(
    st.sampled_from(OBJECT_PATHS).flatmap(
        lambda path: st.tuples(st.just(path), st.sampled_from(sorted(_at(BASE, path))))
    ),
    json_values,
)
def test_a_duplicate_key_anywhere_is_an_input_error(target: tuple[Path_, str], extra: Any) -> None:
    path, key = target
    text = _dump_with_duplicate(BASE, path, key, extra)
    assert outcome(text.encode()) is None


@SETTINGS
@given(st.integers(min_value=0, max_value=len(BASE_TEXT) - 1))
def test_a_truncated_plan_is_an_input_error(cut: int) -> None:
    assert outcome(BASE_TEXT[:cut].encode()) is None


@SETTINGS
@given(
    st.integers(min_value=0, max_value=len(BASE_TEXT) - 1),
    st.sampled_from(
        ["", "x", '"', "{", "}", "[", "]", ",", ":", "\\", "\\ud800", "NaN", "1e999", "9" * 5000]
    ),
    st.integers(min_value=0, max_value=3),
)
def test_text_edits_are_refused_or_keep_every_unrelated_denial(
    position: int, insert: str, remove: int
) -> None:
    text = BASE_TEXT[:position] + insert + BASE_TEXT[position + remove :]
    assert_no_unexplained_allow(text.encode())


addresses = st.sampled_from(
    ["aws_s3_bucket.a", "aws_s3_bucket.b", 'module.m["k"].aws_instance.c[0]', "aws_db_instance.d"]
)
types = st.sampled_from(["aws_s3_bucket", "aws_instance", "aws_db_instance", "aws_security_group"])
actions = st.one_of(
    st.sampled_from(
        [["create"], ["delete"], ["delete", "create"], ["no-op"], ["read"], ["forget"]]
    ),
    st.lists(st.text(max_size=6), max_size=3),
)
# Attribute names the AWS policies read, so masks and unknowns meet the rules.
attribute_names = st.one_of(
    st.sampled_from(["acl", "type", "cidr_blocks", "storage_encrypted", "encrypted", "tags"]),
    st.text(max_size=6),
)
objects = st.dictionaries(attribute_names, json_values, max_size=5)
masks: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),  # true for a whole object is legal, and was once a crash
    st.recursive(
        st.booleans(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(attribute_names, inner, max_size=3)
        ),
        max_leaves=8,
    ),
)


@st.composite
def plans(draw: st.DrawFn) -> dict[str, Any]:
    entries = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        change: dict[str, Any] = {"actions": draw(actions)}
        for name, strategy in [
            ("before", st.one_of(st.none(), objects)),
            ("after", st.one_of(st.none(), objects)),
            ("after_unknown", masks),
            ("after_sensitive", masks),
            ("before_sensitive", masks),
        ]:
            if draw(st.booleans()):
                change[name] = draw(strategy)
        entry: dict[str, Any] = {
            "address": draw(addresses),
            "type": draw(types),
            "name": "n",
            "change": change,
        }
        if draw(st.booleans()):
            entry["action_reason"] = draw(st.one_of(st.text(max_size=12), json_values))
        entries.append(entry)
    plan: dict[str, Any] = {
        "format_version": draw(st.sampled_from(["1.2", "0.1", "1.\u0661", "2.0"])),
        "resource_changes": entries,
    }
    if draw(st.booleans()):
        plan["planned_values"] = {"root_module": {"resources": [{"address": draw(addresses)}]}}
    return plan


@settings(SETTINGS, max_examples=400)
@given(plans())
def test_generated_plans_are_judged_or_refused_in_one_line(plan: dict[str, Any]) -> None:
    decision = outcome(json.dumps(plan).encode())
    if decision is not None:
        # Judged: every entry's address is unique (duplicates are refused).
        addresses = [e["address"] for e in plan["resource_changes"]]
        assert len(addresses) == len(set(addresses))


@st.composite
def masked_changes(draw: st.DrawFn) -> dict[str, Any]:
    """One change a policy reads, with every mask shape over the attributes it reads."""
    change = {
        "actions": draw(st.sampled_from([["create"], ["update"], ["delete", "create"]])),
        "before": draw(st.one_of(st.none(), objects)),
        "after": draw(objects),
        "after_unknown": draw(masks),
        "after_sensitive": draw(masks),
        "before_sensitive": draw(masks),
    }
    resource_type = draw(st.sampled_from(["aws_s3_bucket", "aws_security_group_rule"]))
    address = f"{resource_type}.a"
    return {
        "format_version": "1.2",
        "resource_changes": [
            {"address": address, "type": resource_type, "name": "a", "change": change}
        ],
    }


@SETTINGS
@given(masked_changes())
def test_every_mask_shape_is_judged_or_refused_in_one_line(plan: dict[str, Any]) -> None:
    outcome(json.dumps(plan).encode())
