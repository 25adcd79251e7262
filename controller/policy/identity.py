"""One grammar for every string that names someone or something guard trusts.

Allow-lists compare these strings: who approved, who may deploy, which
repository and branch count. A string that only *looks* like an allowed one
(a Cyrillic letter, a long s, a full-width bracket, a zero-width space, a
trailing blank) must never be taken for it, and must never be a new identity
either, or an author could approve their own change under a second name.

So nothing here normalises silently. Each identity system accepts exactly
one spelling, in ASCII, and anything else is an input error that names the
character and, where Unicode compatibility folding (NFKC) gives an ASCII
spelling, says which one was probably meant. Comparisons never fold case
more widely than the identity system does itself.

Ids are ``SYSTEM:VALUE``:

- ``github:1001``, ``gitlab:77``: the forge's immutable numeric user id;
- ``email:alice@example.com``: an ASCII address, the domain in lower case and
  as IDNA punycode (``xn--``);
- ``kubernetes:alice@example.com``: a Kubernetes username exactly as the API
  server reports it in ``request.userInfo.username`` (OIDC usernames keep
  their prefix: ``kubernetes:oidc:alice``);
- ``ghe.example.com:1001``: a user id on another forge instance (GitHub
  Enterprise Server, self-managed GitLab), qualified by its host in lower
  case: numeric ids of two instances collide, so ``github:`` and ``gitlab:``
  mean github.com and gitlab.com only.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from controller.errors import InputError

ID_SYSTEMS = ("email", "github", "gitlab", "kubernetes")
KUBERNETES = "kubernetes"
GROUP_PREFIX = "group:"
MAX_ID_CHARS = 1024


class IdentityError(InputError, ValueError):
    """An identity-bearing string that is not in its system's one spelling."""


# --------------------------------------------------------------------------- characters


def _describe(character: str) -> str:
    code = f"U+{ord(character):04X}"
    category = unicodedata.category(character)
    if category == "Cc":
        return f"a control character ({code})"
    if category == "Cf":
        return f"an invisible format character ({code})"
    if character.isspace() or category.startswith("Z"):
        return "a space" if character == " " else f"a space character ({code})"
    name = unicodedata.name(character, code)
    return f"the non-ASCII character {character!a} ({code} {name})"


def _ascii_hint(value: str) -> str:
    """``; did you mean 'x'?`` when compatibility folding gives an ASCII spelling."""
    folded = unicodedata.normalize("NFKC", value)
    if folded != value and folded.isascii() and folded.isprintable() and folded.strip() == folded:
        return f"; did you mean {folded!a}?"
    return ""


def visible_ascii(value: Any, what: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    """``value`` if it is a non-empty string of printable ASCII without spaces.

    The error names the first offending character and its position: a
    reader cannot see a zero-width space or tell a Cyrillic ``а`` from ``a``.
    """
    if not isinstance(value, str):
        raise IdentityError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise IdentityError(f"{what} is empty")
    if len(value) > max_chars:
        raise IdentityError(f"{what} is longer than {max_chars} characters")
    for position, character in enumerate(value):
        if not (character.isascii() and character.isprintable() and not character.isspace()):
            raise IdentityError(
                f"{what} {value!a} contains {_describe(character)} at position {position}: "
                f"only printable ASCII without spaces is accepted{_ascii_hint(value)}"
            )
    return value


def suggestion(value: str, choices: Sequence[str]) -> str | None:
    """The nearest choice (a case difference first), for "did you mean" hints."""
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return close[0] if close else None


def not_one_of(value: Any, choices: Sequence[str], what: str) -> str:
    """The error text for a value outside a closed set."""
    listed = ", ".join(choices)
    if not isinstance(value, str):
        return f"{what} must be a string, one of {listed} (not {type(value).__name__})"
    nearest = suggestion(value, choices)
    hint = f"did you mean {nearest!r}? " if nearest else ""
    return f"{value!a} is not {what}: {hint}(one of {listed})"


# --------------------------------------------------------------------------- ids

_DIGITS = re.compile(r"[1-9][0-9]{0,19}")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _punycode(domain: str) -> str | None:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _check_domain(domain: str, value: str) -> None:
    if not domain.isascii():
        encoded = _punycode(domain)
        hint = f" ({encoded})" if encoded else ""
        raise IdentityError(
            f"e-mail address {value!a}: write an internationalised domain as IDNA "
            f"punycode{hint}, so that no look-alike domain can stand for it"
        )
    if domain != domain.lower():
        raise IdentityError(
            f"e-mail address {value!a}: write the domain in lower case ({domain.lower()})"
        )
    labels = domain.split(".")
    if len(domain) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise IdentityError(f"e-mail address {value!a}: {domain!a} is not a domain name")


def _check_email(address: str, whole: str) -> None:
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise IdentityError(f"{whole!a} is not an e-mail address (LOCAL@DOMAIN)")
    _check_domain(domain, whole)
    visible_ascii(local, f"e-mail address {whole!a}: the local part")
    if len(local) > 64 or not _EMAIL_LOCAL.fullmatch(local):
        raise IdentityError(f"{whole!a} is not an e-mail address (LOCAL@DOMAIN)")


# A forge instance's host, as an id system: two DNS labels at least, so it
# can never be mistaken for one of the named systems.
_FORGE_HOST = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
)


def is_forge_host(system: str) -> bool:
    """Whether an id system is a forge instance's host (``ghe.example.com``)."""
    return len(system) <= 253 and _FORGE_HOST.fullmatch(system) is not None


def is_id_system(system: str) -> bool:
    """One of the named id systems, or a forge instance's host."""
    return system in ID_SYSTEMS or is_forge_host(system)


def _guess(value: str) -> str:
    if _DIGITS.fullmatch(value):
        return f"github:{value} or gitlab:{value}"
    if "@" in value:
        return f"email:{value} or kubernetes:{value}"
    return f"kubernetes:{value}"


def check_id(value: Any, what: str = "id") -> str:
    """A ``SYSTEM:VALUE`` id in its one spelling, returned unchanged, or ``IdentityError``."""
    if isinstance(value, str) and ":" in value:
        system, _, rest = value.partition(":")
        # The domain of an address gets its own hint (punycode), before the
        # generic one, because NFKC does not give the right spelling there.
        if system == "email" and "@" in rest and not rest.isascii():
            local, _, domain = rest.rpartition("@")
            if local.isascii():
                _check_domain(domain, value)
    text = visible_ascii(value, what)
    system, colon, rest = text.partition(":")
    if not colon:
        raise IdentityError(
            f"{what} {text!a} has no id system: write SYSTEM:VALUE, e.g. {_guess(text)} "
            f"(systems: {', '.join(ID_SYSTEMS)})"
        )
    if is_forge_host(ascii_lower(system)) and system not in ID_SYSTEMS:
        if system != ascii_lower(system):
            raise IdentityError(
                f"{what} {text!a}: write the host in lower case ({ascii_lower(system)})"
            )
        if not _DIGITS.fullmatch(rest):
            raise IdentityError(
                f"{what} {text!a}: ids on a forge instance are its numeric user id, digits "
                f"only without leading zeros (e.g. {system}:1001); a login is not an id"
            )
        return text
    if system not in ID_SYSTEMS:
        nearest = suggestion(system, ID_SYSTEMS)
        hint = f"did you mean {nearest!r}? " if nearest else ""
        raise IdentityError(
            f"{what} {text!a}: {system!a} is not an id system: {hint}"
            f"(one of {', '.join(ID_SYSTEMS)})"
        )
    if not rest:
        raise IdentityError(f"{what} {text!a} has no value after {system}:")
    if system in ("github", "gitlab"):
        if not _DIGITS.fullmatch(rest):
            raise IdentityError(
                f"{what} {text!a}: {system} ids are the numeric user id, digits only "
                f"without leading zeros (e.g. {system}:1001); a login is not an id"
            )
    elif system == "email":
        _check_email(rest, text)
    return text


def id_system(value: str) -> str:
    return value.partition(":")[0]


def match_key(identity: str) -> str:
    """The key under which two valid ids are *the same person* when merging
    can only make a check stricter (is this reviewer an author?).

    E-mail addresses and forge ids fold ASCII case; Kubernetes usernames are
    case-sensitive and stay as they are. Never used to widen an allow-list.
    """
    if id_system(identity) == KUBERNETES:
        return identity
    return ascii_lower(identity)


_UPPER_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only: ``str.casefold`` maps ``ſ`` to ``s`` and ``K`` (Kelvin) to ``k``."""
    return text.translate(_UPPER_TO_LOWER)


def kubernetes_id(username: str) -> str:
    """The id under which a GuardTrust maps a Kubernetes username."""
    return f"{KUBERNETES}:{username}"


# --------------------------------------------------------------------------- names


_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253}[A-Za-z0-9])?(?:\[bot\])?")


def check_login(value: Any, what: str = "login") -> str:
    """A forge login: ASCII letters, digits and ``-`` (GitLab also ``.`` and
    ``_``), optionally ending in ``[bot]`` as GitHub App accounts do."""
    text = visible_ascii(value, what, max_chars=255)
    if not _LOGIN.fullmatch(text):
        raise IdentityError(
            f"{what} {text!a} is not a login: letters, digits, '-', '.' and '_' (not at "
            "either end), optionally followed by [bot]"
        )
    return text


def check_kubernetes_name(value: Any, what: str = "Kubernetes username") -> str:
    """A Kubernetes username or group, as the API server sends it."""
    return visible_ascii(value, what)


def check_user_entry(value: Any, what: str) -> str:
    """An allow-list entry for people: an id (``github:1001``,
    ``kubernetes:alice``) or a bare Kubernetes username (``alice``,
    ``system:serviceaccount:cd:deployer``, ``oidc:alice``)."""
    text = visible_ascii(value, what)
    if ":" in text and is_id_system(id_system(text)):
        return check_id(text, what)
    return text


def check_deployer_entry(value: Any, what: str = "deployer") -> str:
    """``group:NAME``, an id, or a bare Kubernetes username."""
    text = visible_ascii(value, what)
    if text.startswith(GROUP_PREFIX):
        if len(text) == len(GROUP_PREFIX):
            raise IdentityError(f"{what} {text!a} names no group")
        return text
    return check_user_entry(text, what)


_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def check_key_name(value: Any, what: str = "key name") -> str:
    text = visible_ascii(value, what, max_chars=253)
    if not _KEY_NAME.fullmatch(text):
        raise IdentityError(f"{what} {text!a}: use letters, digits, '.', '_' and '-'")
    return text


# --------------------------------------------------------------------------- repositories and refs

_REPOSITORY = re.compile(r"[A-Za-z0-9._~/:-]+")
_REPOSITORY_GLOB = re.compile(r"[A-Za-z0-9._~/:*?\[\]!-]+")


def check_repository(value: Any, what: str = "repository", *, glob: bool = False) -> str:
    """``host/owner/name`` in ASCII (globs allowed in a policy)."""
    text = visible_ascii(value, what)
    pattern = _REPOSITORY_GLOB if glob else _REPOSITORY
    if not pattern.fullmatch(text):
        allowed = "letters, digits and . _ ~ / : -" + (
            " and glob characters * ? [ ] !" if glob else ""
        )
        raise IdentityError(f"{what} {text!a} is not a repository name: use {allowed}")
    return text


_REF_FORBIDDEN = set("~^:\\")
_REF_GLOB_ONLY = set("*?[")


def check_ref(value: Any, what: str = "ref", *, glob: bool = False) -> str:
    """A full git ref (``refs/heads/main``) as ``git check-ref-format`` accepts
    it, or (``glob``) a pattern that can match one."""
    text = visible_ascii(value, what)
    if glob and text == "*":
        return text
    if not text.startswith("refs/"):
        raise IdentityError(
            f"{what} {text!a} is not a full git ref: write it as refs/heads/{text} "
            "(a branch name alone could also be a tag)"
        )
    forbidden = _REF_FORBIDDEN | (set() if glob else _REF_GLOB_ONLY)
    bad = sorted({c for c in text if c in forbidden})
    problems = []
    if bad:
        problems.append(f"contains {' '.join(bad)}")
    if ".." in text or "@{" in text or "//" in text:
        problems.append("contains '..', '@{' or '//'")
    if text.endswith(("/", ".", ".lock")) or "/." in text or ".lock/" in text:
        problems.append("a component starts with '.' or ends with '.lock', or it ends with '/'")
    if problems:
        raise IdentityError(f"{what} {text!a} is not a valid git ref: {'; '.join(problems)}")
    return text


# --------------------------------------------------------------------------- pydantic types


def _before(check: Callable[..., str], **options: Any) -> BeforeValidator:
    def run(value: Any) -> Any:
        return check(value, **options)

    return BeforeValidator(run)


# Patterns mirror the checks for the CRD schemas (RE2: no look-around); the
# checks above give the precise message, so a pattern never fails first.
_PRINTABLE = r"^[!-~]+$"
ID_PATTERN = (
    r"^((github|gitlab):[1-9][0-9]{0,19}"
    r"|email:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9.-]+"
    r"|kubernetes:[!-~]+"
    r"|[a-z0-9-]+(\.[a-z0-9-]+)+:[1-9][0-9]{0,19})$"
)

PrincipalId = Annotated[
    str, Field(pattern=ID_PATTERN, max_length=MAX_ID_CHARS), _before(check_id, what="id")
]

Login = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[bot\])?$", max_length=255),
    _before(check_login),
]

KubernetesName = Annotated[
    str,
    Field(pattern=_PRINTABLE, max_length=MAX_ID_CHARS),
    _before(check_kubernetes_name, what="Kubernetes user or group"),
]

UserEntry = Annotated[
    str,
    Field(pattern=_PRINTABLE, max_length=MAX_ID_CHARS),
    _before(check_user_entry, what="principal"),
]

DeployerEntry = Annotated[
    str, Field(pattern=_PRINTABLE, max_length=MAX_ID_CHARS), _before(check_deployer_entry)
]

KeyName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=253), _before(check_key_name)
]

Repository = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9._~/:-]+$", max_length=1024), _before(check_repository)
]

RepositoryGlob = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9._~/:*?\[\]!-]+$", max_length=1024),
    _before(check_repository, what="repository pattern", glob=True),
]

GitRef = Annotated[
    str, Field(pattern=r"^refs/[!-~]+$", max_length=1024), _before(check_ref, what="targetRef")
]

GitRefGlob = Annotated[
    str,
    Field(pattern=r"^(refs/[!-~]*|\*)$", max_length=1024),
    _before(check_ref, what="targetRef pattern", glob=True),
]
