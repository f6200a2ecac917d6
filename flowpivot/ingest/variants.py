"""Format detection for the text variants the main detector does not know.

``flowpivot.ingest.detect_format`` recognises the common forms; when it finds none it asks
:func:`detect_variant`, which knows:

* a Zeek TSV log whose header lines carry stray leading whitespace (``\\t#separator``), as
  some tools and copy-pastes leave them;
* a Zeek JSON conn.log written with another ``scope_sep`` (``"id_orig_h"``);
* Argus CSV: the CTU ``.binetflow`` files and ``ra -c ,`` output with a header line.
"""

from __future__ import annotations

import re

from .argus import is_argus_header

__all__ = ["detect_variant"]

_ZEEK_JSON_ORIG = re.compile(rb'"id[^A-Za-z0-9"]orig_h"')


def detect_variant(head: bytes) -> str | None:
    """The format of the first bytes of a text file, for the variants above; None when none fits."""
    text = head.lstrip(b"\xef\xbb\xbf")
    first = text.split(b"\n", 1)[0].strip()
    stripped = text.lstrip(b" \t")
    if stripped.startswith(b"#separator") or stripped.startswith(b"#fields"):
        header = re.split(rb"\n[ \t]*#types", stripped, maxsplit=1)[0]
        if re.search(rb"\n[ \t]*#path\tconn\r?\n", header) or (b"#path" not in header and b"conn_state" in header):
            return "zeek"
        return None
    if first.startswith(b"{") and _ZEEK_JSON_ORIG.search(first) and b'"conn_state"' in first:
        return "zeek"
    if is_argus_header(text):
        return "binetflow"
    return None
