"""The cluster demo (``examples/cluster_demo.py``) runs and gets every answer it expects."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cluster_demo.py"


def test_cluster_demo_gets_the_expected_answers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("cluster_demo", DEMO)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, demo)  # its dataclasses look themselves up
    spec.loader.exec_module(demo)
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert out.count('Error from server (Forbidden): error when creating "examples/') == 4
    assert out.count("deployment.apps/web created") == 2
    assert "Warning: guard: break-glass used by dana@example.com" in out
    assert out.count("audit line (key fields): ") == 6
    assert "BreakGlass " in out and "BreakGlassRefused" in out
