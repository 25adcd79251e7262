"""Every doc a user reads runs as written.

Each doc's shell blocks run in order, in a fresh folder (``runner``). Blocks
that need a cluster or a release carry ``<!-- not run: REASON -->``; they are
listed with their reason, and their ``helm install``/``helm upgrade`` lines are
rendered with ``helm template`` and every manifest validated instead. Every
YAML block is loaded and checked: guard documents by guard's own loader,
Kubernetes objects against the Kubernetes schemas, values against the chart's
values schema; a fragment says so with ``<!-- yaml: REASON -->``.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.attest.keys import generate
from controller.policy.loader import parse_documents
from tests.chart.helm import CHART, KUBE_VERSION, run_helm
from tests.chart.validation import validate
from tests.docs.blocks import Block, Command, blocks, shown_in
from tests.docs.runner import ROOT, DocFailed, prepare, run_blocks, script_for

DOCS = sorted(
    str(path.relative_to(ROOT))
    for pattern in ("README.md", "CHANGELOG.md", "docs/*.md", "charts/guard/README.md",
                    "examples/**/README.md")
    for path in ROOT.glob(pattern)
)  # fmt: skip
# What a doc's commands must not find in place, because they make it.
WITHOUT = {"examples/keys/README.md": ("examples/keys",)}


def doc_blocks(name: str) -> list[Block]:
    return blocks(ROOT / name, ROOT)


@pytest.mark.parametrize("name", [d for d in DOCS if any(b.runs for b in doc_blocks(d))])
def test_doc_runs_as_written(name: str, tmp_path: Path) -> None:
    prepare(tmp_path, without=WITHOUT.get(name, ()))
    steps = run_blocks(doc_blocks(name), tmp_path)
    assert steps, f"{name}: no command ran"


def test_the_docs_that_show_commands_run_some() -> None:
    for name in ("README.md", "docs/cli.md", "docs/terraform.md", "docs/identities.md"):
        assert any(b.runs for b in doc_blocks(name)), f"{name} runs no block"


def not_run_blocks() -> list[Block]:
    return [b for name in DOCS for b in doc_blocks(name) if b.marker == "not run"]


def test_every_block_not_run_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    listed = not_run_blocks()
    assert listed, "some blocks need a cluster: they should be marked"
    with capsys.disabled():
        print(f"\n{len(listed)} doc block(s) not run here:")
        for block in listed:
            print(f"  {block.where}: {block.reason}")
    for block in listed:
        assert block.language in {"sh", "console"}, f"{block.where}: only shell blocks run"
        assert block.reason and len(block.reason) > 10, f"{block.where}: say why it is not run"


def _helm_template_args(command: Command, files: Path) -> list[str] | None:
    """``helm install|upgrade`` as ``helm template`` of this checkout's chart
    (the chart a release publishes), with the doc's values and namespace;
    ``--set-file`` reads from ``files``, where the test made what the doc's
    reader has (their attester's public key, their CA)."""
    words = shlex.split(command.text.split(" #", 1)[0])
    if words[:1] != ["helm"] or len(words) < 4 or words[1] not in {"install", "upgrade"}:
        return None
    release, args = words[2], words[4:]
    kept: list[str] = ["template", release, str(CHART), "--kube-version", KUBE_VERSION]
    position = 0
    while position < len(args):
        word = args[position]
        if word in {"--set", "--namespace", "-n", "--set-string"}:
            kept += [word, args[position + 1]]
            position += 2
        elif word == "--set-file":
            key, _, path = args[position + 1].partition("=")
            kept += [word, f"{key}={files / path}"]
            position += 2
        elif word in {"--version"}:
            position += 2
        elif word in {"--create-namespace", "--reuse-values", "--wait", "--atomic"}:
            position += 1
        else:
            raise AssertionError(f"{command.text}: no rendering rule for {word!r}")
    return kept


def _reader_files(folder: Path) -> Path:
    """The files a reader of the install steps has: a public key, a CA."""
    key = generate("ecdsa")
    (folder / "attester.pub").write_text(key.public.pem(), encoding="ascii")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docs test CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return folder


def test_helm_commands_not_run_render_valid_manifests(tmp_path: Path) -> None:
    files = _reader_files(tmp_path)
    rendered = 0
    for block in not_run_blocks():
        for command in block.commands():
            args = _helm_template_args(command, files)
            if args is None:
                continue
            result = run_helm(*args)
            assert result.returncode == 0, f"{block.where}: {command.text}: {result.stderr}"
            for manifest in yaml.safe_load_all(result.stdout):
                if manifest:
                    validate(manifest, KUBE_VERSION)
            rendered += 1
    assert rendered >= 3, "the install and roll-out steps should be rendered"


def _values_schema() -> Any:
    return json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


def _check_yaml(block: Block) -> None:
    documents = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert documents, f"{block.where}: an empty YAML block"
    if all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in documents):
        for document in documents:
            if str(document["apiVersion"]).startswith("guard.dev/"):
                parse_documents(yaml.safe_dump(document), block.where)
            else:
                validate(document, KUBE_VERSION)
        return
    if block.doc == "charts/guard/README.md":
        for document in documents:
            jsonschema.validate(document, _values_schema())
        return
    raise AssertionError(
        f"{block.where}: a YAML block that is not a document: mark it "
        "`<!-- yaml: what it shows -->` if it is a fragment"
    )


@pytest.mark.parametrize("name", DOCS)
def test_every_yaml_block_is_checked(name: str) -> None:
    for block in doc_blocks(name):
        if block.language != "yaml" or block.marker == "yaml":
            continue
        _check_yaml(block)


# --------------------------------------------------------------------------- the runner itself


def test_commands_are_read_as_bash_reads_them(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n```sh\nA=x\nguard tf-plan $A \\\n  -o json=r.json   # exit 1\n"
        "cat > f.yaml <<'EOF'\nkey: value # not an exit\nEOF\n```\n"
        "<!-- not run: needs a real cluster -->\n```sh\nkubectl get pods\n```\n"
        "```console\n$ guard policy lint p/  # exit 2\nlint: …\n```\n"
    )
    found = blocks(doc, tmp_path)
    assert [b.runs for b in found] == [True, False, True]
    assert found[1].reason == "needs a real cluster"
    assert found[0].commands() == [
        Command("A=x", 3),
        Command("guard tf-plan $A  -o json=r.json   # exit 1", 4, 1),
        Command("cat > f.yaml <<'EOF'\nkey: value # not an exit\nEOF", 6),
    ]
    assert found[2].commands() == [Command("guard policy lint p/  # exit 2", 15, 2, ("lint: …",))]
    assert shown_in("… review: passed (x)", ["guard: a; review: passed (x)"])
    assert not shown_in("review: passed", ["review: passed (x)"])


def test_the_runner_stops_at_a_command_that_exits_otherwise(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nV=1\ntest $V = 1\nfalse        # exit 1\ntrue  # exit 3\necho no\n```\n")
    (tmp_path / "home").mkdir()
    with pytest.raises(DocFailed, match=r"doc.md:5: `true  # exit 3` exited 0, the doc says 3"):
        run_blocks(blocks(doc, tmp_path), tmp_path)


def test_the_runner_checks_shown_lines_per_command(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```console\n$ echo first\nfirst\n$ echo second\nfirst\n```\n")
    (tmp_path / "home").mkdir()
    with pytest.raises(DocFailed, match="did not print 'first'"):
        run_blocks(blocks(doc, tmp_path), tmp_path)


def test_the_runner_refuses_cluster_commands_without_a_marker(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nhelm install guard charts/guard\n```\n")
    with pytest.raises(DocFailed, match="mark its block"):
        run_blocks(blocks(doc, tmp_path), tmp_path)


def test_script_keeps_here_documents_whole() -> None:
    script = script_for([Command("cat > f <<EOF\na\nEOF", 1), Command("false # exit 1", 2, 1)])
    assert "cat > f <<EOF\na\nEOF\n__expect 0 0 $?" in script
    assert "__expect 1 1 $?" in script
