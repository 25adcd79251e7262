"""Run the built image as the chart runs it: its own entry point and user,
a read-only root filesystem, no capabilities, /tmp as a scratch tmpfs, the
configuration bind-mounted read-only.

The runner is Debian's ``runc`` on a bundle unpacked by ``umoci`` from the
OCI layout ``make image`` wrote; umoci derives the runtime configuration
(user, entry point, environment) from the image's own configuration, so
what runs is what Kubernetes would run. The container shares the host's
network namespace: the emulated API server and the test's client are on
loopback. (crun is not used: it refuses this machine's hybrid cgroups.)
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ship.tools import BuiltImage, require_root, require_tool, run

_ids = itertools.count()


@dataclass(frozen=True)
class Mount:
    source: Path
    destination: str


@dataclass(frozen=True)
class Unpacked:
    """The image's root filesystem and the runtime configuration umoci derived."""

    rootfs: Path
    config: dict[str, Any]
    workdir: Path

    def _bundle(
        self,
        args: Sequence[str] | None,
        command: Sequence[str] | None,
        mounts: Sequence[Mount],
        env: Mapping[str, str],
    ) -> Path:
        config = copy.deepcopy(self.config)
        config["root"] = {"path": str(self.rootfs), "readonly": True}
        process = config["process"]
        process["terminal"] = False
        if command is not None:
            process["args"] = list(command)
        elif args is not None:
            # The image's entry point with the chart's arguments, as Kubernetes does.
            process["args"] = [*self.entrypoint, *args]
        process["env"] = [*process["env"], *(f"{k}={v}" for k, v in env.items())]
        process["capabilities"] = {
            kind: [] for kind in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
        process["noNewPrivileges"] = True
        linux = config["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        config["mounts"] = [
            *config["mounts"],
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=65536k"],
            },
            *(
                {
                    "destination": m.destination,
                    "type": "bind",
                    "source": str(m.source),
                    "options": ["rbind", "ro"],
                }
                for m in mounts
            ),
        ]
        bundle = self.workdir / f"bundle-{os.getpid()}-{next(_ids)}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    @property
    def entrypoint(self) -> list[str]:
        # umoci puts Entrypoint + Cmd in args; Cmd is ["--help"].
        args: list[str] = self.config["process"]["args"]
        assert args[-1] == "--help", args
        return args[:-1]

    def run(
        self,
        args: Sequence[str] | None = None,
        *,
        command: Sequence[str] | None = None,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        bundle = self._bundle(args, command, mounts, env or {})
        name = bundle.name
        try:
            return run(["runc", "run", "--bundle", bundle, name], check=False, timeout=timeout)
        finally:
            subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)

    @contextmanager
    def start(
        self,
        args: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        log: Path,
    ) -> Iterator[subprocess.Popen[bytes]]:
        """A long-running container (``guard serve``), stopped and removed on exit."""
        bundle = self._bundle(args, None, mounts, env or {})
        name = bundle.name
        with log.open("wb") as output:
            process = subprocess.Popen(
                ["runc", "run", "--bundle", str(bundle), name],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                yield process
            finally:
                subprocess.run(["runc", "kill", name, "TERM"], capture_output=True, check=False)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    subprocess.run(["runc", "kill", name, "KILL"], capture_output=True, check=False)
                    process.wait(timeout=30)
                subprocess.run(
                    ["runc", "delete", "--force", name], capture_output=True, check=False
                )


def unpack(image: BuiltImage, workdir: Path) -> Unpacked:
    """umoci's unpack of the OCI layout, and its runtime configuration."""
    require_root("runc runs the image's own user from a root-owned bundle")
    require_tool("umoci", "umoci")
    require_tool("runc", "runc")
    rootfs = workdir / "rootfs"
    run(["umoci", "raw", "unpack", "--image", image.umoci_reference, rootfs])
    config_path = workdir / "config.json"
    run(
        [
            "umoci", "raw", "runtime-config", "--image", image.umoci_reference,
            "--rootfs", rootfs, config_path,
        ]
    )  # fmt: skip
    return Unpacked(rootfs, json.loads(config_path.read_text()), workdir)
