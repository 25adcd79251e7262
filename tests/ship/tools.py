"""What the shipping tests share: the repository, the built image, and the
rule for tools that may be missing.

A test that needs root, buildah, runc or the registry skips only with a
reason that says what is missing and how to get it, and never in CI:
``.ci/run`` installs those tools and sets ``GUARD_REQUIRE_IMAGE_TOOLS=1``,
which turns each of these skips into a failure. The one skip that stays
possible there is the image build's own report that the disk is short.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_OUT = REPO_ROOT / "build" / "image"
WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
REQUIRED_ENV = "GUARD_REQUIRE_IMAGE_TOOLS"
BUILDAH = ("buildah", "--storage-driver", "vfs")


def unavailable(reason: str) -> NoReturn:
    """Skip with the reason, or fail where the tools are required (CI)."""
    if os.environ.get(REQUIRED_ENV):
        pytest.fail(f"{reason} ({REQUIRED_ENV} is set: these tools must run here)")
    pytest.skip(reason)


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not installed (apt-get install {package})")
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"needs root: {why}")


@dataclass(frozen=True)
class BuiltImage:
    """What ``make image`` wrote to build/image/image.json."""

    name: str
    version: str
    digest: str
    compressed_bytes: int
    layout: Path

    @property
    def repository(self) -> str:
        return self.name.rsplit(":", 1)[0]

    @property
    def oci_reference(self) -> str:
        """The image in its OCI layout, as skopeo and umoci name it."""
        return f"oci:{self.layout}:{self.version}"

    @property
    def umoci_reference(self) -> str:
        return f"{self.layout}:{self.version}"

    def inspect(self) -> dict[str, Any]:
        """``buildah inspect`` of the image in buildah's storage."""
        result = run([*BUILDAH, "inspect", "--type", "image", self.name])
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def built_image() -> BuiltImage:
    """The image ``make image`` built, or a skip that says why there is none."""
    info = IMAGE_OUT / "image.json"
    if not info.is_file():
        marker = IMAGE_OUT / "unavailable"
        if marker.is_file():
            # The build ran and said why it could not build (short disk): a
            # reason, not a missing step.
            pytest.skip(f"image not built: {marker.read_text().strip()}")
        unavailable("no image: run `make image` (root, buildah and mmdebstrap)")
    data = json.loads(info.read_text())
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    ).stdout.strip()
    if head and data.get("revision") != head:
        unavailable(
            f"the image was built from {data.get('revision')}, the checkout is at {head}: "
            "run `make image`"
        )
    return BuiltImage(
        name=data["image"],
        version=data["version"],
        digest=data["digest"],
        compressed_bytes=data["compressedBytes"],
        layout=IMAGE_OUT / "oci",
    )


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure shows its output, not just its exit code."""
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in argv)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without pip's and guard's settings from this machine."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "GUARD_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env
