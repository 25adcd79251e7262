"""The engine over a large plan, in several processes.

Compiled CEL programs cannot be pickled, so workers are forked: each child
inherits the engine, its compiled rules and the parsed subjects, judges one
contiguous slice of the subjects and sends back only its findings (plain
frozen dataclasses, a few per failing resource). The parent judges a slice
too, and every subject that carries artifacts: review requirements are
checked in the parent alone, where the review evaluator records what it
verified for the report.

Memory: the children share the parent's pages until they write to them.
The collector is frozen before forking (``gc.freeze``), so a child's
collections do not write to every object of the plan; a child copies
only the pages of the subjects it reads (reference counts) and what it
allocates itself, so all processes together stay near one parsed plan plus
one slice per worker.

Any failure in a child (it died, or its answer cannot be read) makes the
parent judge that slice itself, so the result, and any error, is exactly
the one-process result.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
from collections.abc import Sequence

from controller.policy.engine import Engine
from controller.policy.results import Decision, Finding, Subject
from controller.policy.reviewer import ReviewEvaluator

# Below this many subjects forking costs more than it saves (a fork and a
# pipe are about a millisecond; the engine judges a resource in tens of µs).
THRESHOLD = 5_000
# No worker gets fewer subjects than this.
MIN_SLICE = 2_500


def cpus() -> int:
    """The CPUs this process may run on (a container's limit, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def processes_for(count: int, available: int | None = None) -> int:
    """How many processes judge ``count`` subjects (1: no fork)."""
    if count < THRESHOLD or not hasattr(os, "fork"):
        return 1
    return max(1, min(available if available is not None else cpus(), count // MIN_SLICE))


def decide(
    engine: Engine,
    subjects: Sequence[Subject],
    *,
    review: ReviewEvaluator | None = None,
    notes: Sequence[str] = (),
    processes: int | None = None,
) -> Decision:
    """``engine.decide`` over the subjects, in ``processes`` processes
    (by default as many as the subjects and CPUs warrant)."""
    count = processes if processes is not None else processes_for(len(subjects))
    if count <= 1:
        return engine.decide(subjects, review=review, notes=notes)
    reviewed = [s for s in subjects if s.artifacts]
    plain = [s for s in subjects if not s.artifacts]
    size = -(-len(plain) // count)
    slices = [plain[i : i + size] for i in range(0, len(plain), size)]
    # Buffered output would be written once more by every child.
    sys.stdout.flush()
    sys.stderr.flush()
    # A caller that froze the collector itself (a one-shot command) keeps
    # its objects frozen; otherwise they are unfrozen again afterwards.
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        children = [_fork(engine, part) for part in slices[1:]]
        findings: list[Finding] = []
        for subject in (*reviewed, *slices[0]):
            findings.extend(engine.evaluate(subject, review=review).findings)
        for (pid, fd), part in zip(children, slices[1:], strict=True):
            answer = _collect(pid, fd)
            if answer is None:
                answer = [f for s in part for f in engine.evaluate(s, review=review).findings]
            findings.extend(answer)
    finally:
        if not frozen_before:
            gc.unfreeze()
    return Decision.of(findings, subjects=len(subjects), notes=[*notes, *engine.exception_notes()])


def _fork(engine: Engine, part: Sequence[Subject]) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: judge, answer, and leave without the parent's exit handlers
        os.close(read)
        status = 1
        try:
            answer = [f for s in part for f in engine.evaluate(s).findings]
            with os.fdopen(write, "wb") as out:
                pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return pid, read


def _collect(pid: int, fd: int) -> list[Finding] | None:
    """A child's findings, or None when it did not answer in full."""
    with os.fdopen(fd, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    try:
        answer = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None
    if not isinstance(answer, list) or not all(isinstance(f, Finding) for f in answer):
        return None
    return answer
