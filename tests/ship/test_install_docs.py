"""The README's Install section, run as written where it can run here.

The CLI steps run in an empty folder holding the wheel under the name the
README uses, with pip pointed at the locked wheelhouse instead of an index.
The steps for a cluster without internet access run against a real registry
on loopback: the only changes are that registry's address for
``registry.internal:5000``, plain HTTP on it, and ``helm template`` for
``helm install`` (there is no cluster). The steps that need the internet
(ghcr.io) are checked against what the release workflow publishes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller import __version__
from tests.chart.helm import CHART, helm_binary, run_helm
from tests.ship.install import Dist, ReadmeCli, commands, install_steps
from tests.ship.registry import running_registry
from tests.ship.tools import IMAGE_OUT, REPO_ROOT, built_image, clean_env, run

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"
DOCUMENTED_REGISTRY = "registry.internal:5000"


def test_install_section_is_in_the_order_a_user_does_it() -> None:
    assert list(install_steps()) == [
        "The CLI",
        "The image",
        "The chart, from an OCI registry",
        "A cluster that cannot pull from the internet",
    ]


def test_cli_steps_run_as_written(dist: Dist, readme_cli: ReadmeCli) -> None:
    # readme_cli (tests/ship/conftest.py) ran the steps, the install routes side by side.
    steps = commands("The CLI")
    wheel_name = f"guard-{__version__}-py3-none-any.whl"
    assert dist.wheel.name == wheel_name
    assert readme_cli.wheel_name == wheel_name
    assert all(wheel_name in step for step in steps if "install" in step)
    assert readme_cli.steps == steps
    outputs = []
    for step, result in zip(steps, readme_cli.results, strict=False):
        assert result.returncode == 0, f"{step}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    assert len(outputs) == len(steps)
    assert (readme_cli.root / "bin" / "guard").is_file()
    assert (readme_cli.work / "guard-venv" / "bin" / "guard").is_file()
    # --warn-only: the bundled policies report the public bucket, and exit 0.
    assert "no-public-s3" in outputs[-1]


def test_image_steps_name_what_make_image_builds() -> None:
    steps = commands("The image")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    name = f"{values['image']['repository']}:{chart['appVersion']}"
    assert "make image" in steps
    assert any(f"docker build -t {name} " in step for step in steps)
    assert f"IMAGE_REPOSITORY: {values['image']['repository']}" in WORKFLOW.read_text()


def test_registry_install_is_what_the_release_publishes() -> None:
    (step,) = commands("The chart, from an OCI registry")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    published = re.search(r"CHART_REPOSITORY: (\S+)", WORKFLOW.read_text())
    assert published is not None
    assert step.startswith(f"helm install guard {published.group(1)}/guard ")
    assert f"--version {chart['version']} " in step


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "registry-data") as address:
        yield address


def test_offline_cluster_steps_run_as_written(registry: str, tmp_path: Path) -> None:
    image = built_image()
    archive = IMAGE_OUT / f"guard-image-{image.version}.oci.tar"
    work = tmp_path / "work"
    work.mkdir()
    (work / archive.name).symlink_to(archive)
    packaged = run_helm("package", str(CHART), "--destination", str(work))
    assert packaged.returncode == 0, packaged.stderr
    prelude = f"""
helm() {{
    case "$1" in
        install) shift; "{helm_binary()}" template "$@" --plain-http ;;
        push|pull) "{helm_binary()}" "$@" --plain-http ;;
        *) "{helm_binary()}" "$@" ;;
    esac
}}
skopeo() {{ command skopeo "$1" --dest-tls-verify=false "${{@:2}}"; }}
"""
    steps = commands("A cluster that cannot pull from the internet")
    assert all(DOCUMENTED_REGISTRY in step for step in steps)
    script = "\n".join(s.replace(DOCUMENTED_REGISTRY, registry) for s in steps)
    env = clean_env(HOME=str(tmp_path / "home"), HELM_CONFIG_HOME=str(tmp_path / "helm"))
    result = run(["bash", "-euo", "pipefail", "-c", prelude + script], env=env, cwd=work)
    # skopeo and helm push report progress on stdout before the rendered manifests.
    manifests = result.stdout[result.stdout.index("---\n") :]
    rendered = [m for m in yaml.safe_load_all(manifests) if m]
    (deployment,) = [m for m in rendered if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{registry}/guard/guard:{image.version}"
    assert "audit" in container["args"]
    inspected = run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            f"docker://{registry}/guard/guard:{image.version}",
        ]
    )
    assert image.digest in inspected.stdout


def test_chart_readme_install_steps_render_with_the_local_chart(tmp_path: Path) -> None:
    """Each documented helm install/upgrade, rendered with `helm template` on the
    checkout's chart (same values and flags; --wait and --reuse-values need a cluster)."""
    text = (CHART / "README.md").read_text()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    steps = [
        line.split("#", 1)[0].strip()
        for line in block.replace("\\\n", " ").splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert [s.split()[1] for s in steps] == ["install", "upgrade", "upgrade"]
    shutil.copy(REPO_ROOT / "examples" / "keys" / "ci-attester.pub", tmp_path / "attester.pub")
    for step in steps:
        argv = [a.strip("'") for a in step.split()]
        assert argv[3] == "oci://ghcr.io/guard-dev/charts/guard"
        argv = [a for a in argv[4:] if a not in ("--wait", "--reuse-values", "--create-namespace")]
        argv = [a.replace("=attester.pub", f"={tmp_path / 'attester.pub'}") for a in argv]
        result = run_helm("template", "guard", str(CHART), *argv)
        assert result.returncode == 0, f"{step}\n{result.stderr}"
