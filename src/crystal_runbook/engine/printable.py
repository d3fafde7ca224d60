"""Text from the journal or from other people, made safe to print on a terminal.

Why: an actor name, a reason, a Lease holder or a message from a remote API is typed by
someone else and shown on the on-call engineer's terminal. Control characters in it (ESC
sequences that clear the screen or recolour it, carriage returns that overwrite a line,
Unicode direction overrides that reverse it) must never reach the terminal as they are.
``printable`` shows them as visible escapes instead; every console writer goes through it.
"""

from __future__ import annotations

import re

# C0 controls but \t and \n, DEL, C1 controls, and the Unicode bidirectional overrides and
# isolates that reorder what follows them
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _visible(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``); newlines kept unless
    ``newlines`` is False (a one-line field such as a name)."""
    pattern = _CONTROL if newlines else _CONTROL_OR_NEWLINE
    return pattern.sub(_visible, text)


def strip_controls(text: str) -> str:
    """``text`` without control characters at all (names that are stored, like actors)."""
    return _CONTROL_OR_NEWLINE.sub("", text)
