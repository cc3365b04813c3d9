"""The sanitiser every stored string passes through before it reaches a terminal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from pinrun.safe_text import for_rich, printable


def test_escape_sequences_are_shown_not_obeyed() -> None:
    """An ANSI escape, a bell and a carriage return are written as visible escapes."""
    assert printable("run\x1b[2Jid\x07\r") == "run\\x1b[2Jid\\x07\\x0d"


def test_newlines_are_escaped_unless_asked_for() -> None:
    """One stored string prints as one line, unless the caller keeps line breaks."""
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("a\nb\tc", newlines=True) == "a\nb\tc"


def test_bidi_overrides_and_surrogates_are_escaped() -> None:
    """Text-direction overrides (Trojan Source) and lone surrogates cannot hide text."""
    assert printable("abc\u202edef") == "abc\\u202edef"
    assert printable("x\ud800y") == "x\\ud800y"


def test_ordinary_text_is_unchanged() -> None:
    """Accents, CJK, emoji with joiners and non-breaking spaces are left as they are."""
    text = "café 価格 👩\u200d💻 a\u00a0b \\ [x]"
    assert printable(text) == text


def test_limit_cuts_and_marks() -> None:
    """A limit shortens long text and says so with an ellipsis."""
    assert printable("abcdefgh", limit=5) == "abcd…"
    assert printable("abc", limit=5) == "abc"


def test_rich_markup_is_printed_literally() -> None:
    """Markup in stored text reaches the screen as the characters it is made of."""
    console = Console(record=True, width=200, color_system=None)
    console.print(for_rich("[red]hidden[/red] [link=file:///etc]x[/link]\x1b]0;t\x07"))
    shown = console.export_text().rstrip("\n")
    assert shown == "[red]hidden[/red] [link=file:///etc]x[/link]\\x1b]0;t\\x07"


@given(st.text())
def test_output_never_holds_a_control_character(text: str) -> None:
    """Whatever the input, the result has only printable characters and spaces."""
    out = printable(text)
    assert all(ch.isprintable() or (ch.isspace() and ch not in "\n\r\t\x0b\x0c\x1c\x1d\x1e\x1f")
               or ch in "\u200c\u200d" for ch in out)
    assert "\x1b" not in out
