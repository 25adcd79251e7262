"""Where reports go: ``--format`` for stdout, ``--output [FORMAT=]FILE`` pairs.

``--output sarif=out.sarif --output junit=out.xml`` writes two files; a bare
``--output FILE`` takes the ``--format`` and replaces stdout. When no report
goes to stdout, the summary line does, so a CI log always shows the verdict.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from controller.errors import InputError
from controller.policy.results import Decision
from controller.report.context import ReportContext
from controller.report.registry import FORMAT_NAMES, render
from controller.report.summary import summary_line

STDOUT = "-"


@dataclass(frozen=True)
class OutputSpec:
    format: str
    path: str  # "-" is stdout


def parse_outputs(default_format: str, outputs: Sequence[str]) -> list[OutputSpec]:
    """The report destinations from ``--format`` and every ``--output``."""
    if default_format not in FORMAT_NAMES:
        raise InputError(f"--format {default_format!r}: one of {', '.join(FORMAT_NAMES)}")
    specs: list[OutputSpec] = []
    bare = False
    for value in outputs:
        name, sep, path = value.partition("=")
        if sep and name in FORMAT_NAMES:
            specs.append(OutputSpec(name, path or STDOUT))
        elif sep and name and "/" not in name and "." not in name:
            raise InputError(
                f"--output {value!r}: unknown format {name!r} (one of {', '.join(FORMAT_NAMES)})"
            )
        else:
            specs.append(OutputSpec(default_format, value))
            bare = True
    if not bare:
        specs.insert(0, OutputSpec(default_format, STDOUT))
    if sum(1 for s in specs if s.path == STDOUT) > 1:
        raise InputError("--output: only one report can go to stdout")
    return specs


def colour_wanted(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def write_reports(
    decision: Decision,
    context: ReportContext,
    specs: Sequence[OutputSpec],
    stdout: TextIO | None = None,
) -> None:
    out = stdout if stdout is not None else sys.stdout
    for spec in specs:
        if spec.path == STDOUT:
            coloured = replace(context, colour=spec.format == "text" and colour_wanted(out))
            out.write(render(spec.format, decision, coloured))
            continue
        text = render(spec.format, decision, replace(context, colour=False))
        try:
            Path(spec.path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--output {spec.path}: cannot write: {exc.strerror or exc}") from None
    if not any(spec.path == STDOUT for spec in specs):
        out.write(summary_line(decision, context) + "\n")
    out.flush()
