"""Trust: which keys vouch for what, and who is who.

Attester keys vouch for predicates; a person key's signature is one approval
by its principal. Identities are compared by immutable id after the alias
map, never by display login: a login can be renamed and reused, an id
cannot. Every id is in its system's one ASCII spelling (the documents refuse
anything else, see ``controller.policy.identity``), so no look-alike can be
an id and nothing needs stripping here.

Kubernetes usernames enter the map as ``kubernetes:USERNAME`` aliases. They
resolve exactly: that is how the deployer rules prove who deploys.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.attest.bundle import check_trusted_root
from controller.attest.fulcio import FulcioIdentity
from controller.attest.keys import PublicKey, load_public_key
from controller.errors import InputError
from controller.policy.documents import GuardTrust, GuardTrustSpec, KeyRole
from controller.policy.identity import (
    KUBERNETES,
    IdentityError,
    check_id,
    id_system,
    is_id_system,
    kubernetes_id,
    match_key,
)
from controller.policy.keyless import SigstoreIdentity
from controller.policy.loader import load_path


@dataclass(frozen=True)
class TrustedKey:
    """A key from a GuardTrust, with its principal already made canonical."""

    name: str
    role: KeyRole
    principal: str | None
    public: PublicKey
    # A keyless signer: the identity its Fulcio certificate was issued to
    # (``public`` is then the certificate's key). None for a listed key.
    certificate: FulcioIdentity | None = None

    @property
    def keyless(self) -> bool:
        return self.certificate is not None


# Pure and called for every author and approval of every envelope judged.
@functools.lru_cache(maxsize=8192)
def _is_id(identity: str) -> bool:
    try:
        check_id(identity)
    except IdentityError:
        return False
    return True


@dataclass(frozen=True)
class Trust:
    """Trusted keys plus the identity map; the empty trust accepts nothing."""

    keys: tuple[TrustedKey, ...] = ()
    # match key of every id and alias -> its principal (for merging).
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Every principal id and alias exactly as the trust spells it -> principal.
    registered: Mapping[str, str] = field(default_factory=dict)
    # Keyless signers (Sigstore identities, principals made canonical) and
    # the trusted roots they name: root name -> trusted_root.json text.
    identities: tuple[SigstoreIdentity, ...] = ()
    roots: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, identity: str) -> str:
        """The principal an id belongs to (its own match key if unmapped).

        For checks that merging ids can only make stricter: is this reviewer
        an author, are these two approvals one person. A string that is not
        an id (a Kubernetes username) resolves only through an exact
        ``kubernetes:`` alias, else stays itself.
        """
        if not _is_id(identity):
            return self.principal_of_user(identity) or identity
        key = match_key(identity)
        return self.aliases.get(key, key)

    def principal_of(self, identity: str) -> str | None:
        """The principal of an identity the trust lists *exactly*, else None.

        For allow-lists (who may deploy, who may break glass): a look-alike
        of an allowed name is somebody else, so only the spellings the trust
        itself lists are followed. An identity without an id system is a
        Kubernetes username, as in a policy's allow-lists.
        """
        found = self.registered.get(identity)
        if found is not None or (":" in identity and is_id_system(id_system(identity))):
            return found
        return self.principal_of_user(identity)

    def principal_of_user(self, username: str) -> str | None:
        """The principal a Kubernetes username is mapped to (``kubernetes:USERNAME``
        among a principal's ids, spelled exactly), else None."""
        return self.registered.get(kubernetes_id(username))

    @property
    def maps_kubernetes_users(self) -> bool:
        return any(id_system(i) == KUBERNETES for i in self.registered)

    @property
    def attesters(self) -> tuple[TrustedKey, ...]:
        return tuple(k for k in self.keys if k.role == "attester")

    def with_role(self, role: KeyRole) -> tuple[TrustedKey, ...]:
        return tuple(k for k in self.keys if k.role == role)

    @classmethod
    def from_specs(cls, specs: Iterable[tuple[GuardTrustSpec, str]]) -> Trust:
        """Merge GuardTrust specs; each comes with a source for error messages."""
        keys: list[TrustedKey] = []
        names: dict[str, str] = {}
        owners: dict[str, str] = {}
        registered: dict[str, str] = {}
        public_keys: dict[str, str] = {}
        identities: list[SigstoreIdentity] = []
        roots: dict[str, str] = {}
        for spec, source in specs:
            for root in spec.trusted_roots:
                if root.name in roots:
                    raise InputError(f"{source}: trusted root {root.name!r} is defined twice")
                check_trusted_root(root.trusted_root, f"{source}: trusted root {root.name!r}")
                roots[root.name] = root.trusted_root
            for signer in spec.identities:
                if signer.name in names:
                    raise InputError(
                        f"{source}: identity name {signer.name!r} is also defined in "
                        f"{names[signer.name]}"
                    )
                names[signer.name] = source
                identities.append(signer)
            for principal in spec.principals:
                canonical = match_key(principal.id)
                for identity in (principal.id, *principal.aliases):
                    key = match_key(identity)
                    owner = owners.get(key)
                    if owner is not None and owner != canonical:
                        raise InputError(
                            f"{source}: identity {identity!r} belongs to both principal "
                            f"{owner!r} and {principal.id!r}; an id must name one person"
                        )
                    owners[key] = canonical
                    registered[identity] = canonical
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
                keys.append(TrustedKey(entry.name, entry.role, entry.principal, public))
        # A key's principal may be any id of a principal: it resolves to the owner.
        resolved = [
            TrustedKey(
                k.name,
                k.role,
                owners.get(match_key(k.principal), match_key(k.principal)),
                k.public,
            )
            if k.principal
            else k
            for k in keys
        ]
        canonical_identities = tuple(
            i.model_copy(
                update={"principal": owners.get(match_key(i.principal), match_key(i.principal))}
            )
            if i.principal
            else i
            for i in identities
        )
        return cls(
            keys=tuple(resolved),
            aliases=owners,
            registered=registered,
            identities=canonical_identities,
            roots=roots,
        )

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
