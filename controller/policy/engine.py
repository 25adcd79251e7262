"""The policy engine: compile once at load, evaluate subjects many times.

Both sides (admission and ``guard tf-plan``) call the same ``Engine``, so a
policy's verdict never depends on where it runs. Every rule gives pass, fail,
unknown or error; error is reported and never counts as a pass.

One call per subject (``Engine.evaluate``) returns everything a decision
needs: the findings (a policy that failed to compile judges what it matches
as an error), the policies that matched, and the notes about exceptions.
The engine is immutable and shared by every request; the review evaluator
belongs to one request and is passed to ``evaluate``.

The jobs around it live in their own modules: ``_readpaths`` (what a rule
reads), ``variables`` (the CEL variables contract), ``matching``,
``unknowns`` (the probes) and ``reviewer`` (the review protocol).

Its size is the compiled forms, the evaluation loop and the one place that
turns results (rules, review, broken and invalid policies) into findings;
what a rule reads, the variables, matching and the unknown probes live in
their own modules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.errors import InputError
from controller.policy._readpaths import (
    TRIMMED_LISTS,
    TRIMMED_VARIABLES,
    ReadSet,
    overlaps,
    read_set,
    union_paths,
)
from controller.policy.celenv import (
    CelCompileError,
    CelEvaluationError,
    Compiled,
    compile_expression,
)
from controller.policy.contexts import Contexts
from controller.policy.documents import Action, GuardException, GuardPolicy, Rule, Target
from controller.policy.invalid import InvalidPolicy
from controller.policy.matching import matches, waiver_for
from controller.policy.results import Decision, Finding, Result, Subject
from controller.policy.reviewer import ReviewEvaluator, ReviewOutcome
from controller.policy.unknowns import probe_values

# Distinct (kind, namespace, labels) shapes whose matching policies are remembered.
MATCHING_CACHE_SIZE = 4096
# Distinct subject contents whose rule outcomes one plan remembers. A key is
# the trimmed variables' JSON text, about a kilobyte for a Deployment, so a
# plan holds at most about a megabyte; the Pods of one template share a key.
OUTCOME_CACHE_SIZE = 1024
REVIEW_RULE = "review"


class PolicyError(InputError, ValueError):
    """A policy that cannot be compiled, naming the policy, rule and field."""

    def __init__(self, policy: str, rule: str, field_name: str, problem: str) -> None:
        super().__init__(f"policy {policy!r}, rule {rule!r}, {field_name}: {problem}")
        self.policy = policy
        self.rule = rule
        self.field_name = field_name
        self.problem = problem


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    expression: Compiled
    message: Compiled | None
    # The variables the rule (and its message) reads: only those are
    # converted into CEL values for a subject, which is most of the cost.
    variables: frozenset[str] = frozenset()
    # What the rule reads; by default everything (the safe assumption).
    reads: ReadSet = field(default_factory=lambda: ReadSet(frozenset(), True, {}))
    # The stand-ins tried for an unknown value (placeholders and the rule's constants).
    probes: tuple[Any, ...] = ()

    def may_depend_on(self, unknowns: Sequence[str]) -> bool:
        """Whether a value at one of these paths of the new state could change
        the verdict: the rule reads the state whole, or reads a path that is a
        prefix of an unknown one (or lies inside it). Over-approximated: the
        same read paths decide what is converted, which the trimming
        equivalence tests hold to the verdicts."""
        if self.reads.reads_whole_object:
            return True
        paths = self.reads.paths.get("after")
        if paths is None:
            return any(path.split(".", 1)[0] in self.reads.words for path in unknowns)
        return any(overlaps(paths, unknown) for unknown in unknowns)

    def reads_any(self, located: Sequence[str]) -> bool:
        """Whether the rule (or its message) may read one of these paths,
        each named with its variable (``after.password``, ``before``)."""
        for path in located:
            variable, _, rest = path.partition(".")
            if variable not in self.variables:
                continue
            paths = self.reads.paths.get(variable)
            if paths is None or not rest or overlaps(paths, rest):
                return True
        return False


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
        reads = read_set(rule.expression, rule.message_expression or "")
        variables = expression.variables
        if message is not None:
            variables |= message.variables
        compiled.append(
            CompiledRule(
                rule=rule,
                expression=expression,
                message=message,
                variables=variables,
                reads=reads,
                probes=probe_values(reads.literals),
            )
        )
    return CompiledPolicy(policy=policy, rules=tuple(compiled))


@dataclass(frozen=True)
class RuleOutcome:
    result: Result
    message: str = ""


@dataclass(frozen=True)
class _Plan:
    """How to evaluate one shape of subject (its target and matching policies),
    worked out once: the rules to run, the variables to convert and how far
    to trim them."""

    rules: tuple[tuple[CompiledPolicy, tuple[CompiledRule, ...]], ...]
    needed: frozenset[str]
    trims: Mapping[str, frozenset[tuple[str, ...]]]
    # Every rule's outcome by the subject's ``Contexts.content_key`` (see
    # ``Engine.outcomes``); bounded, and it lives as long as this engine.
    outcomes: dict[bytes, tuple[RuleOutcome, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )


def _plan_for(target: Target, compiled: Sequence[CompiledPolicy]) -> _Plan:
    rules = tuple((c, tuple(r for r in c.rules if r.rule.target is target)) for c in compiled)
    running = [r for _, policy_rules in rules for r in policy_rules]
    needed = frozenset().union(*(r.variables for r in running))
    trims: dict[str, frozenset[tuple[str, ...]]] = {}
    for name in (*TRIMMED_VARIABLES, *TRIMMED_LISTS):
        used = [r.reads.paths.get(name, None) for r in running if name in r.variables]
        if all(u is not None for u in used):
            trims[name] = union_paths(*used) or frozenset()
    return _Plan(rules, needed, trims)


@dataclass(frozen=True)
class Evaluation:
    """Everything the engine says about one subject."""

    findings: tuple[Finding, ...]
    # The policies that judge the subject (they match it), broken ones included.
    matched: tuple[GuardPolicy, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engine:
    """Compiled policies plus the settings that turn results into findings.

    ``enforcement`` caps every policy's action (a roll-out switch);
    ``unknown_action`` is what an unknown-at-plan-time result does.
    With ``skip_broken``, a policy that fails to compile is kept (in
    ``broken``) and judges what it matches as an error under its own action:
    the cluster keeps enforcing the rest, and a typo never switches a deny
    policy off. Without it, compiling raises ``PolicyError``. ``invalid``
    holds the stand-ins of policy documents that did not validate; they
    judge the same way.

    Broken and invalid policies never judge a request from a Kubernetes
    controller's own identity: the object a person applied was judged by
    them (the Kubernetes side applies them to what controllers will make
    from it), and a broken policy must not turn a node drain into an outage.
    """

    policies: Sequence[GuardPolicy]
    exceptions: Sequence[GuardException] = ()
    enforcement: Action = Action.deny
    unknown_action: Action = Action.warn
    today: dt.date | None = None
    # Where ``today`` is not fixed: the day by the caller's clock (a cluster
    # engine lives for days, and the operator's clock is the one tests set).
    clock: Callable[[], dt.date] | None = field(default=None, repr=False, compare=False)
    skip_broken: bool = False
    invalid: Sequence[InvalidPolicy] = ()
    # Compiled policies to reuse (by identity of the policy object), so a
    # narrower engine over some of the same policies compiles nothing.
    precompiled: Mapping[str, CompiledPolicy] = field(
        default_factory=dict, repr=False, compare=False
    )
    compiled: tuple[CompiledPolicy, ...] = field(init=False)
    broken: tuple[PolicyError, ...] = field(init=False)
    # Policy name -> (rule, message, fix) of every broken or invalid policy.
    problems: Mapping[str, tuple[str, str, str]] = field(init=False)
    # Every policy that can match, stand-ins included, in name order: fixed
    # at construction, read for every subject.
    _candidates: tuple[GuardPolicy, ...] = field(init=False, repr=False, compare=False)
    # Every label key a candidate's selector reads: the only labels matching depends on.
    _label_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _matching: dict[tuple[Any, ...], tuple[GuardPolicy, ...]] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )
    # Evaluation plans by target and matching policies (``_Plan``).
    _plans: dict[tuple[Any, ...], _Plan] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        compiled: list[CompiledPolicy] = []
        broken: list[PolicyError] = []
        for policy in sorted(self.policies, key=lambda p: p.name):
            reuse = self.precompiled.get(policy.name)
            if reuse is not None and reuse.policy is policy:
                compiled.append(reuse)
                continue
            try:
                compiled.append(compile_policy(policy))
            except PolicyError as exc:
                if not self.skip_broken:
                    raise
                broken.append(exc)
        object.__setattr__(self, "compiled", tuple(compiled))
        object.__setattr__(self, "broken", tuple(broken))
        problems: dict[str, tuple[str, str, str]] = {
            error.policy: (
                error.rule,
                f"policy cannot be evaluated: {error}",
                f"fix rule {error.rule!r} of GuardPolicy {error.policy!r} "
                "(run `guard policy test` on it)",
            )
            for error in broken
        }
        for invalid in self.invalid:
            where = (
                "" if invalid.scoped else " (its match cannot be read, so it judges every workload)"
            )
            problems[invalid.name] = (
                "document",
                f"policy is invalid and judges as an error until fixed{where}: {invalid.problem}",
                f"fix GuardPolicy {invalid.name!r} (`guard policy lint` on its YAML names the field)",
            )
        object.__setattr__(self, "problems", problems)
        stand_ins = [invalid.stand_in for invalid in self.invalid]
        candidates = sorted([*self.policies, *stand_ins], key=lambda p: p.name)
        object.__setattr__(self, "_candidates", tuple(candidates))
        keys: set[str] = set()
        for policy in candidates:
            kube = policy.spec.match.kubernetes
            selector = kube.label_selector if kube is not None else None
            if selector is not None:
                keys.update(selector.match_labels)
                keys.update(req.key for req in selector.match_expressions)
        object.__setattr__(self, "_label_keys", tuple(sorted(keys)))

    def restricted_to(self, policies: Sequence[GuardPolicy]) -> Engine:
        """The same engine over fewer policies, reusing their compiled form."""
        return dataclasses.replace(
            self, policies=policies, precompiled={c.name: c for c in self.compiled}
        )

    # ----------------------------------------------------------- matching

    def matching(self, subject: Subject) -> tuple[GuardPolicy, ...]:
        """The policies that judge a subject, broken ones included.

        It depends only on kind, namespace and the labels some selector
        reads (Kubernetes) or on type, action and whether the subject is the
        plan itself (Terraform), which subjects repeat constantly: it is
        remembered per shape, keyed by exactly those, for the life of this
        (immutable) engine. Labels no selector reads (``pod-template-hash``,
        a release number) do not make a new shape.
        """
        key: tuple[Any, ...]
        if subject.target is Target.kubernetes:
            key = self.kubernetes_shape(subject.kind, subject.namespace, subject.labels)
        else:
            key = (Target.terraform, subject.kind == "plan", subject.type, subject.action)
        found = self._matching.get(key)
        if found is None:
            if len(self._matching) >= MATCHING_CACHE_SIZE:
                self._matching.clear()
            found = tuple(p for p in self._candidates if matches(p, subject))
            self._matching[key] = found
        return found

    def kubernetes_shape(
        self, kind: str, namespace: str | None, labels: Mapping[str, str]
    ) -> tuple[Any, ...]:
        """What decides which policies match a Kubernetes subject: its kind,
        namespace and the labels some selector reads (present, and their values)."""
        read = tuple((k, k in labels, labels.get(k)) for k in self._label_keys)
        return (kind, namespace, read)

    def _plan(self, target: Target, matched: tuple[GuardPolicy, ...]) -> _Plan:
        key = (target, tuple(p.name for p in matched))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MATCHING_CACHE_SIZE:
                self._plans.clear()
            names = set(key[1])
            plan = _plan_for(target, [c for c in self.compiled if c.name in names])
            self._plans[key] = plan
        return plan

    # ----------------------------------------------------------- evaluation

    def evaluate(self, subject: Subject, *, review: ReviewEvaluator | None = None) -> Evaluation:
        """Every non-passing result of every matching policy on one subject."""
        matched = self.matching(subject)
        plan = self._plan(subject.target, matched)
        findings: list[Finding] = []
        has_state = subject.object is not None or subject.old_object is not None
        outcomes = iter(self.outcomes(plan, subject) if has_state else ())
        for policy_rules, rules in plan.rules:
            policy = policy_rules.policy
            for rule in rules if has_state else ():
                outcome = next(outcomes)
                if outcome.result is not Result.passed:
                    findings.append(self._finding(policy, rule, outcome, subject))
            if policy.spec.review is not None and subject.artifacts:
                findings.extend(self.review_findings(policy, subject, review))
        findings.extend(self.broken_findings(matched, subject))
        return Evaluation(tuple(findings), matched, tuple(self.exception_notes()))

    def decide(
        self,
        subjects: Iterable[Subject],
        *,
        review: ReviewEvaluator | None = None,
        notes: Sequence[str] = (),
    ) -> Decision:
        findings: list[Finding] = []
        count = 0
        for subject in subjects:
            count += 1
            findings.extend(self.evaluate(subject, review=review).findings)
        return Decision.of(findings, subjects=count, notes=[*notes, *self.exception_notes()])

    def outcomes(self, plan: _Plan, subject: Subject) -> tuple[RuleOutcome, ...]:
        """The outcome of every rule of ``plan`` on ``subject``, in plan order.

        A rule can read nothing but its compiled program, guard's helpers
        (pure functions, declared once for every rule) and the trimmed
        variables with the unknown paths; the programs are fixed by the
        plan and the helpers by the CEL environment, so outcomes
        are remembered per plan by the subject's ``content_key``. Pods a
        controller makes from one template, or a module's repeated
        resources, are then judged once. Findings, waivers and review are
        still worked out for every subject.
        """
        contexts = Contexts(subject, plan.needed, plan.trims)
        key = contexts.content_key()
        found = plan.outcomes.get(key) if key is not None else None
        if found is not None:
            return found
        found = tuple(self.run_rule(rule, contexts) for _, rules in plan.rules for rule in rules)
        if key is not None:
            if len(plan.outcomes) >= OUTCOME_CACHE_SIZE:
                plan.outcomes.clear()
            plan.outcomes[key] = found
        return found

    def run_rule(self, rule: CompiledRule, contexts: Contexts) -> RuleOutcome:
        """One rule on one subject, including the unknown-value probes.

        A rule that can see a value known only after apply is never a pass:
        it fails only if it fails with the value absent and with every
        stand-in (``unknowns.probe_values``), else its result is unknown.
        """
        first = _execute(rule, contexts.plain)
        unknowns = contexts.subject.unknowns
        if not unknowns or not rule.may_depend_on(unknowns):
            return first
        if first.result is Result.fail and all(
            _execute(rule, contexts.with_placeholder(value)).result is Result.fail
            for value in rule.probes
        ):
            return first
        detail = "its result depends on values known only after apply"
        message = rule.rule.message or ""
        return RuleOutcome(Result.unknown, f"{message} ({detail})" if message else detail)

    # ----------------------------------------------------------- findings

    def _finding(
        self, policy: GuardPolicy, rule: CompiledRule, outcome: RuleOutcome, subject: Subject
    ) -> Finding:
        message = outcome.message or rule.rule.message or rule.rule.expression
        if subject.sensitive and rule.reads_any(subject.sensitive):
            # A message expression or an evaluation error could echo the
            # sensitive value: say only what the policy author wrote.
            message = rule.rule.message or (
                "the rule failed on a sensitive value (details not shown)"
                if outcome.result is Result.fail
                else f"the rule's result is {outcome.result.value} on a sensitive value "
                "(details not shown)"
            )
        return Finding.of(
            policy,
            rule.rule.name,
            outcome.result,
            subject,
            message,
            enforcement=self.enforcement,
            unknown_action=self.unknown_action,
            fix=rule.rule.fix or "",
            waiver=waiver_for(policy, subject, self.exceptions, self._today()),
        )

    def review_findings(
        self,
        policy: GuardPolicy,
        subject: Subject,
        review: ReviewEvaluator | None,
        context: str = "",
    ) -> list[Finding]:
        """The finding of one policy's review requirement on a subject (none
        when it passes). ``context`` is appended to the message: the
        Kubernetes side uses it when it applies a review policy to a parent
        object on behalf of the children controllers will make from it.

        This is the one place that catches a failing evaluator: whatever it
        raises is an error finding under the policy's action, never a pass.
        """
        if review is None:
            outcome = ReviewOutcome(
                Result.error,
                ("no attestation verifier is configured, so review cannot be checked",),
                fix="run with a trust configuration (--trust)",
            )
        else:
            try:
                outcome = review.review(policy, subject)
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
        # Review is never waived by an exception: only break-glass passes it.
        return [
            Finding.of(
                policy,
                REVIEW_RULE,
                outcome.result,
                subject,
                f"no accepted review attestation: {summary}{context}",
                enforcement=self.enforcement,
                unknown_action=self.unknown_action,
                fix=outcome.fix,
                reasons=outcome.reasons,
            )
        ]

    def broken_findings(
        self, policies: Sequence[GuardPolicy], subject: Subject, context: str = ""
    ) -> list[Finding]:
        """The error findings of the broken or invalid ones among ``policies``.

        Skipping them would let a typo switch a whole policy off; their error
        carries the policy's own action, so a deny policy keeps denying (with
        the problem as the reason) until it is fixed. ``context`` is appended
        to the message (the Kubernetes side applies them to a parent on
        behalf of what controllers will make from it).
        """
        if subject.requester is not None and subject.requester.controller:
            return []
        findings: list[Finding] = []
        for policy in policies:
            problem = self.problems.get(policy.name)
            if problem is None:
                continue
            rule, message, fix = problem
            findings.append(
                Finding.of(
                    policy,
                    rule,
                    Result.error,
                    subject,
                    message + context,
                    enforcement=self.enforcement,
                    fix=fix,
                )
            )
        return findings

    # ----------------------------------------------------------- exceptions

    def _today(self) -> dt.date:
        if self.today is not None:
            return self.today
        return self.clock() if self.clock is not None else dt.datetime.now(dt.UTC).date()

    def exception_notes(self) -> list[str]:
        """Expired exceptions and exceptions that name a review policy (as of
        today: a long-lived cluster engine sees an exception expire)."""
        notes: list[str] = []
        if not self.exceptions:
            return notes
        reviewed = {p.name for p in self.policies if p.spec.review is not None}
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


def _execute(rule: CompiledRule, context: Any) -> RuleOutcome:
    try:
        value = rule.expression.run(context)
    except CelEvaluationError as exc:
        return RuleOutcome(Result.error, f"rule could not be evaluated: {exc}")
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
        except CelEvaluationError:  # the static message; the failure still stands
            pass
    return RuleOutcome(Result.fail, message)
