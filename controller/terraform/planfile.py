"""Reading a plan: JSON from ``terraform show -json``, a binary plan, or stdin.

The input is read once as bytes, bounded in size. Those bytes are what the
review digest covers and what is judged: a binary plan is copied into a
private temporary folder and ``terraform show`` reads the copy, so a file
swapped on disk between the digest and the rendering changes neither.
Nothing else in ``guard`` reads the file again except the line finder, which
scans the bytes already in memory and only for findings.

The JSON is parsed strictly (:mod:`controller.strict`): a
duplicate key, ``NaN``, an overlong number or a lone surrogate is an input
error. Python's ``json`` would keep the last of two ``resource_changes``
keys, so a plan ending in ``"resource_changes": []`` would pass with no
resources; no parser that does that may ever read plans.

Plan format versions: Terraform wrote ``0.1`` (0.12-0.14), ``0.2``
(0.15-1.0) and ``1.x`` since 1.1, and promises that a minor bump only adds
fields. Anything else is refused with its version, never misread.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from controller.errors import InputError
from controller.strict import Limits, StrictJSONError, loads

ZIP_MAGIC = b"PK\x03\x04"
KNOWN_LEGACY_VERSIONS = ("0.1", "0.2")
_VERSION_1X = re.compile(r"1\.[0-9]+", re.ASCII)
STDIN = "-"
TERRAFORM_TIMEOUT_SECONDS = 600
# A 50,000-resource plan is about 60 MB of JSON; ten times that is refused
# before it is parsed rather than after it has exhausted memory.
MAX_PLAN_BYTES = 512 * 1024 * 1024
# Terraform numbers are arbitrary precision, but none in a real plan comes
# near this; it is also Python's own default limit for converting text.
MAX_PLAN_INT_DIGITS = 4300
# Nesting is bounded where values reach rules (normalize); the parser's own
# recursion guard turns anything deeper than it can read into an input error.
PLAN_LIMITS = Limits(max_bytes=MAX_PLAN_BYTES, max_int_digits=MAX_PLAN_INT_DIGITS)


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
        label = "<stdin>"
        data = _bounded_read(sys.stdin.buffer, label)
    else:
        label = source
        path = Path(source)
        try:
            with path.open("rb") as handle:
                data = _bounded_read(handle, label)
        except IsADirectoryError:
            raise InputError(f"{source}: is a directory, not a plan file") from None
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if data.startswith(ZIP_MAGIC):
        if source == STDIN:
            raise InputError(
                "<stdin>: a binary plan cannot be read from stdin; pass its path instead"
            )
        text = show_json(Path(source), data, terraform_dir)
        return _parsed(label, text, digest, json_only=False)
    return _parsed(label, data, digest, json_only=True)


def _bounded_read(stream: BinaryIO, label: str) -> bytes:
    data = stream.read(MAX_PLAN_BYTES + 1)
    if len(data) > MAX_PLAN_BYTES:
        raise InputError(f"{label}: larger than {MAX_PLAN_BYTES} bytes, refused as a plan")
    return data


def working_directory(plan: Path, terraform_dir: Path | None) -> Path | None:
    """Where ``terraform show`` runs: ``terraform_dir``; else the plan's folder
    when it holds ``.terraform``; else ``None`` (the current directory)."""
    if terraform_dir is not None:
        return terraform_dir
    folder = plan.resolve().parent
    # Plans are usually written into the initialised configuration folder,
    # where terraform finds the provider schemas it needs to render them.
    return folder if (folder / ".terraform").is_dir() else None


def show_json(plan: Path, data: bytes, terraform_dir: Path | None) -> bytes:
    """``terraform show -json`` of the binary plan ``data`` read from ``plan``.

    terraform reads a private copy of ``data``, never ``plan`` itself: the
    bytes that were hashed are the bytes that are judged. Its output goes to
    a file in the same private folder, so its size is checked before it is
    read into memory.
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
    cwd = working_directory(plan, terraform_dir)
    with tempfile.TemporaryDirectory(prefix="guard-plan-") as private:
        copy = Path(private) / "plan.tfplan"
        shown = Path(private) / "plan.json"
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        command = [terraform, "show", "-json", "-no-color", str(copy)]
        try:
            with shown.open("wb") as output:
                completed = subprocess.run(
                    command,
                    cwd=cwd,
                    env=env,
                    stdout=output,
                    stderr=subprocess.PIPE,
                    timeout=TERRAFORM_TIMEOUT_SECONDS,
                    check=False,
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"{plan}: running terraform show failed: {exc}") from None
        if completed.returncode != 0:
            detail = _last_error_line(completed.stderr.decode("utf-8", "replace"))
            raise InputError(f"{plan}: terraform show -json failed: {detail}")
        with shown.open("rb") as output:
            return _bounded_read(output, f"{plan}: terraform show -json output")


def _last_error_line(stderr: str) -> str:
    lines = [line.strip(" │╷╵\t") for line in stderr.splitlines()]
    meaningful = [line for line in lines if line]
    errors = [line for line in meaningful if line.startswith("Error")]
    return (errors or meaningful or ["no error output"])[0]


def parse_plan_json(label: str, data: bytes) -> dict[str, Any]:
    """The plan JSON object, parsed strictly; every problem is one InputError line."""
    if not data.strip():
        raise InputError(f"{label}: empty input, expected plan JSON (terraform show -json)")
    try:
        plan = loads(data, PLAN_LIMITS)
    except StrictJSONError as exc:
        if exc.truncated:
            raise InputError(f"{label}: truncated JSON ({exc})") from None
        raise InputError(f"{label}: not a plan: {exc}; and not a binary plan file") from None
    if not isinstance(plan, dict):
        raise InputError(f"{label}: not a Terraform plan: the JSON is not an object")
    return plan


def _parsed(label: str, data: bytes, digest: str, *, json_only: bool) -> PlanInput:
    plan = parse_plan_json(label, data)
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
    # ASCII digits only: "1.١" passes str.isdigit() but no Terraform wrote it.
    known = version in KNOWN_LEGACY_VERSIONS or _VERSION_1X.fullmatch(version) is not None
    if not known:
        raise InputError(
            f"{label}: plan format_version {version!r} is not one guard knows "
            "(0.1, 0.2 and 1.x are); upgrade guard rather than risk misreading it"
        )
    changes = plan.get("resource_changes", [])
    if not isinstance(changes, list):
        raise InputError(f"{label}: resource_changes is not a list")
    return version
