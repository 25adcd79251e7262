"""The CEL specification's conformance cases against the CEL libraries guard
could sit on: passes, failures, and evaluation time per case.

``python -m tests.bench cel`` prints the table in docs/performance.md. Each
library compiles every case once; the time is binding the case's variables
and evaluating, the work guard repeats per rule and subject, measured in
alternating rounds so that outside load lands on both libraries alike.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.cli import main as cli_main
from controller.policy import celenv
from controller.policy.bundled import bundled_policies_path
from controller.policy.celenv import HELPERS, VARIABLES, helpers_used
from controller.policy.celenv import cel as rust_cel
from controller.policy.contexts import Contexts
from controller.policy.engine import Engine
from controller.policy.loader import load_bundle
from tests.bench.bench_engine import deployment
from tests.policy.cel_spec import Case, cases, same

try:
    from cel_expr_python import cel as cpp_cel
except ImportError:  # measured only where it is installed
    cpp_cel = None

Runner = Callable[[], Any]
POLICIES = Path(__file__).resolve().parents[2] / "policies"


class Failed(Exception):
    """The library reported an error for the case (at compile or evaluation)."""


def prepare_rust(case: Case) -> Runner:
    """``common-expression-language``: compile once; each run builds a
    context and evaluates, errors raised as exceptions."""
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
    libraries: dict[str, Callable[[Case], Runner]] = {"common-expression-language": prepare_rust}
    if cpp_cel is not None:
        libraries["cel-expr-python"] = prepare_cpp
    else:
        print("cel-expr-python is not installed: only common-expression-language is measured")
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
    modules: dict[str, Any] = {"common-expression-language": rust_cel}
    if cpp_cel is not None:
        modules["cel-expr-python"] = CppModule
    for label, module in modules.items():
        code, summary = bundle_cases(module)
        print(f"bundle cases with {label}: exit {code}; {summary}")
    if cpp_cel is not None:
        binding_per_subject(rounds)


def binding_per_subject(rounds: int) -> None:
    """What one subject costs each library: the engine benchmark's
    Deployment, its variables trimmed as the engine trims them, bound once
    and read by every rule of its plan whose expression calls no helper
    (helpers need typed overloads in cel-cpp). Binding is converting the values (eager in
    common-expression-language, lazy in cel-cpp's activation)."""
    engine = Engine(load_bundle(bundled_policies_path()).policies)
    subject = deployment()
    plan = engine._plan(subject.target, engine.matching(subject))
    variables = Contexts(subject, plan.needed, plan.trims, plan.helpers).plain_variables
    sources = [
        rule.rule.expression
        for _, rules in plan.rules
        for rule in rules
        if not helpers_used(rule.expression.program)
    ]
    rust_programs = [rust_cel.compile(source) for source in sources]
    env = cpp_cel.NewEnv(variables={name: cpp_cel.Type.DYN for name in variables})
    cpp_programs = [env.compile(source) for source in sources]

    def rust_bind() -> Any:
        context = rust_cel.Context()
        for name, value in variables.items():
            context.add_variable(name, value)
        return context

    def rust_all() -> None:
        context = rust_bind()
        for program in rust_programs:
            program.execute(context)

    def cpp_all() -> None:
        activation = env.Activation(variables)
        for program in cpp_programs:
            program.eval(activation)

    runs = {
        "common-expression-language bind": rust_bind,
        "common-expression-language bind + rules": rust_all,
        "cel-expr-python bind": lambda: env.Activation(variables),
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
    print(f"one Deployment, {len(sources)} rules without helpers (CPU µs per subject, median):")
    for label, values in figures.items():
        print(f"  {label}: {statistics.median(values):.0f}")


class CppProgram:
    """One expression compiled by cel-cpp, with the read-out guard's linter
    and planner use (variables, functions) taken from the current library's
    parse of the same text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.parsed = rust_cel.compile(source)
        self.compiled: dict[frozenset[str], Any] = {}

    def variables(self) -> list[str]:
        return list(self.parsed.variables())

    def functions(self) -> list[str]:
        return list(self.parsed.functions())

    def execute(self, context: CppContext) -> Any:
        helpers = frozenset(context.functions)
        expression = self.compiled.get(helpers)
        if expression is None:
            expression = cpp_env(helpers).compile(self.source, disable_check=True)
            self.compiled[helpers] = expression
        result = expression.eval(data=context.variables)
        if result.type() == cpp_cel.Type.ERROR:
            raise RuntimeError(str(result.value()))
        return result.plain_value()


class CppContext:
    def __init__(self) -> None:
        self.variables: dict[str, Any] = {}
        self.functions: dict[str, Any] = {}

    def add_variable(self, name: str, value: Any) -> None:
        self.variables[name] = value

    def add_function(self, name: str, function: Any) -> None:
        self.functions[name] = function


_ENVS: dict[frozenset[str], Any] = {}


def cpp_env(helpers: frozenset[str]) -> Any:
    """A cel-cpp environment with guard's variables and the named helpers,
    each declared once per arity it accepts (and ``join`` as a method too)."""
    env = _ENVS.get(helpers)
    if env is not None:
        return env
    cel = cpp_cel
    declarations = []
    for name in sorted(helpers):
        function = HELPERS[name]
        parameters = inspect.signature(function).parameters.values()
        required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
        overloads = [
            cel.Overload(
                id=f"{name}_{arity}", return_type=cel.Type.DYN,
                parameters=[cel.Type.DYN] * arity, impl=function,
            )
            for arity in range(required, len(parameters) + 1)
        ]  # fmt: skip
        if name == "join":
            overloads += [
                cel.Overload(
                    id=f"{name}_member_{arity}", return_type=cel.Type.DYN,
                    parameters=[cel.Type.DYN] * arity, is_member=True, impl=function,
                )
                for arity in range(required, len(parameters) + 1)
            ]  # fmt: skip
        declarations.append(cel.FunctionDecl(name, overloads))
    names = set().union(*VARIABLES.values())
    env = cel.NewEnv(variables={name: cel.Type.DYN for name in names}, functions=declarations)
    _ENVS[helpers] = env
    return env


class CppModule:
    """The two entry points guard's CEL module uses, over cel-cpp."""

    Context = CppContext

    @staticmethod
    def compile(source: str) -> CppProgram:
        return CppProgram(source)


def bundle_cases(module: Any) -> tuple[int, str]:
    """``guard policy test policies/`` with the given CEL module behind the
    engine: its exit code and summary line."""
    saved = celenv.cel
    celenv.cel = module
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = cli_main(["policy", "test", str(POLICIES)])
    finally:
        celenv.cel = saved
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


if __name__ == "__main__":
    main()
