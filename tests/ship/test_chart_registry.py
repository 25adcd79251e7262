"""The chart as users consume it, with Helm 4 and Helm 3: packaged, pushed to
a real OCI registry on loopback, pulled back, and rendered against the image
``make image`` built, pushed to the same registry (the README's install path
for a cluster that cannot reach the internet)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller import __version__
from tests.chart.helm import CHART, run_helm
from tests.ship.registry import running_registry
from tests.ship.tools import REPO_ROOT, built_image, require_tool, run

HELM_LOCK = REPO_ROOT / "packaging" / "helm.lock"
POLICIES = REPO_ROOT / "policies"


def _locked_versions() -> dict[str, str]:
    """name -> the `helm version --short` the lock pins."""
    versions = {}
    for line in HELM_LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, _, version = line.split()
            versions[name] = version
    return versions


# GUARD_HELM is the default helm of every chart test (Helm 4); GUARD_HELM3 is
# the Helm 3 of the lock. `make test` sets both.
HELMS = {"helm": "GUARD_HELM", "helm3": "GUARD_HELM3"}


@pytest.fixture(params=sorted(HELMS), ids=lambda name: {"helm": "helm4", "helm3": "helm3"}[name])
def helm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points tests.chart.helm at one pinned helm; yields its lock name."""
    name: str = request.param
    path = os.environ.get(HELMS[name]) or str(REPO_ROOT / ".tools" / name)
    if not Path(path).is_file():
        pytest.fail(f"{path}: no {name}: run `make helm` (it fetches Helm 4 and Helm 3)")
    monkeypatch.setenv("GUARD_HELM", path)
    return name


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def _helm_ok(*args: str) -> str:
    result = run_helm(*args)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def test_pinned_helm_is_the_version_the_lock_names(helm: str) -> None:
    assert _helm_ok("version", "--short").strip() == _locked_versions()[helm]


def _package(tmp_path: Path) -> Path:
    _helm_ok("lint", str(CHART), "--strict")
    _helm_ok("package", str(CHART), "--destination", str(tmp_path))
    return tmp_path / f"guard-{__version__}.tgz"


def test_package_carries_the_policies_and_the_image_value(helm: str, tmp_path: Path) -> None:
    package = _package(tmp_path)
    with tarfile.open(package) as archive:
        files = {
            m.name.removeprefix("guard/files/policies/"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith("guard/files/policies/") and m.isfile()
        }
        chart = yaml.safe_load(archive.extractfile("guard/Chart.yaml").read())  # type: ignore[union-attr]
    assert files == {p.name: p.read_bytes() for p in POLICIES.glob("*.yaml")}
    assert chart["version"] == chart["appVersion"] == __version__


def test_push_pull_and_install_values_from_a_registry(
    helm: str, registry: str, tmp_path: Path
) -> None:
    image = built_image()
    skopeo = require_tool("skopeo", "skopeo")
    package = _package(tmp_path / "out")
    _helm_ok("push", str(package), f"oci://{registry}/charts", "--plain-http")
    pulled_dir = tmp_path / "pulled"
    pulled_dir.mkdir()
    _helm_ok(
        "pull", f"oci://{registry}/charts/guard", "--version", __version__,
        "--destination", str(pulled_dir), "--plain-http",
    )  # fmt: skip
    pulled = pulled_dir / package.name
    assert pulled.read_bytes() == package.read_bytes()

    # The image, copied into the same registry as a mirror would hold it.
    repository = f"{registry}/guard/guard"
    run([skopeo, "copy", "--dest-tls-verify=false", image.oci_reference,
         f"docker://{repository}:{image.version}"])  # fmt: skip
    inspected = json.loads(
        run(
            [skopeo, "inspect", "--tls-verify=false", f"docker://{repository}:{image.version}"]
        ).stdout
    )
    assert inspected["Digest"] == image.digest

    # The pulled chart, pointed at the mirror and pinned by the digest.
    rendered = _helm_ok(
        "template", "guard", str(pulled), "--namespace", "guard-system",
        "--set", f"image.repository={repository}", "--set", f"image.digest={image.digest}",
    )  # fmt: skip
    (deployment,) = [m for m in yaml.safe_load_all(rendered) if m and m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{repository}@{image.digest}"


def test_default_image_value_is_what_make_image_names(helm: str) -> None:
    image = built_image()
    rendered = _helm_ok("template", "guard", str(CHART), "--namespace", "guard-system")
    (deployment,) = [m for m in yaml.safe_load_all(rendered) if m and m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image.name


def test_values_schema_refuses_a_typo_with_either_helm(helm: str) -> None:
    result = run_helm("template", "guard", str(CHART), "--set", "enforcment=warn")
    assert result.returncode != 0
    assert "enforcment" in result.stderr
