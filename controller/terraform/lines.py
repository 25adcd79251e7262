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
# Escapes that ``json.dumps(..., ensure_ascii=False)`` never writes.
_OTHER_ESCAPE = re.compile(rb"\\[^\"\\nrt]")


def address_lines(text: bytes, addresses: Iterable[str]) -> dict[str, int]:
    """The line of each wanted address's first entry in ``resource_changes``."""
    wanted = set(addresses)
    if not wanted:
        return {}
    start = text.find(b'"resource_changes"')
    if start < 0:
        return {}
    # Each wanted address as JSON writes it with the fewest escapes (\" \\ \n
    # \r \t, everything else as UTF-8). A string in the plan written that way
    # is wanted exactly when its bytes are one of these, so only strings with
    # other escapes (\u003c from Go's encoder, \/, \b, \f) need the decoder:
    # a decoder call per resource was most of this scan.
    encoded = {
        json.dumps(a, ensure_ascii=False).encode("utf-8", "surrogatepass"): a for a in wanted
    }
    found: dict[str, int] = {}
    line = text.count(b"\n", 0, start) + 1
    position = start
    for match in _ADDRESS.finditer(text, start):
        raw = match.group(1)
        address = encoded.get(raw)
        if address is None:
            if not _OTHER_ESCAPE.search(raw):
                continue
            try:
                address = json.loads(raw)
            except ValueError:
                continue
        if address in wanted and address not in found:
            line += text.count(b"\n", position, match.start())
            position = match.start()
            found[address] = line
            if len(found) == len(wanted):
                break
    return found
