"""``guard serve`` refuses, in one line, to start where it cannot reach the
API server, instead of failing inside Kopf with a long traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.errors import InputError
from controller.kube import service
from controller.kube.service import require_api_credentials

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: dev
contexts: [{name: dev, context: {cluster: dev, user: dev}}]
clusters: [{name: dev, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: dev, user: {token: abc}}]
"""


@pytest.fixture()
def nowhere(tmp_path: Path) -> Path:
    """A home without ~/.kube and no service account token."""
    return tmp_path


def test_without_service_account_or_kubeconfig_it_names_both(nowhere: Path) -> None:
    token = nowhere / "token"
    with pytest.raises(InputError) as caught:
        require_api_credentials({}, token=token, home=nowhere)
    message = str(caught.value)
    assert f"no in-cluster service account ({token} does not exist)" in message
    assert f"KUBECONFIG is not set and {nowhere / '.kube' / 'config'} does not exist" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({}, "cannot read kubeconfig {missing}: No such file or directory"),
        ({"a": "kind: Config\n"}, "the kubeconfig sets no current-context"),
        ({"a": "current-context: [\n"}, "cannot read kubeconfig {a}: not valid JSON or YAML"),
    ],
)
def test_a_kubeconfig_that_cannot_log_in_is_named(
    nowhere: Path, files: dict[str, str], problem: str
) -> None:
    paths = {name: nowhere / name for name in ("a", "missing")}
    for name, text in files.items():
        paths[name].write_text(text)
    listed = str(paths["a"] if files else paths["missing"])
    with pytest.raises(InputError) as caught:
        require_api_credentials({"KUBECONFIG": listed}, token=nowhere / "t", home=nowhere)
    assert str(caught.value).startswith("KUBECONFIG: ")
    assert problem.format(**{k: str(v) for k, v in paths.items()}) in str(caught.value)


def test_a_service_account_or_a_usable_kubeconfig_is_enough(nowhere: Path) -> None:
    token = nowhere / "token"
    token.write_text("t")
    require_api_credentials({}, token=token, home=nowhere)
    config = nowhere / ".kube" / "config"
    config.parent.mkdir()
    config.write_text(KUBECONFIG)
    require_api_credentials({}, token=nowhere / "absent", home=nowhere)
    other = nowhere / "other"
    other.write_text(KUBECONFIG)
    require_api_credentials({"KUBECONFIG": f"{other}:"}, token=nowhere / "absent", home=nowhere)


def test_guard_serve_outside_a_cluster_says_so_in_one_line_and_exits_2(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(nowhere))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(service, "SERVICE_ACCOUNT_TOKEN", nowhere / "token")

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the operator must not start")

    monkeypatch.setattr(service.GuardService, "__init__", never)
    (nowhere / "tls.crt").write_text("cert")
    (nowhere / "tls.key").write_text("key")
    tls = ["--tls-cert", str(nowhere / "tls.crt"), "--tls-key", str(nowhere / "tls.key")]
    assert main(["serve", *tls]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("guard: error: guard serve needs the Kubernetes API: ")
    assert "KUBECONFIG" in line and ".kube/config" in line
