"""The CEL specification's conformance cases against the CEL libraries guard
could sit on: passes, failures, and evaluation time per case.

``python -m tests.bench cel`` prints the tables in docs/performance.md.
guard runs on ``cel-expr-python`` (cel-cpp); ``common-expression-language``,
the library it ran on before, is measured beside it where it is installed
(``pip install common-expression-language``). Each library compiles every
case once; the time is binding the case's variables and evaluating, the
work guard repeats per rule and subject, measured in alternating rounds so
that outside load lands on both libraries alike.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from cel_expr_python import cel as cpp_cel

from controller.cli import main as cli_main
from controller.policy import celenv, contexts, engine
from controller.policy.bundled import bundled_policies_path
from controller.policy.celenv import HELPERS, CelEvaluationError, Compiled, new_context
from controller.policy.contexts import Contexts
from controller.policy.documents import Target
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from tests.bench.bench_engine import deployment, security_group
from tests.policy.cel_spec import Case, cases, same


def _rust_library() -> ModuleType | None:
    """``common-expression-language``'s compiled module, where it is installed."""
    try:
        return importlib.import_module("cel.cel")
    except ImportError:
        return None


rust_cel = _rust_library()

Runner = Callable[[], Any]
POLICIES = Path(__file__).resolve().parents[2] / "policies"


class Failed(Exception):
    """The library reported an error for the case (at compile or evaluation)."""


def prepare_rust(case: Case) -> Runner:
    """``common-expression-language``: compile once; each run builds a
    context and evaluates, errors raised as exceptions."""
    assert rust_cel is not None
    try:
        program = rust_cel.compile(case.expr)
    except Exception as exc:
        raise Failed(str(exc)) from None

    def run() -> Any:
        context = rust_cel.Context()
        for name, value in case.bindings.items():
            context.add_variable(name, value)
        try:
            return program.execute(context)
        except Exception as exc:
            raise Failed(str(exc)) from None

    return run


def prepare_cpp(case: Case) -> Runner:
    """``cel-expr-python`` (cel-cpp): an environment declaring the case's
    variables as dynamic, compile (type-checked) once; errors come back as
    values of type ERROR."""
    cel = cpp_cel
    env = cel.NewEnv(variables={name: cel.Type.DYN for name in case.bindings})
    try:
        expression = env.compile(case.expr)
    except Exception as exc:
        raise Failed(str(exc)) from None
    error = cel.Type.ERROR

    def run() -> Any:
        try:
            result = expression.eval(data=case.bindings)
        except Exception as exc:
            raise Failed(str(exc)) from None
        if result.type() == error:
            raise Failed(str(result.value()))
        return result.plain_value()

    return run


def judge(case: Case, prepare: Callable[[Case], Runner]) -> tuple[bool, Runner | None]:
    """Whether the library gets the case right, and its runner if it compiled."""
    try:
        run = prepare(case)
    except Failed:
        return case.error, None
    try:
        actual = run()
    except Failed:
        return case.error, run
    return (not case.error and same(case.expected, actual)), run


def main() -> None:
    rounds = int(os.environ.get("GUARD_BENCH_ROUNDS", "5"))
    kept, skipped = cases()
    libraries: dict[str, Callable[[Case], Runner]] = {"cel-expr-python": prepare_cpp}
    if rust_cel is not None:
        libraries["common-expression-language"] = prepare_rust
    else:
        print("common-expression-language is not installed: only cel-expr-python is measured")
    print(f"{len(kept)} conformance cases kept, {skipped} left out (protobuf messages, containers)")
    runners: dict[str, dict[int, Runner]] = {}
    for label, prepare in libraries.items():
        passed: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        runners[label] = {}
        for index, case in enumerate(kept):
            ok, run = judge(case, prepare)
            (passed if ok else failed)[case.file] += 1
            if ok and run is not None:
                runners[label][index] = run
        per_file = ", ".join(f"{f} {failed[f]}" for f in sorted(failed))
        print(f"{label}: {sum(passed.values())} pass, {sum(failed.values())} fail ({per_file})")
        if os.environ.get("GUARD_BENCH_VERBOSE"):
            for index, case in enumerate(kept):
                if index not in runners[label]:
                    print(f"  {case.file}/{case.name}: {case.expr}")
    # Time the cases every library gets right, in alternating rounds.
    common = sorted(set.intersection(*(set(r) for r in runners.values())))
    print(f"timed: the {len(common)} cases every library passes")
    per_case: dict[str, list[float]] = {label: [] for label in runners}
    for round_ in range(rounds):
        order = list(runners)
        if round_ % 2:
            order.reverse()
        for label in order:
            batch = [runners[label][i] for i in common]
            start = time.process_time()
            for _ in range(20):
                for run in batch:
                    with contextlib.suppress(Failed):
                        run()
            per_case[label].append((time.process_time() - start) / (20 * len(batch)) * 1e6)
    for label, figures in per_case.items():
        print(
            f"{label}: {statistics.median(figures):.1f} µs per case (CPU, median of "
            f"{rounds} rounds; min {min(figures):.1f}, max {max(figures):.1f})"
        )
    code, summary = bundle_cases()
    print(f"bundle cases with cel-expr-python: exit {code}; {summary}")
    idioms(rounds)
    if rust_cel is not None:
        with rust_engine():
            code, summary = bundle_cases()
        print(f"bundle cases with common-expression-language: exit {code}; {summary}")
        binding_per_subject(rounds)


# docs/policies.md, "Writing fast rules": each expression on the engine
# benchmark's objects (``c`` a container of the Deployment, ``r`` an ingress
# block of the security group, ``podSpec`` and ``object`` the Deployment's).
IDIOMS = (
    "lookup(c, 'image', '') != ''",
    "has(c.image) && c.image != ''",
    "lookup(c, 'securityContext.privileged', false) == true",
    "has(c.securityContext) && c.securityContext != null && "
    "has(c.securityContext.privileged) && c.securityContext.privileged == true",
    "lookup(c.securityContext, 'privileged', false) == true",
    "lookup(podSpec, 'volumes', []).all(v, !has(v.hostPath))",
    "!has(podSpec.volumes) || podSpec.volumes == null || podSpec.volumes.all(v, !has(v.hostPath))",
    "lookup(r, 'from_port', 0) <= 22",
    "!has(r.from_port) || r.from_port == null || r.from_port <= 22",
    "imageHasDigest(c.image)",
    "podSpec.containers.all(c, true)",
    "lookup(object, 'spec.template.metadata.labels.owner', '') != ''",
)


def idioms(rounds: int) -> None:
    """CPU per evaluation of each idiom on values already bound (a subject's
    rules share one activation), and what binding each value costs: the
    first read of a variable converts all of it, once per subject."""
    subject = deployment()
    pod_spec = subject.object["spec"]["template"]["spec"]
    values = {
        "c": pod_spec["containers"][0],
        "r": security_group().object["ingress"][0],
        "podSpec": pod_spec,
        "object": subject.object,
    }
    env = cpp_cel.NewEnv(
        variables={name: cpp_cel.Type.DYN for name in values},
        functions=celenv._DECLARATIONS,
    )
    programs = {source: env.compile(source) for source in IDIOMS}
    reads = {f"first read of {name}": env.compile(f"{name} != null") for name in values}
    figures: dict[str, list[float]] = {label: [] for label in (*IDIOMS, *reads)}
    for round_ in range(rounds):
        activation = env.Activation(values)
        for program in programs.values():
            program.eval(activation)  # every variable converted before timing
        order = list(IDIOMS) if round_ % 2 == 0 else list(reversed(IDIOMS))
        for source in order:
            program = programs[source]
            start = time.process_time()
            for _ in range(2000):
                program.eval(activation)
            figures[source].append((time.process_time() - start) / 2000 * 1e6)
        for label, program in reads.items():
            name = label.rsplit(" ", 1)[1]
            start = time.process_time()
            for _ in range(2000):
                program.eval(env.Activation({name: values[name]}))
            figures[label].append((time.process_time() - start) / 2000 * 1e6)
    print("rule idioms (CPU µs per evaluation on bound values, median):")
    for label, measured in figures.items():
        print(f"  {statistics.median(measured):6.1f}  {label}")


def binding_per_subject(rounds: int) -> None:
    """What one subject costs each library: the engine benchmark's
    Deployment, its variables trimmed as the engine trims them, bound once
    and read by every rule of its plan. Binding is converting the values
    (eager in common-expression-language, lazy in cel-cpp's activation)."""
    assert rust_cel is not None
    guard = Engine(load_bundle(bundled_policies_path()).policies)
    subject = deployment()
    plan = guard._plan(subject.target, guard.matching(subject))
    variables = Contexts(subject, plan.needed, plan.trims).plain_variables
    rules = [rule.expression for _, plan_rules in plan.rules for rule in plan_rules]
    rust_rules = [rust_compile(rule.source, subject.target) for rule in rules]

    def rust_all() -> None:
        context = rust_context(variables)
        for rule in rust_rules:
            with contextlib.suppress(CelEvaluationError):
                rule.run(context)

    def cpp_all() -> None:
        context = new_context(variables)
        for rule in rules:
            with contextlib.suppress(CelEvaluationError):
                rule.run(context)

    runs = {
        "common-expression-language bind": lambda: rust_context(variables),
        "common-expression-language bind + rules": rust_all,
        "cel-expr-python bind": lambda: new_context(variables),
        "cel-expr-python bind + rules": cpp_all,
    }
    figures: dict[str, list[float]] = {label: [] for label in runs}
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for label in order:
            start = time.process_time()
            for _ in range(500):
                runs[label]()
            figures[label].append((time.process_time() - start) / 500 * 1e6)
    print(f"one Deployment, its {len(rules)} rules (CPU µs per subject, median):")
    for label, values in figures.items():
        print(f"  {label}: {statistics.median(values):.0f}")


class RustCompiled(Compiled):
    """An expression compiled by common-expression-language, run as guard
    runs its own (errors as ``CelEvaluationError``)."""

    def run(self, context: Any) -> Any:
        try:
            return self.expression.execute(context)
        except Exception as exc:
            raise CelEvaluationError(str(exc)) from None


def rust_compile(source: str, target: Target) -> Compiled:
    """The expression as guard's engine holds it, compiled by
    common-expression-language; guard's own check decides what compiles."""
    assert rust_cel is not None
    checked = celenv.compile_expression(source, target)
    return RustCompiled(source, rust_cel.compile(source), checked.variables)


def rust_context(variables: Mapping[str, Any]) -> Any:
    """A common-expression-language context with every helper and the values."""
    assert rust_cel is not None
    context = rust_cel.Context()
    for name, function in HELPERS.items():
        context.add_function(name, function)
    for name, value in variables.items():
        context.add_variable(name, value)
    return context


@contextlib.contextmanager
def rust_engine() -> Iterator[None]:
    """guard's engine with common-expression-language behind it."""
    saved = engine.compile_expression, contexts.new_context
    engine.compile_expression, contexts.new_context = rust_compile, rust_context  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.compile_expression, contexts.new_context = saved  # type: ignore[assignment]


def bundle_cases() -> tuple[int, str]:
    """``guard policy test policies/``: its exit code and summary line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["policy", "test", str(POLICIES)])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


if __name__ == "__main__":
    main()
