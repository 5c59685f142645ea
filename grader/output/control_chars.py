"""Text from a submission, made safe to write to a terminal: control characters shown, not obeyed.

A submission's exception messages, tracebacks, printed output, file names and student ids reach
the instructor's terminal. Written raw, an escape sequence there can clear the screen, move the
cursor to forge a line ("total: 34 / 34"), retitle the window; a carriage return or backspace
can overwrite what the grader wrote; a bidi override can reorder what is shown. Every such
character is written as a visible escape instead (``\\x1b``, ``\\r``, ``\\u202e``).
"""

from __future__ import annotations

import re

__all__ = ["escape_control_chars"]

# C0 controls, DEL, C1 controls (\x9b is a one-byte CSI), and the bidi embeddings, overrides,
# isolates and marks; line and paragraph separators too (str.splitlines splits on them, a
# terminal does not)
# lone surrogates too: undecodable bytes of a file name arrive as \udcXX, which a UTF-8 terminal
# cannot encode and a C-locale one writes back as the raw byte (0x9b is a CSI)
_CONTROL = ("\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
            "\ud800-\udfff")
_ONE_LINE = re.compile(f"[{_CONTROL}]")
_MULTI_LINE = re.compile(f"(?![\n\t])[{_CONTROL}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control_chars(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character written as a visible escape. ``multiline`` keeps
    newlines and tabs (tracebacks, printed output; a Windows line end counts as a newline);
    otherwise they are escaped too (a message, a file name: one line)."""
    if multiline:
        return _MULTI_LINE.sub(_visible, text.replace("\r\n", "\n"))
    return _ONE_LINE.sub(_visible, text)
