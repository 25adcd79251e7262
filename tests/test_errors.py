"""Every error guard raises is one line, whatever input it quotes."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from controller.errors import GuardError, InputError, one_line


@given(st.text())
def test_an_error_quoting_any_text_is_one_printable_line(quoted: str) -> None:
    message = str(InputError(f"plan.json: planned_values has {quoted} but no entry"))
    assert message.splitlines() == [message]
    assert not any(unicodedata.category(ch) == "Cc" for ch in message)


def test_control_characters_are_written_as_escapes() -> None:
    assert one_line("a\nb\rc\td\x1be\x85f") == "a\\nb\\rc\\td\\x1be\\x85f"
    assert str(GuardError("line one\nline two")) == "line one\\nline two"
    assert one_line("Grüße, 東京") == "Grüße, 東京"
