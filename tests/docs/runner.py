"""Run a doc's shell blocks in order, in one bash session, as a reader would.

Every command of every block that is not marked ``not run`` goes, in the
order of the doc, into one bash script that runs in a fresh folder holding a
copy of ``examples/`` and ``policies/`` (what a checkout has), with the
project's ``guard`` first on ``PATH``. Variables and files one block makes
are there for the next, as in a terminal. After each command the script
checks its exit code against the doc's ``# exit N`` (0 without one) and
stops at the first that differs; markers in the output tie every printed
line to its command, so a console block's shown lines are matched against
what that command printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import Block, Command, shown_in

ROOT = Path(__file__).resolve().parents[2]
# Programs a runnable block may not call: they need a cluster, the internet,
# a release's files or the whole suite. Such blocks carry ``not run``.
NEEDS_MORE = {"make", "helm", "kubectl", "docker", "pipx", "skopeo", "git"}
_STEP = re.compile(r"^@@step (\d+)$")
_FAILED = re.compile(r"^@@failed (\d+) (\d+)$")

_PRELUDE = """\
exec 2>&1
set -u
__expect() {
    if [ "$3" != "$2" ]; then printf '\\n@@failed %s %s\\n' "$1" "$3"; exit 97; fi
}
"""


@dataclass(frozen=True)
class Step:
    command: Command
    block: Block
    output: list[str]


class DocFailed(AssertionError):
    """A documented command did not do what the doc says."""


def script_for(commands: Sequence[Command]) -> str:
    parts = [_PRELUDE]
    for number, command in enumerate(commands):
        parts.append(f"printf '\\n@@step {number}\\n'\n{command.text}\n")
        parts.append(f"__expect {number} {command.expect} $?\n")
    return "".join(parts)


def prepare(folder: Path, *, without: Sequence[str] = ()) -> None:
    """A fresh folder with what a checkout offers the docs' commands."""
    ignore = shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfplan", "tfplan")
    for name in ("examples", "policies"):
        shutil.copytree(ROOT / name, folder / name, ignore=ignore)
    for relative in without:
        shutil.rmtree(folder / relative)
    (folder / "home").mkdir()


def environment(folder: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    keep = {k: v for k, v in os.environ.items() if k in {"LANG", "LC_ALL", "TMPDIR"}}
    return {
        **keep,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(folder / "home"),
        "NO_COLOR": "1",
        "TF_CLI_CONFIG_FILE": "/dev/null",
        "TF_IN_AUTOMATION": "1",
    }


def run_blocks(blocks: Sequence[Block], folder: Path) -> list[Step]:
    """Run the runnable blocks; raise ``DocFailed`` naming the first command
    that exits otherwise than the doc says or misses a shown line."""
    owned = [(block, command) for block in blocks if block.runs for command in block.commands()]
    for block, command in owned:
        if command.program in NEEDS_MORE:
            raise DocFailed(
                f"{block.doc}:{command.line}: `{command.text[:80]}` runs {command.program}: "
                "mark its block `<!-- not run: REASON -->`"
            )
    script = script_for([command for _, command in owned])
    finished = subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=environment(folder),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    outputs: dict[int, list[str]] = {}
    current = -1
    failed: tuple[int, int] | None = None
    for line in finished.stdout.splitlines():
        step, failure = _STEP.match(line), _FAILED.match(line)
        if step:
            current = int(step.group(1))
            outputs[current] = []
        elif failure:
            failed = (int(failure.group(1)), int(failure.group(2)))
        elif current >= 0 and line:
            outputs[current].append(line)
    steps = [Step(c, b, outputs.get(n, [])) for n, (b, c) in enumerate(owned)]
    if failed is not None:
        step = steps[failed[0]]
        raise DocFailed(
            f"{step.block.doc}:{step.command.line}: `{step.command.text[:200]}` exited "
            f"{failed[1]}, the doc says {step.command.expect}:\n" + "\n".join(step.output[-40:])
        )
    if finished.returncode != 0 or len(outputs) != len(owned):
        raise DocFailed(
            f"the script stopped after {len(outputs)} of {len(owned)} commands "
            f"(exit {finished.returncode}):\n{finished.stdout[-3000:]}"
        )
    for step in steps:
        if "Traceback" in "\n".join(step.output):
            raise DocFailed(f"{step.block.doc}:{step.command.line}: printed a traceback")
        for shown in step.command.shown:
            if not shown_in(shown, step.output):
                raise DocFailed(
                    f"{step.block.doc}:{step.command.line}: `{step.command.text[:120]}` did "
                    f"not print {shown!r}; it printed:\n" + "\n".join(step.output[-40:])
                )
    return steps
