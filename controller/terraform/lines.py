"""Source line numbers for findings, found lazily in the plan bytes.

Parsing with positions would slow every plan down for the few resources that
have findings, so the JSON is parsed without them and, once the findings are
known, one scan of ``resource_changes`` maps the wanted addresses to lines.
``terraform show -json`` writes one line, so for its raw output every line is
1; pretty-printed plans get real lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_ADDRESS = re.compile(rb'"address"\s*:\s*("(?:[^"\\]|\\.)*")')


def address_lines(text: bytes, addresses: Iterable[str]) -> dict[str, int]:
    """The line of each wanted address's first entry in ``resource_changes``."""
    wanted = set(addresses)
    if not wanted:
        return {}
    start = text.find(b'"resource_changes"')
    if start < 0:
        return {}
    found: dict[str, int] = {}
    line = text.count(b"\n", 0, start) + 1
    position = start
    for match in _ADDRESS.finditer(text, start):
        raw = match.group(1)
        try:
            # Without an escape the JSON string is its text; only an escaped
            # one needs the decoder (most plans have none: a decoder call per
            # resource was most of this scan).
            address = json.loads(raw) if b"\\" in raw else raw[1:-1].decode("utf-8")
        except ValueError:
            continue
        if address in wanted and address not in found:
            line += text.count(b"\n", position, match.start())
            position = match.start()
            found[address] = line
            if len(found) == len(wanted):
                break
    return found
