"""Terraform resource addresses: instance keys, and the address of the declaration.

Plan addresses carry instance keys (``aws_s3_bucket.b[0]``,
``module.m["eu"].aws_s3_bucket.b``) and deposed markers; a configuration
declares ``module.m.aws_s3_bucket.b`` once for all of them.
"""

from __future__ import annotations

import re

_INDEX = re.compile(r'\[(?:"(?:[^"\\]|\\.)*"|[0-9]+|\*)\]', re.ASCII)
_DEPOSED = re.compile(r" \(deposed object [^)]*\)$")
# HCL's string escapes, as Terraform writes string instance keys (addrs.StringKey).
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def config_address(address: str) -> str:
    """A plan address without instance keys: ``module.a[0].x.y["k"]`` → ``module.a.x.y``."""
    if "[" not in address and " (" not in address:
        return address  # most addresses: nothing to strip, and this runs per resource
    return _INDEX.sub("", _DEPOSED.sub("", address))


def instance_key(key: int | str) -> str:
    """``[0]`` or ``["key"]``, quoted the way Terraform writes addresses."""
    if isinstance(key, int):
        return f"[{key}]"
    quoted: list[str] = []
    for position, char in enumerate(key):
        if char in _ESCAPES:
            quoted.append(_ESCAPES[char])
        elif char in "$%" and key[position + 1 : position + 2] == "{":
            quoted.append(char * 2)  # "${" would start a template in HCL
        elif not char.isprintable():
            quoted.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            quoted.append(char)
    return '["' + "".join(quoted) + '"]'
