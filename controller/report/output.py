"""Where reports go: ``--format FMT`` for standard output, ``--output FMT=FILE`` for files.

``--output sarif=out.sarif --output junit=out.xml`` writes two files beside
the ``--format`` report on standard output; ``--output json=-`` replaces
it. A bare ``--output X`` is refused with a hint, because users of conftest
and checkov expect ``--output json`` to choose a format, and writing a text
report to a file named ``json`` would surprise them. When no report goes to
standard output, the summary line does, so a CI log always shows the
verdict; ``quiet`` prints nothing at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from controller.errors import InputError
from controller.policy.results import Decision
from controller.report.context import ReportContext
from controller.report.registry import FORMAT_NAMES, render
from controller.report.summary import summary_line

STDOUT = "-"

# What a bare --output FILE probably meant, by the file's suffix.
_SUFFIX_FORMATS = {".sarif": "sarif", ".json": "json", ".xml": "junit", ".txt": "text"}

# (format, colour) -> the whole document in that format.
Renderer = Callable[[str, bool], str]


@dataclass(frozen=True)
class OutputSpec:
    format: str
    path: str  # "-" is standard output


def parse_output(value: str, formats: Sequence[str] = FORMAT_NAMES) -> OutputSpec:
    """One ``--output FORMAT=FILE`` value; anything else is bad input with a hint."""
    name, sep, path = value.partition("=")
    choices = ", ".join(formats)
    if not sep:
        if value in formats:
            hint = f"for standard output use --format {value}; for a file, --output {value}=FILE"
        else:
            guess = _SUFFIX_FORMATS.get(Path(value).suffix.lower())
            example = guess if guess in formats else "FORMAT"
            # The error stays one line whatever the value holds.
            shown = value if value.isprintable() else "FILE"
            hint = f"write --output {example}={shown} (FORMAT: {choices})"
        raise InputError(f"--output {value!r}: expected FORMAT=FILE; {hint}")
    if name not in formats:
        raise InputError(f"--output {value!r}: unknown format {name!r} (one of {choices})")
    if not path:
        raise InputError(f"--output {value!r}: name a file after '=' (or - for standard output)")
    return OutputSpec(name, path)


def parse_outputs(
    default_format: str,
    outputs: Sequence[str],
    formats: Sequence[str] = FORMAT_NAMES,
    *,
    quiet: bool = False,
) -> list[OutputSpec]:
    """Every destination: the ``--format`` report on standard output (unless an
    ``--output FMT=-`` replaces it, or ``quiet``), then each ``--output`` file."""
    if default_format not in formats:
        raise InputError(f"--format {default_format!r}: one of {', '.join(formats)}")
    specs = [parse_output(value, formats) for value in outputs]
    if sum(1 for s in specs if s.path == STDOUT) > 1:
        raise InputError("--output: only one report can go to standard output")
    if not any(s.path == STDOUT for s in specs):
        specs.insert(0, OutputSpec(default_format, STDOUT))
    if quiet:
        specs = [s for s in specs if s.path != STDOUT]
    return specs


def colour_wanted(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def write_outputs(
    renderer: Renderer,
    specs: Sequence[OutputSpec],
    *,
    summary: str | None = None,
    quiet: bool = False,
    stdout: TextIO | None = None,
) -> None:
    """Render once per destination; ``summary`` goes to standard output when no
    report does (and nothing does when ``quiet``)."""
    out = stdout if stdout is not None else sys.stdout
    for spec in specs:
        if spec.path == STDOUT:
            out.write(renderer(spec.format, spec.format == "text" and colour_wanted(out)))
            continue
        text = renderer(spec.format, False)
        try:
            Path(spec.path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--output {spec.path}: cannot write: {exc.strerror or exc}") from None
    if summary is not None and not quiet and not any(s.path == STDOUT for s in specs):
        out.write(summary + "\n")
    out.flush()


def write_reports(
    decision: Decision,
    context: ReportContext,
    specs: Sequence[OutputSpec],
    stdout: TextIO | None = None,
    *,
    quiet: bool = False,
) -> None:
    """A decision's report in every requested format."""

    def renderer(name: str, colour: bool) -> str:
        return render(name, decision, replace(context, colour=colour))

    write_outputs(
        renderer, specs, summary=summary_line(decision, context), quiet=quiet, stdout=stdout
    )
