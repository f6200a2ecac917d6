"""Text helpers shared by every report format: cleaning outside text, defanging, escaping, numbers, times.

Values that come from outside (AS names, whois fields, seed comments) are cleaned once, when the hunt
result is read (:func:`clean`): control and invisible formatting characters become visible escapes so
that a whois field cannot add a header to an abuse letter or reverse the text around it. Each format
then escapes for itself (:func:`md`, ``html.escape``, JSON encoders).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

from ..textsafe import visible

__all__ = [
    "clean",
    "defang",
    "md",
    "md_cell",
    "md_code",
    "fmt_num",
    "human_count",
    "human_bytes",
    "fmt_time",
    "fmt_day",
    "parse_time",
    "is_email",
]


def clean(value: object, limit: int = 500) -> str | None:
    """One line of outside text that is safe to place anywhere: controls and bidi/format marks escaped.

    None stays None. Tabs become spaces; every other control, and format characters (bidi overrides,
    zero-width joiners), become ``\\xNN`` / ``\\uNNNN`` (:func:`flowpivot.textsafe.visible`) so an analyst
    sees them.
    """
    if value is None:
        return None
    s = visible((value if isinstance(value, str) else str(value)).replace("\t", " "))
    s = s.strip()
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def defang(ip: str) -> str:
    """An address that no mail client, chat or ticket system turns into a link: dots and colons bracketed."""
    return ip.replace(".", "[.]").replace(":", "[:]")


# CommonMark lets any ASCII punctuation be escaped with a backslash; these are the ones that can start
# markup inside a line (emphasis, links, images, raw HTML, tables, code, entities, autolinks, headings).
# Parentheses are left alone: with every bracket escaped they cannot make a link.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#!|~&$])")


def md(value: object, limit: int = 500) -> str:
    """Outside text as literal Markdown inline text (CommonMark and GitHub tables)."""
    if value is None:
        return ""
    s = clean(value, limit) or ""
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(value: object, cell: bool = False) -> str:
    """Outside text as one CommonMark code span, whatever backticks it holds: the fence is one backtick
    longer than the longest run inside, with a space inside each end when the text starts or ends with a
    backtick or a space. ``cell=True`` also escapes ``|``, which ends a GitHub table cell even inside a
    code span."""
    s = clean(value) or ""
    if cell:
        s = s.replace("|", "\\|")
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    if s and (s[0] in "` " or s[-1] in "` "):
        s = f" {s} "
    return f"{fence}{s}{fence}"


def md_cell(value: object) -> str:
    """Like :func:`md`, for a table cell: also never empty, so columns keep their place."""
    s = md(value)
    return s if s else "–"


def fmt_num(n: int | float | None) -> str:
    """A count with thousands separators, a real number with two decimals, "–" when unknown."""
    if n is None:
        return "–"
    return f"{n:,}" if isinstance(n, int) else f"{n:,.2f}"


def human_count(n: float | int | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:,.0f}"


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for div, unit in ((1e12, " TB"), (1e9, " GB"), (1e6, " MB"), (1e3, " kB")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:,.0f} B"


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (``Z`` or offset; naive means UTC) or epoch seconds, as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    t = datetime.fromisoformat(s)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def fmt_time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "–"


def fmt_day(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d") if t else "–"


_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")


def is_email(s: str | None) -> bool:
    return bool(s) and bool(_EMAIL.match(s or ""))


def canonical_ip(value: object) -> str:
    """The canonical text of an IPv4 or IPv6 address; ValueError when it is not one.

    The one check every address of a hunt result goes through before any format shows it. An IPv6 scope
    id (``fe80::1%eth0``) is refused: it is not part of the address, ``ipaddress`` keeps whatever text
    follows the ``%`` (quotes, backticks, control characters), and no flow record carries one."""
    if not isinstance(value, str):
        raise ValueError(f"not an IP address: {value!r}")
    a = ipaddress.ip_address(value.strip())
    if isinstance(a, ipaddress.IPv6Address) and a.scope_id is not None:
        raise ValueError(f"an IPv6 scope id is not part of an address: {value!r}")
    return str(a)


def ip_version(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def ip_sort_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))
