"""Render the chart with the real ``helm`` binary.

The operator tests import :func:`render` and :func:`webhook_configuration`
to decide which admission requests to send, so they follow the chart's
real rules, matchConditions and namespaceSelector instead of a copy.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "guard"
DEFAULT_HELM = REPO_ROOT / ".tools" / "helm"

RELEASE = "guard"
NAMESPACE = "guard-system"
KUBE_VERSION = "1.33.0"

Manifest = dict[str, Any]


class HelmError(Exception):
    """helm refused the chart or the values; the message is helm's own."""


@dataclass(frozen=True)
class Rendered:
    """What ``helm template`` produced, with helpers to find one object."""

    manifests: tuple[Manifest, ...]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"].endswith(name_suffix)]
        if len(found) != 1:
            names = [m["metadata"]["name"] for m in self.of_kind(kind)]
            raise LookupError(f"expected one {kind} ending {name_suffix!r}, found {names}")
        return found[0]


def helm_binary() -> Path:
    """The helm that ``make helm`` fetched; a missing helm is a failure, not a skip."""
    path = Path(os.environ.get("GUARD_HELM") or DEFAULT_HELM)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"helm not found at {path}: run `make helm` (or set GUARD_HELM to a helm v3/v4 binary)"
        )
    return path


def run_helm(*args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm; the environment keeps it away from any real cluster or cache
    (``kubeconfig`` points it at a loopback test server instead)."""
    with tempfile.TemporaryDirectory(prefix="guard-helm-") as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
            "KUBECONFIG": kubeconfig or f"{home}/no-kubeconfig",
        }
        return subprocess.run(
            [str(helm_binary()), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )


def _template(values_json: str, kube_version: str, namespace: str, release: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="values-") as values_file:
        values_file.write(values_json)
        values_file.flush()
        result = run_helm(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            kube_version,
            "--values",
            values_file.name,
        )
    if result.returncode != 0:
        raise HelmError(result.stderr.strip())
    return result.stdout


@functools.lru_cache(maxsize=256)
def _render_cached(values_json: str, kube_version: str, namespace: str, release: str) -> Rendered:
    text = _template(values_json, kube_version, namespace, release)
    manifests = tuple(m for m in yaml.safe_load_all(text) if m)
    return Rendered(manifests)


def render_chart(
    values: Mapping[str, Any] | None = None,
    *,
    kube_version: str = KUBE_VERSION,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
) -> Rendered:
    """Render the chart once per distinct input (renders are cached)."""
    values_json = json.dumps(dict(values or {}), sort_keys=True)
    return _render_cached(values_json, kube_version, namespace, release)


def render(values: Mapping[str, Any] | None = None, **options: str) -> list[Manifest]:
    """The rendered manifests as plain dicts (copies: callers may change them)."""
    rendered = render_chart(values, **options)
    return json.loads(json.dumps(list(rendered.manifests)))  # type: ignore[no-any-return]


def webhook_configuration(values: Mapping[str, Any] | None = None, **options: str) -> Manifest:
    """The rendered ValidatingWebhookConfiguration: rules, matchConditions, selectors."""
    configs = [
        m for m in render(values, **options) if m["kind"] == "ValidatingWebhookConfiguration"
    ]
    if len(configs) != 1:
        raise LookupError(f"expected one ValidatingWebhookConfiguration, found {len(configs)}")
    return configs[0]
