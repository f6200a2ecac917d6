"""Text from inputs made safe to show or export: control characters made visible, spreadsheet cells neutralised.

Flow records, exporter names, AS names, whois fields and seed comments come from outside. Two things go
wrong when they are shown or exported as they are:

- On a terminal, ESC, BEL, CR and their kin are commands: ``ESC[2J`` clears the screen, ``ESC]0;...BEL``
  retitles the window, CR overwrites the start of a line, bidi overrides (U+202E) reverse the text around
  them. :func:`visible` turns each into a visible escape (``\\x1b``, ``\\r``, ``\\u202e``) so the analyst
  sees that the value holds it and the terminal does nothing.
- In a spreadsheet, a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a CR is a formula
  (``=cmd|' /C calc'!A0``; OWASP's "CSV injection"). :func:`csv_cell` prefixes such a cell with a single
  quote, which spreadsheets show as text and do not run. A plain number (``-5``, ``+3.25``) is left as
  it is: it is a number in the spreadsheet too, and runs nothing.

Every CSV flowpivot writes (``flows --output csv``) and every terminal renderer (``stats``, ``flows``,
the hunt summary) goes through these two functions.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["visible", "has_control", "csv_cell", "CSV_TRIGGERS"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: The first characters that make a spreadsheet read a cell as a formula (OWASP).
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

_CANDIDATE = re.compile(r"[^\x20-\x7e]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _escape(ch: str) -> str | None:
    """The visible form of one character, or None when it is shown as it is."""
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    if o < 0x20 or 0x7F <= o < 0xA0:  # C0, DEL, C1 (0x9b is a one-byte CSI on some terminals)
        return f"\\x{o:02x}"
    if o < 0x7F:
        return None
    cat = unicodedata.category(ch)
    if cat in ("Cf", "Zl", "Zp", "Co", "Cs", "Cn") and not ch.isprintable():
        return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"
    return None


def visible(value: object, keep: str = "") -> str:
    """``value`` as text whose control and invisible formatting characters are visible escapes.

    C0 controls, DEL and C1 controls become ``\\xNN`` (``\\n``, ``\\r``, ``\\t`` by name); format
    characters (bidi overrides and isolates, zero-width joiners), line and paragraph separators,
    private-use, surrogate and unassigned code points become ``\\uNNNN``. Characters in ``keep`` are left
    as they are (``keep="\\n"`` for multi-line text). A backslash is left alone: the result is for reading,
    not for decoding back. None gives "".
    """
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if s.isascii() and s.isprintable():  # the common case: nothing to do
        return s

    def one(m: re.Match[str]) -> str:
        ch = m.group()
        e = None if ch in keep else _escape(ch)
        return ch if e is None else e

    # only characters outside printable ASCII can need an escape: look at those alone
    return _CANDIDATE.sub(one, s)


def has_control(s: str) -> bool:
    """Whether ``s`` holds a character :func:`visible` would escape."""
    return visible(s) != s


def csv_cell(value: object, raw: bool = False) -> object:
    """One CSV cell as a spreadsheet should read it: a text cell that starts with a formula character gets a
    leading single quote; numbers, None and other text are unchanged. ``raw=True`` changes nothing."""
    if raw or not isinstance(value, str) or not value:
        return value
    if value[0] in CSV_TRIGGERS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
