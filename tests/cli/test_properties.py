"""Properties of the shared options, over any input a user (or a script) may give."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cli import build_parser
from controller.cli.options import ATTESTATION_SUFFIXES, attestation_files
from controller.errors import InputError
from controller.report.output import STDOUT, parse_output
from controller.report.registry import FORMAT_NAMES

values = st.one_of(
    st.text(max_size=40),
    st.builds(lambda f, p: f"{f}={p}", st.sampled_from([*FORMAT_NAMES, "xml", ""]), st.text()),
)


@given(values)
def test_an_output_value_is_a_format_and_a_file_or_one_line_of_error(value: str) -> None:
    try:
        spec = parse_output(value)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith(f"--output {value!r}: ")
        return
    assert "=" in value  # a bare value never passes
    assert spec.format in FORMAT_NAMES
    assert spec.path and value == f"{spec.format}={spec.path}"
    assert spec.path != STDOUT or value.endswith("=-")


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b/c", "d"])), max_size=6))
def test_old_and_new_attestation_flags_collect_every_value_in_order(
    given_flags: list[tuple[bool, str]],
) -> None:
    argv = ["kube", "check", "-f", "m.yaml"]
    for old, value in given_flags:
        argv += ["--attestations" if old else "--attestation", value]
    args = build_parser().parse_args(argv)
    assert args.attestation == [Path(v) for _, v in given_flags]
    warned = getattr(args, "deprecations", [])
    assert bool(warned) is any(old for old, _ in given_flags)
    assert len(warned) <= 1  # said once, however often the old spelling is used


names = st.text(alphabet="abc.-_", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
suffixes = st.sampled_from([*ATTESTATION_SUFFIXES, ".md", ".txt", ""])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(names, max_size=2), names, suffixes), max_size=8))
def test_a_folder_contributes_exactly_its_visible_envelope_files(
    files: list[tuple[list[str], str, str]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        made: set[Path] = set()
        for folders, stem, suffix in files:
            path = root.joinpath(*folders, stem + suffix)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                continue  # a name already taken by a folder or a file
            made.add(path)
        expected = sorted(
            p
            for p in made
            if p.is_file()
            and p.suffix in ATTESTATION_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        assert list(attestation_files([root])) == expected
        # a file named directly is read whatever its name
        for path in made:
            if path.is_file():
                assert attestation_files([path]) == (path,)


def test_a_missing_attestation_path_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--attestation .*missing: no such file or folder"):
        attestation_files([tmp_path / "missing"])
