"""Reading a plan: JSON from ``terraform show -json``, a binary plan, or stdin.

The input is read once as bytes (the review digest needs them) and parsed
once; nothing else in ``guard`` reads the file again except the line finder,
which scans the bytes already in memory and only for findings.

Plan format versions: Terraform wrote ``0.1`` (0.12-0.14), ``0.2``
(0.15-1.0) and ``1.x`` since 1.1, and promises that a minor bump only adds
fields. Anything else is refused with its version, never misread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
KNOWN_LEGACY_VERSIONS = ("0.1", "0.2")
STDIN = "-"
TERRAFORM_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class PlanInput:
    """A parsed plan and what the review needs to know about where it came from.

    ``digest`` is ``sha256:<hex>`` of the binary plan when one was given
    (what ``terraform apply`` consumes), else of the JSON bytes, and then
    ``json_only`` is set: a review of JSON says nothing about the binary plan.
    ``text`` is the JSON as bytes, kept for finding line numbers lazily.
    """

    source: str
    plan: dict[str, Any]
    text: bytes
    digest: str
    json_only: bool
    format_version: str


def read_plan(source: str, terraform_dir: Path | None = None) -> PlanInput:
    """Read ``source`` (a path or ``-``) into a checked :class:`PlanInput`."""
    if source == STDIN:
        data = sys.stdin.buffer.read()
        label = "<stdin>"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            raise InputError(f"{source}: is a directory, not a plan file") from None
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
        label = source
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if data.startswith(ZIP_MAGIC):
        if source == STDIN:
            raise InputError(
                "<stdin>: a binary plan cannot be read from stdin; pass its path instead"
            )
        text = show_json(Path(source), terraform_dir)
        return _parsed(label, text, digest, json_only=False)
    return _parsed(label, data, digest, json_only=True)


def show_json(plan: Path, terraform_dir: Path | None) -> bytes:
    """Run ``terraform show -json PLAN`` in the plan's initialised working directory.

    ``terraform_dir`` wins; else the plan's folder when it holds ``.terraform``;
    else the current directory.
    """
    terraform = shutil.which("terraform")
    if terraform is None:
        raise InputError(
            f"{plan}: is a binary plan and terraform is not on PATH to read it; "
            "install terraform, or pass the output of `terraform show -json` "
            "(a review then covers the JSON only)"
        )
    env = dict(os.environ)
    env.setdefault("TF_IN_AUTOMATION", "1")
    command = [terraform, "show", "-json", "-no-color", str(plan.resolve())]
    if terraform_dir is None and (plan.resolve().parent / ".terraform").is_dir():
        # Plans are usually written into the initialised configuration folder,
        # where terraform finds the provider schemas it needs to render them.
        terraform_dir = plan.resolve().parent
    try:
        completed = subprocess.run(
            command,
            cwd=terraform_dir,
            env=env,
            capture_output=True,
            timeout=TERRAFORM_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{plan}: running terraform show failed: {exc}") from None
    if completed.returncode != 0:
        detail = _last_error_line(completed.stderr.decode("utf-8", "replace"))
        raise InputError(f"{plan}: terraform show -json failed: {detail}")
    return completed.stdout


def _last_error_line(stderr: str) -> str:
    lines = [line.strip(" │╷╵\t") for line in stderr.splitlines()]
    meaningful = [line for line in lines if line]
    errors = [line for line in meaningful if line.startswith("Error")]
    return (errors or meaningful or ["no error output"])[0]


def _parsed(label: str, data: bytes, digest: str, *, json_only: bool) -> PlanInput:
    if not data.strip():
        raise InputError(f"{label}: empty input, expected plan JSON (terraform show -json)")
    try:
        plan = json.loads(data)
    except UnicodeDecodeError:
        raise InputError(f"{label}: not a plan: neither JSON nor a binary plan file") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(data.rstrip()) - 1 or "Unterminated" in exc.msg:
            reason = f"truncated JSON ({exc.msg} at line {exc.lineno})"
        else:
            reason = (
                f"not a plan: not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}) and not a binary plan file"
            )
        raise InputError(f"{label}: {reason}") from None
    if not isinstance(plan, dict):
        raise InputError(f"{label}: not a Terraform plan: the JSON is not an object")
    version = check_format_version(label, plan)
    return PlanInput(
        source=label,
        plan=plan,
        text=data,
        digest=digest,
        json_only=json_only,
        format_version=version,
    )


def check_format_version(label: str, plan: dict[str, Any]) -> str:
    """The plan's ``format_version``, refusing state files and unknown versions."""
    if "format_version" not in plan:
        raise InputError(
            f"{label}: not a Terraform plan: no format_version "
            "(expected the output of `terraform show -json PLANFILE`)"
        )
    version = plan["format_version"]
    if not isinstance(version, str):
        raise InputError(f"{label}: not a Terraform plan: format_version is not a string")
    if "resource_changes" not in plan and "planned_values" not in plan:
        what = "a state file" if "values" in plan else "not a plan"
        raise InputError(
            f"{label}: {what}: no resource_changes or planned_values "
            "(expected the output of `terraform show -json PLANFILE`)"
        )
    major, _, minor = version.partition(".")
    known = version in KNOWN_LEGACY_VERSIONS or (major == "1" and minor.isdigit())
    if not known:
        raise InputError(
            f"{label}: plan format_version {version!r} is not one guard knows "
            "(0.1, 0.2 and 1.x are); upgrade guard rather than risk misreading it"
        )
    changes = plan.get("resource_changes", [])
    if not isinstance(changes, list):
        raise InputError(f"{label}: resource_changes is not a list")
    return version
