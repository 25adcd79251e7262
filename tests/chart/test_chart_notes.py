"""NOTES.txt says what was installed, how to check it, how to opt a namespace
out, and warns about the choices that can hurt."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import pytest

from tests.chart.helm import CHART, run_helm


def _notes(values: dict[str, Any], namespace: str = "guard-system") -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
        json.dump(values, values_file)
        values_file.flush()
        result = run_helm(
            "install", "guard", str(CHART), "--dry-run=client", "--namespace", namespace,
            "--values", values_file.name,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout[result.stdout.index("NOTES:") :]


def test_notes_say_what_and_how() -> None:
    notes = _notes({})
    assert "Enforcement: deny" in notes
    assert "kube-system, kube-public, kube-node-lease, guard-system" in notes
    assert "kubectl label namespace NAME guard.dev/ignore=true" in notes
    assert "kubectl get validatingwebhookconfiguration guard" in notes
    assert '"path":"/webhooks/0/failurePolicy","value":"Ignore"' in notes


@pytest.mark.parametrize(
    ("values", "namespace", "warning"),
    [
        ({"replicaCount": 1}, "guard-system", "one replica with failurePolicy Fail"),
        ({}, "guard-system", "no trusted keys"),
        ({}, "default", 'installed in "default"'),
    ],
)
def test_notes_warn(values: dict[str, Any], namespace: str, warning: str) -> None:
    assert warning in _notes(values, namespace)


def test_no_warnings_for_a_careful_install() -> None:
    values = {"trust": {"existingSecret": "attesters"}}
    assert "WARNING" not in _notes(values)
