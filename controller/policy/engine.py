"""The policy engine: compile once at load, evaluate subjects many times.

Both sides (admission and ``guard tf-plan``) call the same ``Engine``, so a
policy's verdict never depends on where it runs. Every rule gives pass, fail,
unknown or error; error is reported and never counts as a pass.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.policy.celenv import CelCompileError, Compiled, compile_expression, new_context
from controller.policy.documents import (
    Action,
    GuardException,
    GuardPolicy,
    LabelSelector,
    Rule,
    Target,
)
from controller.policy.subject import Decision, Finding, Result, Subject

# Values that stand for "known after apply" when probing whether a rule's
# verdict depends on an unknown Terraform value. One of each type a rule is
# likely to compare with, so that a verdict that holds for all of them (and
# for the value being absent) really does not depend on the unknown.
UNKNOWN_PLACEHOLDERS: tuple[Any, ...] = ("\u2039known after apply\u203a", True, False, 0, 2**31 - 1)


class PolicyError(ValueError):
    """A policy that cannot be compiled, naming the policy, rule and field."""

    def __init__(self, policy: str, rule: str, field_name: str, problem: str) -> None:
        super().__init__(f"policy {policy!r}, rule {rule!r}, {field_name}: {problem}")
        self.policy = policy
        self.rule = rule
        self.field_name = field_name
        self.problem = problem


@dataclass(frozen=True)
class ReviewOutcome:
    """The review verdict for one subject under one policy.

    ``result`` is pass when every artifact is covered by an accepted
    attestation; ``reasons`` lists every failed check, per artifact;
    ``evidence`` records what was used (envelope digests, approvers,
    exemptions) for the audit trail.
    """

    result: Result
    reasons: tuple[str, ...] = ()
    fix: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


class ReviewEvaluator(Protocol):
    """Decides a policy's ``review`` block for a subject's artifacts."""

    def review(self, policy: GuardPolicy, subject: Subject) -> ReviewOutcome: ...


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    expression: Compiled
    message: Compiled | None
    # The variables the rule (and its message) reads: only those are
    # converted into CEL values for a subject, which is most of the cost.
    variables: frozenset[str] = frozenset()
    # The field names the expression reads (``.name``, and path-shaped string
    # literals such as ``lookup``'s), and whether it reads the new object as
    # a whole (``after.all(k, ...)``, ``size(after)``): together they tell,
    # conservatively, whether an unknown path could change the verdict.
    words: frozenset[str] = frozenset()
    reads_whole_object: bool = True
    # For each structured variable, the field paths the rule and its message
    # read (``object.metadata.labels`` -> ("metadata", "labels")), or None
    # when it uses the variable other than through such paths. Only what is
    # read is converted into CEL values.
    paths: Mapping[str, frozenset[tuple[str, ...]] | None] = field(default_factory=dict)

    def may_depend_on(self, unknowns: Sequence[str]) -> bool:
        if self.reads_whole_object:
            return True
        return any(path.split(".", 1)[0] in self.words for path in unknowns)


@dataclass(frozen=True)
class CompiledPolicy:
    policy: GuardPolicy
    rules: tuple[CompiledRule, ...]

    @property
    def name(self) -> str:
        return self.policy.name


def compile_policy(policy: GuardPolicy) -> CompiledPolicy:
    compiled: list[CompiledRule] = []
    for rule in policy.spec.rules:
        try:
            expression = compile_expression(rule.expression, rule.target)
        except CelCompileError as exc:
            raise PolicyError(policy.name, rule.name, "expression", str(exc)) from None
        message = None
        if rule.message_expression:
            try:
                message = compile_expression(rule.message_expression, rule.target)
            except CelCompileError as exc:
                raise PolicyError(policy.name, rule.name, "messageExpression", str(exc)) from None
        # Only the expression decides a verdict; the message is rendered from
        # the plain context, so it does not take part in the unknown probe.
        sources = [rule.expression]
        variables = set(expression.program.variables())
        if message is not None:
            variables |= set(message.program.variables())
        compiled.append(
            CompiledRule(
                rule=rule,
                expression=expression,
                message=message,
                variables=frozenset(variables),
                words=frozenset(w for src in sources for w in _words(src)),
                reads_whole_object=any(_reads_whole_object(src) for src in sources),
                paths={
                    **{
                        name: _union_paths(
                            _access_paths(rule.expression, name),
                            _access_paths(rule.message_expression or "", name),
                        )
                        for name in TRIMMED_VARIABLES
                    },
                    **{
                        name: _union_paths(
                            _element_paths(rule.expression, name),
                            _element_paths(rule.message_expression or "", name),
                        )
                        for name in TRIMMED_LISTS
                    },
                },
            )
        )
    return CompiledPolicy(policy=policy, rules=tuple(compiled))


_FIELD_RE = re.compile(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STRING_RE = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
_PATH_LITERAL_RE = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*")


def _words(source: str) -> set[str]:
    """Field names read (``.name``), plus the first segment of string literals
    shaped like a field path (``'acl'``, ``'a.b.0'``), which ``lookup`` and
    ``in`` read."""
    # Field reads only (``.name``): loop variables and function names are not
    # attributes of the object, and counting them would probe needlessly.
    words = set(_FIELD_RE.findall(_STRING_RE.sub(" ", source)))
    for literal in _STRING_RE.findall(source):
        text = literal[1:-1]
        if _PATH_LITERAL_RE.fullmatch(text):
            words.add(text.split(".", 1)[0])
    return words


# A use of the new object other than a plain field read or a null check.
_OBJECT_USE_RE = re.compile(r"\b(?:object|after)\b")
_FIELD_READ_RE = re.compile(r"\s*\.\s*[A-Za-z_]\w*(?!\w)(?!\s*\()")
_NULL_CHECK_RE = re.compile(r"\s*[!=]=\s*null\b")
# ``lookup(after, 'a.b', default)``: a field read whose path is a literal.
_LITERAL_LOOKUP_RE = re.compile(r"""\s*,\s*(?:'[^'\\]*'|"[^"\\]*")""")
_LOOKUP_CALL_RE = re.compile(r"\blookup\s*\(\s*$")


# Variables that hold (parts of) the object and are worth trimming.
TRIMMED_VARIABLES = ("object", "after", "oldObject", "before", "podSpec")
# List variables whose elements are trimmed to what comprehensions read.
TRIMMED_LISTS = ("containers",)
_BINDING_BEFORE_RE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*$")
_CHAIN_RE = re.compile(r"(?:\s*\.\s*[A-Za-z_]\w*(?!\w)(?!\s*\())*")
_CHAIN_FIELD_RE = re.compile(r"[A-Za-z_]\w*")
_LOOKUP_PATH_RE = re.compile(r"""\s*,\s*(?:'([^'\\]*)'|"([^"\\]*)")""")


def _blank_strings(source: str) -> str:
    """String literals blanked to spaces (quotes kept, positions unchanged)."""
    return _STRING_RE.sub(
        lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[0], source
    )


def _access_paths(source: str, name: str) -> frozenset[tuple[str, ...]] | None:
    """The field paths through which ``source`` reads variable ``name``.

    A select chain (``object.spec.replicas``), a literal ``lookup`` path, or a
    null check; anything else (the variable passed whole to a function,
    iterated, compared, indexed with a computed key at its top) gives None.
    """
    blank = _blank_strings(source)
    paths: set[tuple[str, ...]] = set()
    for use in re.finditer(rf"\b{re.escape(name)}\b", blank):
        before = blank[: use.start()].rstrip()
        if before.endswith("."):
            continue  # a field that happens to have the variable's name
        rest = blank[use.end() :]
        if _BINDING_BEFORE_RE.search(before + " ") and re.match(r"\s*,", rest):
            continue  # where a comprehension binds the name, not a use
        chain = _CHAIN_RE.match(rest)
        fields = tuple(_CHAIN_FIELD_RE.findall(chain.group(0))) if chain else ()
        if fields:
            paths.add(fields)
            continue
        if _NULL_CHECK_RE.match(rest) or re.search(r"null\s*[!=]=\s*$", before):
            continue
        literal = _LOOKUP_PATH_RE.match(source[use.end() :])
        if literal and _LOOKUP_CALL_RE.search(blank[: use.start()]):
            # A list index ends the path: the list is kept whole.
            prefix = tuple(_take_while_names((literal.group(1) or literal.group(2)).split(".")))
            if prefix:
                paths.add(prefix)
                continue
        return None
    return frozenset(paths)


_MACRO_RE = re.compile(r"\s*\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_TWO_VARIABLE_MACRO_RE = re.compile(r"\s*\.\s*\w+\s*\(\s*\w+\s*,\s*\w+\s*,")


def _element_paths(source: str, name: str) -> frozenset[tuple[str, ...]] | None:
    """The field paths read from each element of list variable ``name``.

    Only when every use is a comprehension (``containers.all(c, ...)``);
    then every select chain on the bound names anywhere in the rule counts
    (over-counting is safe, it only keeps more). Anything else gives None.
    """
    blank = _blank_strings(source)
    bound: set[str] = set()
    for use in re.finditer(rf"\b{re.escape(name)}\b", blank):
        if blank[: use.start()].rstrip().endswith("."):
            continue
        rest = blank[use.end() :]
        macro = _MACRO_RE.match(rest)
        if macro is None or _TWO_VARIABLE_MACRO_RE.match(rest):
            return None
        bound.add(macro.group(1))
    return _union_paths(*(_access_paths(source, variable) for variable in bound))


def _take_while_names(parts: Sequence[str]) -> list[str]:
    names: list[str] = []
    for part in parts:
        if not part or part.isdigit():
            break
        names.append(part)
    return names


def _union_paths(
    *sets: frozenset[tuple[str, ...]] | None,
) -> frozenset[tuple[str, ...]] | None:
    if any(found is None for found in sets):
        return None
    return frozenset().union(*sets)  # type: ignore[arg-type]


def _prune(value: Any, paths: frozenset[tuple[str, ...]] | set[tuple[str, ...]]) -> Any:
    """``value`` with only the given paths (each end kept whole)."""
    if not isinstance(value, Mapping) or any(not p for p in paths):
        return value
    grouped: dict[str, set[tuple[str, ...]]] = {}
    for path in paths:
        grouped.setdefault(path[0], set()).add(path[1:])
    return {key: _prune(value[key], rest) for key, rest in grouped.items() if key in value}


def _reads_whole_object(source: str) -> bool:
    """Whether ``source`` may read the new object other than field by field."""
    # The word "object" inside a string literal is not a use of the variable.
    source = _blank_strings(source)
    for use in _OBJECT_USE_RE.finditer(source):
        rest = source[use.end() :]
        before = source[: use.start()].rstrip()
        if before.endswith("."):
            continue  # a field that happens to be called "object" or "after"
        if _FIELD_READ_RE.match(rest) or _NULL_CHECK_RE.match(rest):
            continue
        if _LOOKUP_CALL_RE.search(source[: use.start()]) and _LITERAL_LOOKUP_RE.match(rest):
            continue
        if re.search(r"null\s*[!=]=\s*$", before):
            continue
        return True
    return False


# --------------------------------------------------------------------------- matching


def _globs(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        value = labels.get(req.key)
        if req.operator == "In" and value not in req.values:
            return False
        if req.operator == "NotIn" and present and value in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def matches(policy: GuardPolicy, subject: Subject) -> bool:
    """Whether a policy judges a subject at all."""
    match = policy.spec.match
    if subject.target is Target.kubernetes:
        kube = match.kubernetes
        if kube is None:
            return False
        if kube.kinds and subject.kind not in kube.kinds:
            return False
        namespace = subject.namespace or ""
        if kube.namespaces.include and not _globs(namespace, kube.namespaces.include):
            return False
        if namespace and _globs(namespace, kube.namespaces.exclude):
            return False
        return not (kube.label_selector and not _selects(kube.label_selector, subject.labels))
    tf = match.terraform
    if tf is None:
        return False
    if subject.kind == "plan":
        # The plan-level subject carries the review requirement for the whole plan.
        return True
    return _globs(subject.type, tf.types) and subject.action in tf.actions


# --------------------------------------------------------------------------- variables


def pod_spec_of(kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The pod template of any workload kind, so a rule is written once.

    A part of the path that is not a mapping (bad input the API server would
    reject) gives an empty pod spec rather than an exception.
    """
    path = ("spec",) if kind == "Pod" else (
        ("spec", "jobTemplate", "spec", "template", "spec")
        if kind == "CronJob"
        else ("spec", "template", "spec")
    )  # fmt: skip
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping):
            return {}
        node = node.get(part)
    return node if isinstance(node, Mapping) else {}


def containers_of(pod_spec: Mapping[str, Any]) -> list[Any]:
    """containers, initContainers and ephemeralContainers together."""
    found: list[Any] = []
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = pod_spec.get(key) or []
        if isinstance(items, list):
            found.extend(items)
    return found


def _without_managed_fields(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The object without ``metadata.managedFields``.

    Server-side apply bookkeeping is often larger than the spec itself, no
    guardrail reads it, and converting it into CEL values is most of the cost
    of an evaluation.
    """
    if not obj:
        return obj
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or "managedFields" not in metadata:
        return obj
    trimmed = {k: v for k, v in metadata.items() if k != "managedFields"}
    return {**obj, "metadata": trimmed}


def variables_for(subject: Subject, obj: Mapping[str, Any] | None) -> dict[str, Any]:
    resource = {
        "target": subject.target.value,
        "kind": subject.kind,
        "type": subject.type,
        "name": subject.name,
        "namespace": subject.namespace,
        "address": subject.address,
        "action": subject.action,
    }
    old = subject.old_object
    if subject.target is Target.kubernetes:
        obj, old = _without_managed_fields(obj), _without_managed_fields(old)
    variables: dict[str, Any] = {
        "object": obj,
        "oldObject": old,
        "resource": resource,
    }
    if subject.target is Target.kubernetes:
        pod_spec = pod_spec_of(subject.kind, obj if obj is not None else old)
        variables["request"] = subject.request or {}
        variables["podSpec"] = pod_spec
        variables["containers"] = containers_of(pod_spec)
    else:
        variables["after"] = obj
        variables["before"] = subject.old_object
    return variables


def _path_parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


_ABSENT = object()


def _with_unknowns(obj: Mapping[str, Any], paths: Sequence[str], placeholder: Any) -> Any:
    """``obj`` with the unknown paths removed (``_ABSENT``) or set to a placeholder.

    Copies only the containers along the paths; the rest is shared with the
    original, which is never modified.
    """
    result: Any = dict(obj)
    copied: set[int] = {id(result)}
    # Deepest paths first, and list items from the end, so that removing an
    # item keeps the indexes of the others valid.
    for path in sorted(paths, key=_path_order, reverse=True):
        parts = _path_parts(path)
        if not parts:
            continue
        parent: Any = result
        for part in parts[:-1]:
            child = _child(parent, part)
            if not isinstance(child, dict | list):
                parent = None
                break
            if id(child) not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                copied.add(id(child))
                _set_child(parent, part, child)
            parent = child
        if parent is None:
            continue
        last = parts[-1]
        if isinstance(parent, dict):
            if placeholder is _ABSENT:
                parent.pop(last, None)
            else:
                parent[last] = placeholder
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            if placeholder is _ABSENT:
                parent.pop(int(last))
            else:
                parent[int(last)] = placeholder
    return result


def _path_order(path: str) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Depth first, then path parts with list indexes compared as numbers."""
    parts = _path_parts(path)
    return len(parts), tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts)


def _child(parent: Any, part: str) -> Any:
    if isinstance(parent, dict):
        return parent.get(part)
    if isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
        return parent[int(part)]
    return None


def _set_child(parent: Any, part: str, child: Any) -> None:
    if isinstance(parent, dict):
        parent[part] = child
    else:
        parent[int(part)] = child


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class RuleOutcome:
    result: Result
    message: str = ""


@dataclass
class Engine:
    """Compiled policies plus the settings that turn results into findings.

    ``enforcement`` caps every policy's action (a roll-out switch);
    ``unknown_action`` is what an unknown-at-plan-time result does.
    ``broken`` lists policies that failed to compile when ``skip_broken`` is
    set: the cluster keeps enforcing the rest and reports these.
    """

    policies: Sequence[GuardPolicy]
    exceptions: Sequence[GuardException] = ()
    review: ReviewEvaluator | None = None
    enforcement: Action = Action.deny
    unknown_action: Action = Action.warn
    today: dt.date | None = None
    skip_broken: bool = False
    compiled: tuple[CompiledPolicy, ...] = field(init=False)
    broken: tuple[PolicyError, ...] = field(init=False)

    def __post_init__(self) -> None:
        compiled: list[CompiledPolicy] = []
        broken: list[PolicyError] = []
        for policy in sorted(self.policies, key=lambda p: p.name):
            try:
                compiled.append(compile_policy(policy))
            except PolicyError as exc:
                if not self.skip_broken:
                    raise
                broken.append(exc)
        self.compiled = tuple(compiled)
        self.broken = tuple(broken)

    # ----------------------------------------------------------- evaluation

    def evaluate(self, subject: Subject) -> list[Finding]:
        """Every non-passing result of every matching policy on one subject."""
        findings: list[Finding] = []
        matching = [c for c in self.compiled if matches(c.policy, subject)]
        has_state = subject.object is not None or subject.old_object is not None
        running = [r for c in matching for r in c.rules if r.rule.target is subject.target]
        needed = frozenset().union(*(r.variables for r in running))
        trims: dict[str, frozenset[tuple[str, ...]]] = {}
        for name in (*TRIMMED_VARIABLES, *TRIMMED_LISTS):
            used = [r.paths.get(name, None) for r in running if name in r.variables]
            if all(u is not None for u in used):
                trims[name] = _union_paths(*used) or frozenset()
        contexts = _Contexts(subject, needed, trims)
        for compiled in matching:
            policy = compiled.policy
            if has_state:
                for rule in compiled.rules:
                    if rule.rule.target is not subject.target:
                        continue
                    outcome = self.run_rule(rule, contexts)
                    if outcome.result is not Result.passed:
                        findings.append(self._finding(policy, rule.rule, outcome, subject))
            if policy.spec.review is not None and subject.artifacts:
                findings.extend(self.review_findings(policy, subject))
        return findings

    def decide(self, subjects: Iterable[Subject], notes: Sequence[str] = ()) -> Decision:
        findings: list[Finding] = []
        count = 0
        for subject in subjects:
            count += 1
            findings.extend(self.evaluate(subject))
        return Decision.of(findings, subjects=count, notes=[*notes, *self.exception_notes()])

    def run_rule(self, rule: CompiledRule, contexts: _Contexts) -> RuleOutcome:
        """One rule on one subject, including the unknown-value probe."""
        first = _execute(rule, contexts.plain)
        unknowns = contexts.subject.unknowns
        if not unknowns or not rule.may_depend_on(unknowns):
            return first
        for index in range(len(UNKNOWN_PLACEHOLDERS)):
            probe = _execute(rule, contexts.with_placeholder(index))
            if first.result is Result.error or probe.result is not first.result:
                detail = "its result depends on values known only after apply"
                message = rule.rule.message or ""
                return RuleOutcome(Result.unknown, f"{message} ({detail})" if message else detail)
        return first

    # ----------------------------------------------------------- findings

    def _action(self, policy: GuardPolicy, result: Result) -> Action:
        action = policy.spec.action.capped(self.enforcement)
        if result is Result.unknown:
            action = action.capped(self.unknown_action)
        return action

    def _finding(
        self, policy: GuardPolicy, rule: Rule, outcome: RuleOutcome, subject: Subject
    ) -> Finding:
        message = outcome.message or rule.message or rule.expression
        return Finding(
            policy=policy.name,
            rule=rule.name,
            severity=policy.spec.severity,
            action=self._action(policy, outcome.result),
            result=outcome.result,
            target=subject.target,
            address=subject.address,
            message=message,
            fix=rule.fix or "",
            exception=self._exception_for(policy, subject),
            location=subject.location,
            line=subject.line,
        )

    def review_findings(
        self, policy: GuardPolicy, subject: Subject, context: str = ""
    ) -> list[Finding]:
        """The finding of one policy's review requirement on a subject (none
        when it passes). ``context`` is appended to the message: the
        Kubernetes side uses it when it applies a review policy to a parent
        object on behalf of the children controllers will make from it."""
        if self.review is None:
            outcome = ReviewOutcome(
                Result.error,
                ("no attestation verifier is configured, so review cannot be checked",),
                fix="run with a trust configuration (--trust)",
            )
        else:
            try:
                outcome = self.review.review(policy, subject)
            except Exception as exc:  # an evaluator that breaks denies, never allows
                outcome = ReviewOutcome(
                    Result.error,
                    (f"review could not be checked: {exc}",),
                    fix="review is denied until it can be checked; see the guard log",
                )
        if outcome.result is Result.passed:
            return []
        summary = outcome.reasons[0] if outcome.reasons else "review requirement not met"
        if len(outcome.reasons) > 1:
            summary = f"{summary} (and {len(outcome.reasons) - 1} more)"
        return [
            Finding(
                policy=policy.name,
                rule="review",
                severity=policy.spec.severity,
                action=self._action(policy, outcome.result),
                result=outcome.result,
                target=subject.target,
                address=subject.address,
                message=f"no accepted review attestation: {summary}{context}",
                fix=outcome.fix,
                reasons=outcome.reasons,
                # Review is never waived by an exception: only break-glass passes it.
                exception=None,
                location=subject.location,
                line=subject.line,
            )
        ]

    # ----------------------------------------------------------- exceptions

    def _today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    def _exception_for(self, policy: GuardPolicy, subject: Subject) -> str | None:
        if policy.spec.review is not None:
            return None
        target = subject.address
        if subject.target is Target.kubernetes:
            target = (
                f"{subject.namespace or ''}/{subject.name}" if subject.namespace else subject.name
            )
        for exception in self.exceptions:
            spec = exception.spec
            if spec.policy != policy.name or spec.expires < self._today():
                continue
            if _target_matches(target, spec.target):
                return exception.name
        return None

    def exception_notes(self) -> list[str]:
        notes: list[str] = []
        reviewed = {c.name for c in self.compiled if c.policy.spec.review is not None}
        for exception in sorted(self.exceptions, key=lambda e: e.name):
            spec = exception.spec
            if spec.expires < self._today():
                notes.append(
                    f"exception {exception.name!r} for policy {spec.policy!r} expired on "
                    f"{spec.expires.isoformat()} and no longer applies"
                )
            if spec.policy in reviewed:
                notes.append(
                    f"exception {exception.name!r} names policy {spec.policy!r}, which has a "
                    "review requirement: exceptions never waive review"
                )
        return notes


def _target_matches(target: str, pattern: str) -> bool:
    """An exception target: exact, or a glob where only ``*`` and ``?`` are special.

    Terraform addresses contain brackets (``aws_x.y["k"]``, ``aws_x.y[0]``),
    which fnmatch would read as character classes, so an exact address would
    not match itself.
    """
    if target == pattern:
        return True
    return fnmatch.fnmatchcase(target, pattern.replace("[", "[[]"))


class _Contexts:
    """The CEL contexts of one subject, built lazily and reused by every rule."""

    def __init__(
        self,
        subject: Subject,
        needed: frozenset[str],
        trims: Mapping[str, frozenset[tuple[str, ...]]] | None = None,
    ) -> None:
        self.subject = subject
        self.needed = needed
        self.trims = trims or {}
        self._plain: Any = None
        self._probes: dict[int, Any] = {}

    def _context(self, obj: Mapping[str, Any] | None) -> Any:
        variables = variables_for(self.subject, obj)
        # Derived variables (podSpec, containers) come from the whole object
        # above; then each variable keeps only the paths the rules read.
        for name, paths in self.trims.items():
            value = variables.get(name)
            if name not in self.needed or value is None:
                continue
            if name in TRIMMED_LISTS:
                if isinstance(value, list):
                    variables[name] = [_prune(item, paths) for item in value]
            else:
                variables[name] = _prune(value, paths)
        return new_context({k: v for k, v in variables.items() if k in self.needed})

    @property
    def plain(self) -> Any:
        if self._plain is None:
            obj = self.subject.object
            if obj is not None and self.subject.unknowns:
                obj = _with_unknowns(obj, self.subject.unknowns, _ABSENT)
            self._plain = self._context(obj)
        return self._plain

    def with_placeholder(self, index: int) -> Any:
        """The context with every unknown set to ``UNKNOWN_PLACEHOLDERS[index]``."""
        if index not in self._probes:
            obj = self.subject.object
            if obj is not None:
                obj = _with_unknowns(obj, self.subject.unknowns, UNKNOWN_PLACEHOLDERS[index])
            self._probes[index] = self._context(obj)
        return self._probes[index]


def _execute(rule: CompiledRule, context: Any) -> RuleOutcome:
    try:
        value = rule.expression.run(context)
    except Exception as exc:  # the CEL library raises several types; all are errors
        return RuleOutcome(Result.error, f"rule could not be evaluated: {_cel_error(exc)}")
    if value is True:
        return RuleOutcome(Result.passed)
    if value is not False:
        return RuleOutcome(
            Result.error, f"rule returned {type(value).__name__} {value!r}, not a boolean"
        )
    message = rule.rule.message or ""
    if rule.message is not None:
        try:
            rendered = rule.message.run(context)
            message = str(rendered) if rendered is not None else message
        except Exception:  # fall back to the static message; the failure still stands
            pass
    return RuleOutcome(Result.fail, message)


def _cel_error(exc: Exception) -> str:
    text = str(exc).split(". Check that", 1)[0]
    if isinstance(exc, KeyError):
        return f"no such key {text}"
    return text
