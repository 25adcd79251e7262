"""The fenced blocks of a Markdown doc, read as a reader copies them.

A block may carry a marker on the line right above its fence:

- ``<!-- not run: REASON -->`` on a shell block: it needs what a test cannot
  have (a cluster, the internet, a release's files); the reason is listed by
  the tests, and blocks of ``helm`` commands are rendered instead;
- ``<!-- yaml: REASON -->`` on a YAML block that is not a whole document
  (a fragment of a values file or of a policy, shown for its shape).

Shell blocks (``sh``, ``console``) are split into commands the way bash
reads them: backslash continuations joined, a here-document kept with its
command. A ``# exit N`` comment says which exit code the command promises;
in a ``console`` block, the lines under a ``$ `` command are what it prints
(``…`` stands for any text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(\s*)```([A-Za-z]*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*(not run|yaml):\s*(.+?)\s*-->$")
EXIT = re.compile(r"#\s*exit (\d+)\b")
HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")


@dataclass(frozen=True)
class Command:
    """One command as bash would read it, with the exit code it promises and,
    in a console block, the lines shown under it."""

    text: str
    line: int
    expect: int = 0
    shown: tuple[str, ...] = ()

    @property
    def program(self) -> str:
        words = self.text.split()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
            words = words[1:]
        return words[0] if words else ""


@dataclass(frozen=True)
class Block:
    """One fenced block of a doc: where it starts and what marks it."""

    doc: str
    language: str
    text: str
    line: int
    marker: str | None = None  # "not run" or "yaml"
    reason: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in {"sh", "console"} and self.marker != "not run"

    def commands(self) -> list[Command]:
        if self.language == "console":
            return _console_commands(self.text, self.line)
        return _shell_commands(self.text, self.line)


def blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of the doc at ``path``, in order."""
    doc = str(path.relative_to(root))
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    position = 0
    while position < len(lines):
        opening = FENCE.match(lines[position])
        if not opening:
            position += 1
            continue
        start = position
        indent = len(opening.group(1))  # a block inside a list item
        position += 1
        body: list[str] = []
        while position < len(lines) and not lines[position].strip().startswith("```"):
            body.append(lines[position][indent:])
            position += 1
        position += 1
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        found.append(
            Block(
                doc=doc,
                language=opening.group(2),
                text="\n".join(body) + "\n",
                line=start + 2,
                marker=marker.group(1) if marker else None,
                reason=marker.group(2) if marker else None,
            )
        )
    return found


def _shell_commands(text: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    lines = text.splitlines()
    position = 0
    while position < len(lines):
        start = position
        line = lines[position]
        position += 1
        while line.endswith("\\") and position < len(lines):
            line = line[:-1] + " " + lines[position].strip()
            position += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        heredoc = HEREDOC.search(stripped.split("#", 1)[0])
        body = ""
        if heredoc:
            terminator = heredoc.group(1)
            collected = []
            while position < len(lines) and lines[position].strip() != terminator:
                collected.append(lines[position])
                position += 1
            position += 1
            body = "\n" + "\n".join([*collected, terminator])
        expect = EXIT.search(stripped)
        commands.append(
            Command(stripped + body, first_line + start, int(expect.group(1)) if expect else 0)
        )
    return commands


def _console_commands(text: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    for number, raw in enumerate(text.replace("\\\n", " ").splitlines()):
        if raw.startswith("$ "):
            expect = EXIT.search(raw)
            commands.append(
                Command(raw[2:].strip(), first_line + number, int(expect.group(1)) if expect else 0)
            )
        elif raw.strip() and commands:
            last = commands[-1]
            commands[-1] = Command(last.text, last.line, last.expect, (*last.shown, raw.rstrip()))
    return commands


def shown_in(shown: str, output_lines: list[str]) -> bool:
    """Whether a shown line (``…`` = any text) is one of the printed lines."""
    pattern = ".*".join(re.escape(part) for part in shown.split("…"))
    return any(re.fullmatch(pattern, line) for line in output_lines)
