"""The image ``make image`` built: what is in it, how it compares with the
Dockerfile, and guard running inside it as the chart runs it (runc, the
image's entry point and user, a read-only root filesystem)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import __version__
from controller.kube.settings import WEBHOOK_PATH
from tests.chart.helm import render_chart
from tests.kube.helpers import admission_review, workload
from tests.operator.harness import EmulatedApi, make_tls
from tests.ship.runtime import Mount, Unpacked, unpack
from tests.ship.test_lock import _entries
from tests.ship.tools import REPO_ROOT, BuiltImage, built_image, free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
POLICIES = REPO_ROOT / "policies"
EXAMPLES = REPO_ROOT / "examples"
# Debian's Python by suite: the Dockerfile and the build script name a suite.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
SITE_PACKAGES = "opt/guard/lib/python3.11/site-packages"
# The budget the README states for the compressed image.
MAX_COMPRESSED_BYTES = 100 * 1024 * 1024
READY_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


@pytest.fixture(scope="module")
def unpacked(image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    return unpack(image, tmp_path_factory.mktemp("image"))


# ------------------------------------------------------------------ the Dockerfile


def _final_stage() -> dict[str, Any]:
    """The last stage's USER, ENTRYPOINT, CMD, EXPOSE, ENV and LABEL, with ARG defaults."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    global_args = dict(re.findall(r"^ARG (\w+)=(\S+)", stages[0], re.MULTILINE))
    final = stages[-1]
    args = {**global_args, **dict(re.findall(r"^ARG (\w+)=(\S+)", final, re.MULTILINE))}

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)

    def pairs(keyword: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in re.findall(rf"^{keyword} (.*)$", final, re.MULTILINE):
            for key, quoted, bare in re.findall(r'([\w.]+)=(?:"([^"]*)"|(\S+))', line):
                found[key] = expand(quoted or bare)
        return found

    def one(keyword: str) -> str:
        (value,) = re.findall(rf"^{keyword} (.*)$", final, re.MULTILINE)
        return str(value).strip()

    base = expand(stages[-1].splitlines()[0].strip())
    return {
        "base": base,
        "User": one("USER"),
        "Entrypoint": json.loads(one("ENTRYPOINT")),
        "Cmd": json.loads(one("CMD")),
        "ExposedPorts": set(one("EXPOSE").split()),
        "Env": pairs("ENV"),
        "Labels": pairs("LABEL"),
    }


def test_image_config_matches_the_dockerfile(image: BuiltImage) -> None:
    config = image.inspect()["OCIv1"]["config"]
    docker = _final_stage()
    assert config["User"] == docker["User"] == "65532:65532"
    assert config["Entrypoint"] == docker["Entrypoint"]
    assert config["Cmd"] == docker["Cmd"]
    assert set(config["ExposedPorts"]) == docker["ExposedPorts"]
    assert dict(e.split("=", 1) for e in config["Env"]) == docker["Env"]
    labels = {k: v for k, v in config["Labels"].items() if k.startswith("org.opencontainers.")}
    expected = dict(docker["Labels"])
    # Set per build: the commit built, here and in the Dockerfile's --build-arg.
    assert re.fullmatch(r"[0-9a-f]{40}", labels.pop("org.opencontainers.image.revision"))
    expected.pop("org.opencontainers.image.revision")
    assert labels == expected
    assert labels["org.opencontainers.image.version"] == __version__


def test_python_minor_version_matches_the_dockerfile(unpacked: Unpacked) -> None:
    suite = re.search(r"debian:(\w+)", _final_stage()["base"])
    assert suite is not None
    script = (REPO_ROOT / "packaging" / "build-image.sh").read_text()
    assert f"SUITE={suite.group(1)}\n" in script
    minor = DEBIAN_PYTHON[suite.group(1)]
    assert (unpacked.rootfs / "usr" / "bin" / f"python{minor}").is_file()
    venv = (unpacked.rootfs / "opt" / "guard" / "pyvenv.cfg").read_text()
    assert re.search(rf"^version = {re.escape(minor)}\.\d+$", venv, re.MULTILINE), venv


def test_image_is_amd64_and_named_as_the_chart_expects(image: BuiltImage) -> None:
    inspected = image.inspect()["OCIv1"]
    assert (inspected["os"], inspected["architecture"]) == ("linux", "amd64")
    values = yaml.safe_load((REPO_ROOT / "charts" / "guard" / "values.yaml").read_text())
    chart = yaml.safe_load((REPO_ROOT / "charts" / "guard" / "Chart.yaml").read_text())
    assert image.name == f"{values['image']['repository']}:{chart['appVersion']}"
    assert chart["appVersion"] == __version__
    deployment = render_chart({}).one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image.name


# ------------------------------------------------------------------ what is inside


def test_image_holds_the_runtime_only(unpacked: Unpacked, image: BuiltImage) -> None:
    root = unpacked.rootfs
    compiler = re.compile(r"gcc|g\+\+|clang|^cc$|^c\+\+$")
    assert [p.name for p in (root / "usr" / "bin").iterdir() if compiler.search(p.name)] == []
    # No package manager but dpkg's own database (what SBOM scanners read).
    assert not (root / "usr" / "bin" / "apt-get").exists()
    assert not (root / "var" / "cache" / "apt").exists()
    assert not (root / "var" / "lib" / "apt").exists()
    assert not list((root / SITE_PACKAGES).glob("pip*"))
    assert not (root / "opt" / "guard" / "bin" / "pip").exists()
    assert not list((root / "tmp").iterdir())
    assert "guard:x:65532:65532:" in (root / "etc" / "passwd").read_text()
    assert image.compressed_bytes < MAX_COMPRESSED_BYTES


def test_image_installs_exactly_the_lock_and_the_bundle(unpacked: Unpacked) -> None:
    site = unpacked.rootfs / SITE_PACKAGES
    installed = {}
    for info in site.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, re.MULTILINE)
        version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
        assert name and version
        installed[name.group(1).strip().lower().replace("_", "-")] = version.group(1).strip()
    locked = {name: str(version) for name, (version, _) in _entries().items()}
    assert installed == {**locked, "guard": __version__}
    bundle = site / "controller" / "policy" / "bundle"
    assert not bundle.is_symlink()
    shipped = {p.name: p.read_bytes() for p in bundle.glob("*.yaml")}
    assert shipped == {p.name: p.read_bytes() for p in POLICIES.glob("*.yaml")}


# ------------------------------------------------------------------ guard inside it


def test_runs_as_65532_on_a_read_only_root(unpacked: Unpacked) -> None:
    result = unpacked.run(
        command=["/bin/sh", "-c", "id -u; id -g; touch /opt/guard/x; touch /tmp/x && echo tmp-ok"]
    )
    lines = result.stdout.split()
    assert lines[:2] == ["65532", "65532"]
    assert "Read-only file system" in result.stderr
    assert "tmp-ok" in result.stdout


def test_version_through_the_entrypoint(unpacked: Unpacked) -> None:
    result = unpacked.run(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"guard {__version__}"


def test_tf_plan_with_the_default_bundle(unpacked: Unpacked) -> None:
    result = unpacked.run(
        ["tf-plan", "/work/plans/aws-failing.json"],
        mounts=[Mount(EXAMPLES / "terraform" / "plans", "/work/plans")],
    )
    assert result.returncode == 1, result.stderr
    assert "no-public-s3" in result.stdout
    assert "Traceback" not in result.stderr


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "guard", "user": {"token": "test-only"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "guard"}}],
        "current-context": "emulated",
    }
    path.write_text(yaml.safe_dump(config))
    return path


# A configured install: with no trust keys at all the chart's Secret is empty
# and `guard serve` refuses the empty folder (reported; see the chart tests).
CHART_VALUES = {
    "trust": {
        "keys": [
            {
                "name": "ci-attester",
                "role": "attester",
                "publicKey": (EXAMPLES / "keys" / "ci-attester.pub").read_text(),
            }
        ]
    }
}


def _chart_volume(kind: str, suffix: str, folder: Path) -> Path:
    """A ConfigMap's or Secret's files as the kubelet mounts them."""
    data = render_chart(CHART_VALUES).one(kind, suffix)["data"]
    folder.mkdir()
    for name, value in data.items():
        content = base64.b64decode(value) if kind == "Secret" else value.encode()
        (folder / name).write_bytes(content)
    return folder


def _chart_args(webhook_port: int, metrics_port: int) -> list[str]:
    """The chart's own arguments for the container, on free loopback ports."""
    deployment = render_chart(CHART_VALUES).one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [str(a) for a in container["args"]]
    args[args.index("--webhook-port") + 1] = str(webhook_port)
    args[args.index("--metrics-port") + 1] = str(metrics_port)
    return [*args, "--webhook-host", "127.0.0.1"]


@pytest.fixture
def api() -> Iterator[EmulatedApi]:
    emulated = EmulatedApi()
    emulated.start()
    yield emulated
    emulated.stop()


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds until /readyz answers 200; fails with the log if guard exits."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        finally:
            connection.close()
        try:
            # Waiting on guard itself between probes (as the kubelet's
            # readinessProbe does): an early exit is seen at once.
            code = process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"guard exited {code}:\n{log.read_text()}")
    pytest.fail(f"guard was not ready within {READY_TIMEOUT} s:\n{log.read_text()}")


def test_serve_answers_an_admission_review_over_tls(
    unpacked: Unpacked, api: EmulatedApi, tmp_path: Path
) -> None:
    tls = make_tls(tmp_path / "tls")
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", api.url)
    webhook_port, metrics_port = free_port(), free_port()
    log = tmp_path / "guard.log"
    with unpacked.start(
        _chart_args(webhook_port, metrics_port),
        mounts=[
            Mount(_chart_volume("ConfigMap", "-policies", tmp_path / "p"), "/etc/guard/policies"),
            Mount(_chart_volume("Secret", "-trust", tmp_path / "t"), "/etc/guard/trust"),
            Mount(tls.cert.parent, "/etc/guard/tls"),
            Mount(kubeconfig, "/etc/guard/kubeconfig"),
        ],
        env={"KUBECONFIG": "/etc/guard/kubeconfig"},
        log=log,
    ) as process:
        seconds = _wait_ready(metrics_port, process, log)
        review = admission_review(workload("Deployment", "web", "shop", "nginx:1.25"))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", webhook_port, context=tls.client_context(), timeout=30
        )
        try:
            connection.request(
                "POST",
                WEBHOOK_PATH,
                body=json.dumps(review),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            body = json.loads(response.read())
        finally:
            connection.close()
    assert response.status == 200
    answer = body["response"]
    assert answer["uid"] == review["request"]["uid"]
    assert answer["allowed"] is False
    assert "images-pinned-by-digest" in answer["status"]["message"]
    assert seconds < READY_TIMEOUT
    (tmp_path.parent / "startup-seconds.txt").write_text(f"{seconds:.2f}\n")
    print(f"guard serve in the image: ready in {seconds:.2f} s")
