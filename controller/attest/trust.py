"""Trust: which keys vouch for what, and who is who.

Attester keys vouch for predicates; a person key's signature is one approval
by its principal. Identities are compared by immutable id after
normalization and the alias map, never by display login: a login can be
renamed and reused, an id cannot.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from controller.attest.keys import PublicKey, load_public_key
from controller.errors import InputError
from controller.policy.documents import GuardTrust, GuardTrustSpec
from controller.policy.loader import load_path

# Control, format (zero-width, BOM, joiners) and separator characters: none
# can be seen, so none may tell two ids apart.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


@functools.lru_cache(maxsize=8192)
def normalize_id(value: str) -> str:
    """Unicode NFKC, case-folded, with invisible and space characters removed:
    ``GitHub:1001``, ``github:1001`` and ``github:\u200b1001`` are one id.

    Used where merging ids can only make a check stricter (is this reviewer
    an author? are these two approvals one person?), never to widen an
    allow-list: see ``Trust.principal_of``.
    """
    # NFKC again after folding: case folding can undo a normalization, and
    # the result must be a fixed point (ids are normalized more than once).
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return "".join(c for c in folded if unicodedata.category(c) not in _INVISIBLE)


@dataclass(frozen=True)
class TrustedKey:
    """A key from a GuardTrust, with its principal already made canonical."""

    name: str
    role: Literal["attester", "person"]
    principal: str | None
    public: PublicKey


@dataclass(frozen=True)
class Trust:
    """Trusted keys plus the identity map; the empty trust accepts nothing."""

    keys: tuple[TrustedKey, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Every principal id and alias exactly as the trust spells it → principal.
    registered: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, identity: str) -> str:
        """The principal id an identity belongs to (itself if unmapped)."""
        normalized = normalize_id(identity)
        return self.aliases.get(normalized, normalized)

    def principal_of(self, identity: str) -> str | None:
        """The principal of an identity the trust lists *exactly*, else None.

        For allow-lists (who may deploy): a look-alike of an allowed name
        (other case, full-width letters, a zero-width space) is somebody
        else, so only the spellings the trust itself lists are followed.
        """
        return self.registered.get(identity)

    @property
    def attesters(self) -> tuple[TrustedKey, ...]:
        return tuple(k for k in self.keys if k.role == "attester")

    @classmethod
    def from_specs(cls, specs: Iterable[tuple[GuardTrustSpec, str]]) -> Trust:
        """Merge GuardTrust specs; each comes with a source for error messages."""
        keys: list[TrustedKey] = []
        names: dict[str, str] = {}
        aliases: dict[str, str] = {}
        owners: dict[str, str] = {}
        registered: dict[str, str] = {}
        public_keys: dict[str, str] = {}
        for spec, source in specs:
            for principal in spec.principals:
                canonical = normalize_id(principal.id)
                for identity in (principal.id, *principal.aliases):
                    normalized = normalize_id(identity)
                    owner = owners.get(normalized)
                    if owner is not None and owner != canonical:
                        raise InputError(
                            f"{source}: identity {identity!r} belongs to both principal "
                            f"{owner!r} and {principal.id!r}; an id must name one person"
                        )
                    owners[normalized] = canonical
                    registered[identity] = canonical
                    if normalized != canonical:
                        aliases[normalized] = canonical
            for entry in spec.keys:
                if entry.name in names:
                    raise InputError(
                        f"{source}: key name {entry.name!r} is also defined in {names[entry.name]}"
                    )
                names[entry.name] = source
                public = load_public_key(entry.public_key, f"{source}: key {entry.name!r}")
                # One key, one role, one owner: listed twice, one signature
                # would vouch as an attester and approve as a person at once.
                twin = public_keys.setdefault(public.keyid, entry.name)
                if twin != entry.name:
                    raise InputError(
                        f"{source}: keys {twin!r} and {entry.name!r} are the same public key; "
                        "a key must be listed once, with one role"
                    )
                keys.append(
                    TrustedKey(
                        name=entry.name,
                        role=entry.role,
                        principal=normalize_id(entry.principal) if entry.principal else None,
                        public=public,
                    )
                )
        # Aliases that are themselves principal ids must resolve to the owner.
        resolved = {alias: aliases.get(target, target) for alias, target in aliases.items()}
        keyed = [
            TrustedKey(k.name, k.role, resolved.get(k.principal, k.principal), k.public)
            if k.principal
            else k
            for k in keys
        ]
        return cls(keys=tuple(keyed), aliases=resolved, registered=registered)

    @classmethod
    def from_spec(cls, spec: GuardTrustSpec, source: str = "trust") -> Trust:
        return cls.from_specs([(spec, source)])


def load_trust(paths: Sequence[str | Path]) -> Trust:
    """Every GuardTrust document in the given files; other kinds are an error,
    so a policy file passed as ``--trust`` is not silently read as "no keys"."""
    specs: list[tuple[GuardTrustSpec, str]] = []
    for path in paths:
        _refuse_pem(path)
        try:
            loaded = load_path(path)
        except RecursionError:  # the YAML parser recurses once per nesting level
            raise InputError(f"{path}: not a GuardTrust: nested too deeply") from None
        found = 0
        for item in loaded:
            if not isinstance(item.document, GuardTrust):
                raise InputError(
                    f"{item.source}:{item.line}: {item.document.kind} found where a GuardTrust "
                    "was expected"
                )
            found += 1
            specs.append((item.document.spec, f"{item.source}:{item.line}"))
        if not found:
            raise InputError(f"{path}: no GuardTrust document found")
    return Trust.from_specs(specs)


def _refuse_pem(path: str | Path) -> None:
    """A bare PEM key is a common mistake for ``--trust``: say so plainly."""
    candidate = Path(path)
    if candidate.is_file():
        try:
            head = candidate.read_bytes()[:4096]
        except OSError:
            return
        if head.lstrip().startswith(b"-----BEGIN"):
            raise InputError(
                f"{path}: this is a PEM key, not a GuardTrust document; put the key in a "
                "GuardTrust (spec.keys[].publicKey) with its name and role"
            )
