"""Debian's docker-registry (the CNCF distribution registry) on loopback: a
real OCI registry for ``helm push``/``helm pull`` and ``skopeo copy``."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.ship.tools import free_port, require_tool

START_TIMEOUT = 30.0


@contextmanager
def running_registry(workdir: Path) -> Iterator[str]:
    """Yields ``127.0.0.1:PORT``; the registry stops and its storage goes on exit."""
    binary = require_tool("docker-registry", "docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "registry.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = workdir / "registry.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(port, process, log)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/v2/")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            pass
        try:
            # Waiting on the registry itself between attempts: an early exit shows at once.
            code = process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"docker-registry exited {code}:\n{log.read_text()}")
    pytest.fail(f"docker-registry did not answer within {START_TIMEOUT} s:\n{log.read_text()}")
