"""The forge-neutral account of a merged change, and the predicate built from it.

Both readers fill a ``ChangeRecord``: people by immutable, host-qualified
id (``github:1001`` on github.com, ``ghe.example.com:1001`` elsewhere: ids
of two instances collide), each with every role that made them an author;
approvals with the revision the forge says was reviewed (never stamped with
the head) and the reviewer's permission. ``predicate`` turns it into the
change-review predicate ``guard attest review`` signs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from controller.attest.dsse import sha256_digest
from controller.attest.statement import utc
from controller.forge.errors import ForgeError
from controller.policy.identity import IdentityError, check_id, check_login

# Hosts whose ids are written with the forge's name alone.
PUBLIC_HOSTS = {"github": "github.com", "gitlab": "gitlab.com"}

_NOREPLY = re.compile(r"^(?:([0-9]{1,20})\+)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))@users\.noreply\.")
_TRAILER = re.compile(r"^co-authored-by:\s*(.*?)\s*<([^<>\s]+@[^<>\s]+)>\s*$", re.IGNORECASE)
_LOGIN_JUNK = re.compile(r"[^A-Za-z0-9._-]+")


def host_of(url: str, what: str) -> str:
    """The lower-case host of a web address the forge reported."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        raise ForgeError(f"{what} {url!r} has no host")
    return host


def id_system(forge: str, host: str) -> str:
    """``github`` for github.com, the host itself for any other instance."""
    return forge if PUBLIC_HOSTS.get(forge) == host else host


def noreply_user_id(email: str, web_host: str) -> str | None:
    """The user id in ``<id>+<login>@users.noreply.<host>``, GitHub's private
    commit e-mail, when it is this instance's (else None)."""
    match = _NOREPLY.match(email)
    if match is None or not match.group(1):
        return None
    domain = email.partition("@")[2].lower()
    if domain != f"users.noreply.{web_host}":
        return None
    return str(int(match.group(1)))


def co_authors(message: str) -> list[tuple[str, str]]:
    """``(name, e-mail)`` of each ``Co-authored-by:`` trailer in a commit
    message. Unauthenticated: anyone can write one, so each names an author
    (stricter), never an approver."""
    found = []
    for line in message.splitlines():
        match = _TRAILER.match(line.strip())
        if match is not None:
            found.append((match.group(1), match.group(2)))
    return found


def display_login(text: str) -> str:
    """``text`` if it is a login, else a login-shaped display name made
    from it (someone known only by name or e-mail)."""
    try:
        return check_login(text)
    except IdentityError:
        pass
    cleaned = _LOGIN_JUNK.sub("-", text).strip("-._")[:64].strip("-._")
    return cleaned or "unknown"


def email_id(address: str) -> str:
    """``email:ADDRESS`` when the address is one guard can compare; else a
    stable stand-in, so a malformed trailer is still an unresolved author
    (never a crash, never nobody)."""
    local, at, domain = address.strip().rpartition("@")
    candidate = f"email:{local}@{domain.lower()}" if at else ""
    try:
        return check_id(candidate)
    except IdentityError:
        digest = sha256_digest(address.encode("utf-8", "surrogatepass")).removeprefix("sha256:")
        return f"email:unreadable-{digest[:16]}@address.invalid"


@dataclass
class People:
    """Authors by id, in the order they were first seen, with their roles."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(
        self, identity: str, login: str, role: str, *, bot: bool = False, unresolved: bool = False
    ) -> None:
        entry = self.entries.get(identity.lower())
        if entry is None:
            entry = {"id": identity, "login": display_login(login), "kind": "human", "roles": []}
            if unresolved:
                entry["unresolved"] = True
            self.entries[identity.lower()] = entry
        if bot:
            entry["kind"] = "bot"
        if role not in entry["roles"]:
            entry["roles"].append(role)

    def add_email(self, email: str, name: str, role: str) -> None:
        """Someone the forge could not link to an account: recorded by
        e-mail (a GuardTrust alias can map it to a person), marked unresolved."""
        self.add(email_id(email), name or email.partition("@")[0], role, unresolved=True)

    def as_list(self) -> list[dict[str, Any]]:
        return list(self.entries.values())


@dataclass
class ChangeRecord:
    """Everything a reader learnt about one merged change."""

    forge: str
    api_url: str
    repository: str  # host/owner/name, as users write it
    repository_id: str
    owner_id: str | None
    change_id: str
    change_url: str
    target_ref: str
    head_revision: str
    revision: str
    tree: str | None
    commit_count: int
    authors: People
    approvals: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    pushers_read: bool
    pushers_note: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    approver_teams: list[str] = field(default_factory=list)

    def predicate(
        self, fetched_at: dt.datetime, extra_checks: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The change-review predicate, without the attester's own fields."""
        source: dict[str, Any] = {
            "system": self.forge,
            "apiUrl": self.api_url,
            "repositoryId": self.repository_id,
            "changeUrl": self.change_url,
            "fetchedAt": utc(fetched_at),
            "commitCount": self.commit_count,
            "pushers": "read" if self.pushers_read else "unreadable",
            **self.settings,
        }
        if self.owner_id:
            source["ownerId"] = self.owner_id
        if self.pushers_note:
            source["pushersNote"] = self.pushers_note
        if self.approver_teams:
            source["approverTeams"] = list(self.approver_teams)
        revision = {"gitCommit": self.revision}
        if self.tree:
            revision["gitTree"] = self.tree
        return {
            "repository": self.repository,
            "revision": revision,
            "targetRef": self.target_ref,
            "change": {
                "system": self.forge,
                "id": self.change_id,
                "uri": self.change_url,
                "headRevision": self.head_revision,
            },
            "authors": self.authors.as_list(),
            "approvals": self.approvals,
            "checks": [*self.checks, *extra_checks],
            "source": source,
        }
