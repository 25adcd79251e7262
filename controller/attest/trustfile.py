"""Adding a key to a GuardTrust file, so nobody pastes PEM into YAML by hand.

The file is read with the same strict loader as ``--trust``, the key is
appended, and the result is validated again before anything is written: a
trust file is never left half-edited or invalid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from controller.errors import InputError
from controller.policy.documents import API_GROUP, GuardTrust, TrustedKey
from controller.policy.loader import parse_documents
from controller.strict import load_json_or_yaml

_NAME = re.compile(r"[^a-z0-9-]+")


def key_roles() -> tuple[str, ...]:
    """The roles a trusted key may have, as the model defines them."""
    annotation = TrustedKey.model_fields["role"].annotation
    while get_origin(annotation) is not Literal:  # pydantic may keep an Annotated wrapper
        annotation = get_args(annotation)[0]
    return tuple(str(role) for role in get_args(annotation))


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # Multi-line text (PEM keys) as literal blocks, as a person would write them.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _text)


def with_key(
    path: Path,
    *,
    name: str,
    role: str,
    public_pem: str,
    principal: str | None = None,
) -> tuple[str, bool]:
    """The text of the trust file at ``path`` with one more key, and whether
    the file existed. A new file holds one GuardTrust named after it."""
    existed = path.exists()
    if existed:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
        loaded = parse_documents(text, str(path))
        if len(loaded) != 1 or not isinstance(loaded[0].document, GuardTrust):
            raise InputError(f"{path}: expected exactly one GuardTrust document to add the key to")
        raw: dict[str, Any] = dict(load_json_or_yaml(text))
    else:
        document_name = _NAME.sub("-", path.stem.lower()).strip("-") or "trust"
        raw = {
            "apiVersion": f"{API_GROUP}/v1alpha1",
            "kind": "GuardTrust",
            "metadata": {"name": document_name},
            "spec": {"keys": []},
        }
    spec = raw.setdefault("spec", {})
    entry: dict[str, Any] = {"name": name, "role": role}
    if principal:
        entry["principal"] = principal
    entry["publicKey"] = public_pem
    spec["keys"] = [*(spec.get("keys") or []), entry]
    result = yaml.dump(raw, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    parse_documents(result, str(path))  # what is written must load
    return result, existed
