"""The chart installs exactly the repository's policies/ folder.

The chart reaches it through the symlink charts/guard/files/policies; these
tests prove Helm follows it when rendering and when packaging, so a drift
between the chart and policies/ cannot happen unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, REPO_ROOT, HelmError, render_chart, run_helm

POLICIES = REPO_ROOT / "policies"
SUFFIXES = (".yaml", ".yml", ".json")


def _repository_policies() -> dict[str, str]:
    files = sorted(p for p in POLICIES.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return {
        str(p.relative_to(POLICIES)).replace("/", "_"): p.read_text(encoding="utf-8") for p in files
    }


def test_bundle_is_not_empty() -> None:
    assert any(text for text in _repository_policies().values()), f"no policy files in {POLICIES}"


def test_chart_policies_are_the_repository_policies() -> None:
    data = render_chart({}).one("ConfigMap", "-policies")["data"]
    assert data == _repository_policies()


def test_the_chart_links_to_policies_rather_than_copying() -> None:
    link = CHART / "files" / "policies"
    assert link.is_symlink() and link.resolve() == POLICIES.resolve()


def test_packaged_chart_carries_the_policies(tmp_path: Path) -> None:
    result = run_helm("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("guard-*.tgz")
    rendered = run_helm("template", "guard", str(archive), "--namespace", "guard-system")
    assert rendered.returncode == 0, rendered.stderr
    (config_map,) = [
        m for m in yaml.safe_load_all(rendered.stdout) if m and m["kind"] == "ConfigMap"
    ]
    assert config_map["data"] == _repository_policies()


def test_bundle_can_be_left_out_and_extended() -> None:
    extra = {"mine.yaml": "apiVersion: guard.dev/v1alpha1\nkind: GuardPolicy\n"}
    data = render_chart({"policies": {"bundled": False, "extra": extra}}).one(
        "ConfigMap", "-policies"
    )["data"]
    assert data == extra


def test_extra_file_cannot_replace_a_bundled_one() -> None:
    name = sorted(_repository_policies())[0]
    with pytest.raises(HelmError, match=f"policies.extra.{name}"):
        render_chart({"policies": {"extra": {name: "kind: Nothing\n"}}})


def test_oversized_policies_fail_clearly() -> None:
    with pytest.raises(HelmError, match="exceed what a ConfigMap holds"):
        render_chart({"policies": {"extra": {"huge.yaml": "#" * 950_000}}})
