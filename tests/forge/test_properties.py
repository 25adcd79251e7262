"""Hostile text from a forge: commit e-mails, trailers, names and check
names are written by whoever pushes. Each class stays closed: whatever the
text, the reader records a valid identity or refuses in one line; it never
crashes and never drops an author."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.forge.model import People, co_authors, display_login, email_id, noreply_user_id
from controller.policy.identity import check_id, check_login
from tests.forge.conftest import Team
from tests.forge.fakegitlab import ALICE, User
from tests.forge.test_gitlab import attest, predicate, scenario

TEXT = st.text(st.characters(codec="utf-8"), max_size=80)


@given(TEXT)
def test_any_name_becomes_a_login(text: str) -> None:
    assert check_login(display_login(text)) == display_login(text)


@given(TEXT)
def test_any_address_becomes_a_valid_id(text: str) -> None:
    assert check_id(email_id(text)).startswith("email:")


@given(TEXT, TEXT)
def test_two_different_unreadable_addresses_stay_two_people(a: str, b: str) -> None:
    people = People()
    people.add_email(a, "x", "co-author")
    people.add_email(b, "y", "co-author")
    distinct = {email_id(a).lower(), email_id(b).lower()}
    assert len(people.as_list()) == len(distinct)


@given(st.lists(st.tuples(TEXT, TEXT), max_size=4), TEXT)
def test_trailers_are_found_whatever_surrounds_them(
    pairs: list[tuple[str, str]], noise: str
) -> None:
    lines = [noise.replace("\n", " ")]
    wanted = []
    for name, local in pairs:
        address = f"{''.join(c for c in local if c.isalnum()) or 'x'}@example.com"
        clean = " ".join(name.split()).replace("<", "").replace(">", "")
        lines.append(f"Co-authored-by: {clean} <{address}>")
        wanted.append(address)
    assert [email for _, email in co_authors("\n".join(lines))] == wanted


@given(TEXT)
def test_a_noreply_address_is_read_only_in_its_one_spelling(text: str) -> None:
    found = noreply_user_id(text, "github.com")
    assert found is None or (found.isdigit() and text.startswith(found + "+"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(email=TEXT, name=TEXT, message=TEXT, check=TEXT)
def test_hostile_commit_text_is_recorded_or_refused_in_one_line(
    team: Team, gitlab: Any, email: str, name: str, message: str, check: str
) -> None:
    gitlab.mrs.clear()
    gitlab.statuses.clear()
    stranger = User(99, "stranger", email)
    mr = scenario(gitlab)
    mr.commits[0].author = stranger
    mr.commits[0].message = f"{message}\n\nCo-authored-by: {name} <{email}>"
    gitlab.statuses.append((check, "success"))
    run = attest(team, gitlab)
    assert run.code in (0, 2), run.err
    if run.code == 2:
        assert len(run.err.strip().splitlines()) == 1
        assert "Traceback" not in run.err
    else:
        # The stranger is no account GitLab knows: an unresolved author, never none.
        authors = predicate(team)["authors"]
        assert authors[0]["login"] == ALICE.username
        assert any(a.get("unresolved") and "commit-author" in a["roles"] for a in authors)
