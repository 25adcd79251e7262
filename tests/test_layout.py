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
LAZY_IMPORTS = {
    "controller/cli/kube.py:serve_command",
    # The Kubernetes client is imported the same way, by the one function
    # that reads a live cluster (``guard kube baseline`` without -f).
    "controller/cli/kube.py:_read_cluster",
    # python-hcl2 and lark (about a tenth of a second) serve only tf-config
    # and tf-plan --config-dir; tf-plan itself is measured against json.load.
    "controller/cli/terraform.py:_hcl_config",
    # and so is the reader of a live cluster for guard kube audit.
    "controller/cli/audit.py:_inventory",
    # sigstore (with its TUF, HTTP and RFC 3161 clients) is imported by the
    # one function that needs it, on the first Sigstore bundle or trusted
    # root: a trust with keys only, and every command without one, never pays.
    "controller/attest/bundle.py:_sigstore",
    # The forge clients (githubkit and its generated models, httpx;
    # python-gitlab and requests) are imported by the function that reads
    # that forge: only ``guard attest review --from github|gitlab`` loads them.
    "controller/cli/forge.py:_github",
    "controller/cli/forge.py:_gitlab",
    # The attestation verifier (certificates, signatures, provenance: a sixth
    # of tf-plan's start-up) is loaded only when a trust is given to verify with.
    "controller/terraform/review.py:attestation_verifier",
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


def test_the_cli_starts_without_heavy_libraries_it_may_not_need() -> None:
    """Start-up time: the CEL library's own shell (typer, rich,
    prompt_toolkit) is never loaded, and the HCL parser only when a command
    reads ``.tf`` files."""
    heavy = ("cel.cli", "prompt_toolkit", "typer", "hcl2", "lark")
    code = f"import sys, controller.cli; print([m for m in {heavy!r} if m in sys.modules])"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


# orjson keeps the last of two equal keys and reads what the strict reader
# refuses: it may read and write only the AdmissionReview and the audit line,
# and write (never read) the engine's key of a subject's trimmed variables.
ORJSON_MODULES = {
    "controller/kube/request.py",
    "controller/kube/record.py",
    "controller/kube/webhook.py",
    "controller/policy/contexts.py",
}


def test_orjson_reads_only_what_the_api_server_sends() -> None:
    users = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "orjson" for name in names):
                users.add(str(path.relative_to(PACKAGE.parent)))
    assert users == ORJSON_MODULES


def test_domain_packages_hold_no_command_line_code() -> None:
    for package in ("policy", "attest", "terraform", "kube", "report", "forge"):
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
