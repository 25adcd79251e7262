"""Text from requests made safe to show: one line, nothing invisible.

Break-glass reasons, image references and rule messages come from the
objects people apply and land in warnings, denial messages and audit lines.
kube-apiserver silently drops a warning that holds a control character, a
line-oriented log reader splits a record at a line or paragraph separator
(U+2028, U+2029, NEL), and a bidirectional override makes a terminal show
text in another order than it is stored. So such characters are written as
visible escapes (``\\n``, ``\\u202e``): nothing is lost for the auditor, and
nothing forges a second line or hides the first.
"""

from __future__ import annotations

import re
import unicodedata

# Control, format (bidi overrides, zero-width), line and paragraph
# separators, surrogates (not encodable as UTF-8) and private use.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What json.dumps(ensure_ascii=False) leaves raw but still splits lines
# (str.splitlines) or cannot be encoded as UTF-8 (lone surrogates).
_JSON_UNSAFE = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every hidden or line-breaking character escaped."""
    if text.isprintable():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in text)


def json_line_safe(line: str) -> str:
    """A JSON text with the characters that split lines or cannot be encoded
    written as JSON escapes (they can only occur inside JSON strings, where
    ``\\uXXXX`` means the same character)."""
    if line.isascii():  # the common case, answered without a scan
        return line
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
