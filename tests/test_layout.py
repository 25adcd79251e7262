"""The package's shape: layers hold by construction, not by convention.

``make lint`` runs the import contract (``[tool.importlinter]`` in
pyproject.toml); an import inside a function would hide a dependency from
readers even where the contract sees it, so there are none.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import controller
from controller.errors import GuardError

PACKAGE = Path(__file__).resolve().parents[1] / "controller"


# The one import inside a function, and why: Kopf (with the Kubernetes client
# it loads) takes seconds to import and only ``guard serve`` needs it, so
# every other command would start seconds slower. The import contract still
# checks it.
# The Kubernetes client is imported the same way, by the one function that
# reads a live cluster (``guard kube baseline`` without -f).
# sigstore (with its TUF, HTTP and RFC 3161 clients) is imported by the one
# function that needs it, on the first Sigstore bundle or trusted root: a
# trust with keys only, and every command without a trust, never pays for it.
LAZY_IMPORTS = {
    "controller/cli/kube.py:serve_command",
    "controller/cli/kube.py:_read_cluster",
    "controller/attest/bundle.py:_sigstore",
}


def test_no_module_imports_inside_a_function() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if f"{path.relative_to(PACKAGE.parent)}:{node.name}" in LAZY_IMPORTS:
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}")
    assert found == []


def test_commands_other_than_serve_start_without_kopf() -> None:
    """Start-up time: importing the CLI must not load Kopf."""
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, controller.cli; print('kopf' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


def test_domain_packages_hold_no_command_line_code() -> None:
    for package in ("policy", "attest", "terraform", "kube", "report"):
        assert not (PACKAGE / package / "commands.py").exists()
    assert (PACKAGE / "cli" / "__init__.py").exists()


def test_every_error_guard_raises_on_purpose_has_one_root() -> None:
    """The CLI catches ``GuardError`` alone: an error class outside it would
    escape as a traceback."""
    strays: list[str] = []
    for module in pkgutil.walk_packages(controller.__path__, "controller."):
        if module.name == "controller.__main__":  # runs the command when imported
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                # A private exception is a module's own control flow, caught there.
                and not name.startswith("_")
                and value.__module__ == module.name
                and issubclass(value, Exception)
                and not issubclass(value, GuardError)
            ):
                strays.append(f"{module.name}.{name}")
    assert strays == []
