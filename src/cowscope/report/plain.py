"""Text from outside cowscope (process names, command lines, mapping paths, file names) as plain text.

Anything a process can choose (its name, its argv, the paths it maps) reaches the terminal only
through here: rich markup in it is never interpreted (a process named `[/]` must not crash the
inspector, `[red]x` must not hide itself, `[heap]` must not vanish), and control characters are
shown as escapes (`\\x1b[2J` is printed as those seven characters, not sent to the terminal).
The HTML report escapes through jinja2; these are for the terminal and for plain `print`.
"""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

# C0 controls, DEL, C1 controls, the line/paragraph separators and the bidirectional overrides
# (which reorder what the terminal shows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text: str) -> str:
    """`text` with every control character written as an escape (ESC -> `\\x1b`, newline -> `\\x0a`)."""
    return _CONTROL.sub(_escape_char, text)


def plain(text: str, style: str = "") -> Text:
    """`text` as a rich Text: shown as it is (markup is not interpreted), control characters visible.

    Use it for every table cell, title or line that carries a name or a path."""
    return Text(visible(text), style=style)


def escaped(text: str) -> str:
    """`text` for a string rich parses as markup: brackets escaped, control characters visible."""
    return escape(visible(text))
