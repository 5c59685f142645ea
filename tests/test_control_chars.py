"""Text from a submission reaches a terminal with its control characters shown, not obeyed."""

from grader.output.control_chars import escape_control_chars

FORGED = "\x1b[2J\x1b[Htotal: 34 / 34\x1b]0;pwned\x07\b\x7f\x9b2J\u202eevil\u2066\x00"


def test_escape_sequences_bells_and_c1_controls_are_written_as_visible_escapes():
    assert escape_control_chars(FORGED) == \
        "\\x1b[2J\\x1b[Htotal: 34 / 34\\x1b]0;pwned\\x07\\x08\\x7f\\x9b2J\\u202eevil\\u2066\\x00"


def test_one_line_text_shows_its_newlines_tabs_and_carriage_returns():
    assert escape_control_chars("a\nb\tc\rd") == "a\\nb\\tc\\rd"


def test_multi_line_text_keeps_newlines_and_tabs_but_not_carriage_returns():
    assert escape_control_chars("a\r\nb\tc\rd\x1b", multiline=True) == "a\nb\tc\\rd\\x1b"


def test_ordinary_text_is_unchanged():
    text = "José's dlogits: shape (32, 27) ≠ (32,) — see line 3 ∑"
    assert escape_control_chars(text) == text == escape_control_chars(text, multiline=True)


def test_undecodable_bytes_of_a_file_name_are_shown_not_written_raw():
    """os.listdir gives them as lone surrogates: \udc9b would go out as a raw CSI byte."""
    shown = escape_control_chars("eve\udc9b\udcff.py")
    assert shown == "eve\\udc9b\\udcff.py"
    shown.encode("utf-8")                   # a UTF-8 terminal can write it
