"""``guard kube check``: manifests offline through the webhook's decision."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.kube import service
from tests.kube.helpers import (
    TEST_POLICIES,
    UNATTESTED,
    WEB,
    WEB_DIGEST,
    Cast,
    attestation_resource,
    envelope,
    workload,
    write_documents,
)


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Cast]:
    cast = Cast.make()
    policies = write_documents(tmp_path / "policies.yaml", TEST_POLICIES)
    trust = write_documents(tmp_path / "trust.yaml", [cast.trust_document()])
    attestations = tmp_path / "attestations"
    attestations.mkdir()
    (attestations / "web.json").write_text(envelope(cast.ci, [WEB_DIGEST]))
    return policies, trust, attestations, cast


def _manifests(path: Path, *images: str) -> Path:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    items = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            workload("Deployment", f"web{i}", "prod", image) for i, image in enumerate(images)
        ],
    }
    path.write_text("---\n" + yaml.safe_dump(service) + "---\n" + yaml.safe_dump(items))
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


def test_attested_manifests_pass(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, attestations, _ = setup
    manifests = _manifests(tmp_path / "m.yaml", WEB)
    args = ["kube", "check", "-f", str(manifests), "--policies", str(policies)]
    code, out = _run([*args, "--trust", str(trust), "--attestation", str(attestations)], capsys)
    assert code == 0, out
    code, out = _run([*args, "--trust", str(trust), "--format", "json"], capsys)
    assert code == 1
    report = json.loads(out)
    assert "review" in json.dumps(report)


def test_unattested_image_denies_with_its_line(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, attestations, _ = setup
    manifests = _manifests(tmp_path / "m.yaml", WEB, UNATTESTED)
    code, out = _run(
        [
            "kube",
            "check",
            "-f",
            str(manifests),
            "--policies",
            str(policies),
            "--trust",
            str(trust),
            "--attestation",
            str(attestations / "web.json"),
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 1
    text = json.dumps(json.loads(out))
    assert "Deployment prod/web1" in text
    assert "Deployment prod/web0" not in text


def test_reviewattestation_documents_and_stdin(
    setup: tuple[Path, Path, Path, Cast],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies, trust, _, cast = setup
    folder = tmp_path / "ras"
    folder.mkdir()
    write_documents(folder / "ra.yaml", [attestation_resource("web", "prod", envelope(cast.ci))])
    text = _manifests(tmp_path / "m.yaml", WEB).read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out = _run(
        [
            "kube",
            "check",
            "-f",
            "-",
            "--policies",
            str(policies),
            "--trust",
            str(trust),
            "--attestation",
            str(folder),
            "--user",
            "carol",
            "--group",
            "devs",
        ],
        capsys,
    )
    assert code == 0, out


def test_bad_input_exits_2(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = setup[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    assert main(["kube", "check", "-f", str(bad), "--policies", str(policies)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "not valid YAML" in err
    assert main(["kube", "check", "-f", str(tmp_path / "missing.yaml")]) == 2


def test_serve_refuses_to_start_without_tls(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, _, _ = setup
    args = ["serve", "--policies", str(policies), "--trust", str(trust)]
    assert main([*args, "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--tls-cert {tmp_path / 'no.crt'}: no such file" in err


def test_serve_builds_its_validators_and_freezes_start_up_before_the_operator_runs(
    setup: tuple[Path, Path, Path, Cast], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order ``guard serve`` keeps: files loaded and the service built,
    then every validator built and start-up frozen, then the operator."""
    policies, trust, _, _ = setup
    order: list[str] = []

    class Service:
        def __init__(self, *args: object, **kwargs: object) -> None:
            order.append("service")

        async def run(self) -> None:
            order.append("operator")

    monkeypatch.setattr(service, "preflight", lambda settings: order.append("preflight"))
    monkeypatch.setattr(service, "GuardService", Service)
    monkeypatch.setattr(service, "freeze_start_up_objects", lambda: order.append("freeze"))
    assert main(["serve", "--policies", str(policies), "--trust", str(trust)]) == 0
    assert order == ["preflight", "service", "freeze", "operator"]


def test_attestation_takes_files_and_folders_and_the_old_spelling_warns(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, attestations, _ = setup
    manifests = _manifests(tmp_path / "m.yaml", WEB)
    args = [
        "kube",
        "check",
        "-f",
        str(manifests),
        "--policies",
        str(policies),
        "--trust",
        str(trust),
    ]
    for given in (attestations, attestations / "web.json"):
        assert main([*args, "--attestation", str(given)]) == 0
        assert "deprecated" not in capsys.readouterr().err
    assert main([*args, "--attestations", str(attestations)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "guard: warning: --attestations is deprecated: use --attestation PATH "
        "(repeatable, files or folders)\n"
    )
    assert "PASSED" in captured.out
    assert main([*args, "--attestations", str(attestations), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    missing = tmp_path / "missing"
    assert main([*args, "--attestation", str(missing)]) == 2
    assert f"--attestation {missing}: no such file or folder" in capsys.readouterr().err


def test_a_folder_contributes_only_envelope_files(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, attestations, _ = setup
    (attestations / "README.md").write_text("# not an envelope\n")
    (attestations / ".hidden").mkdir()
    (attestations / ".hidden" / "junk.json").write_text("{not json")
    manifests = _manifests(tmp_path / "m.yaml", WEB)
    code = main(
        ["kube", "check", "-f", str(manifests), "--policies", str(policies), "--trust",
         str(trust), "--attestation", str(attestations)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()


def test_the_review_summary_names_approvers_and_attestations(
    setup: tuple[Path, Path, Path, Cast], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies, trust, attestations, _ = setup
    args = ["--policies", str(policies), "--trust", str(trust), "--format", "json"]
    one = _manifests(tmp_path / "one.yaml", WEB)
    code, out = _run(
        ["kube", "check", "-f", str(one), *args, "--attestation", str(attestations)], capsys
    )
    assert code == 0
    review = json.loads(out)["summary"]["review"]
    assert review.startswith("passed for 1 workload: approved by ")
    assert f" in {attestations / 'web.json'} (" in review
    two = _manifests(tmp_path / "two.yaml", WEB, UNATTESTED)
    code, out = _run(
        ["kube", "check", "-f", str(two), *args, "--attestation", str(attestations)], capsys
    )
    assert code == 1
    review = json.loads(out)["summary"]["review"]
    assert review.startswith("failed for 1 of 2 workloads, passed for the others: approved by ")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_run_that_judged_nothing_never_says_passed(
    setup: tuple[Path, Path, Path, Cast],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    policies, _, _, _ = setup
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n")
    code, out = _run(
        ["kube", "check", "-f", str(config), "--policies", str(policies), "--format", fmt],
        capsys,
    )
    assert code == 0
    assert "PASSED" not in out.upper().replace("NOTHING JUDGED", "")
    assert "nothing judged" in out.lower()
