"""iptoasn.com ip2asn TSV: ``range_start range_end AS_number country_code AS_description``;
AS 0 / ``Not routed`` rows say the range is unrouted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import Problem
from ..ranges import steps_from_disjoint
from ..textio import add_problem, as_text, numbered_lines
from .source import AsnSource, _Entries, _ip_int, _Strings, addr_text

__all__ = ["read_ip2asn"]


def read_ip2asn(path: Path) -> AsnSource:
    """iptoasn.com TSV. Overlapping rows are reported and dropped (the earlier range is kept)."""
    problems: list[Problem] = []
    src = str(path)
    names, countries = _Strings(), _Strings()
    rows: dict[bool, list[tuple[int, int, int, int, int, int]]] = {False: [], True: []}
    for n, line in numbered_lines(path, problems):
        if not line.strip() or line.startswith(b"#"):
            continue
        parts = line.split(b"\t")
        if n == 1 and parts[0].strip().lower() in (b"range_start", b"start", b"ip_start", b"start_ip"):
            continue  # a header line
        if len(parts) < 3:
            add_problem(problems, src, f"line {n}", f"expected 5 tab-separated fields, found {len(parts)}")
            continue
        a, b = _ip_int(parts[0]), _ip_int(parts[1])
        if a is None or b is None or a[1] != b[1] or a[0] > b[0]:
            add_problem(problems, src, f"line {n}", "range_start/range_end are not an address range of one family")
            continue
        asn_t = parts[2].strip().upper().removeprefix(b"AS")
        if not asn_t.isdigit() or int(asn_t) >= 1 << 32:
            add_problem(problems, src, f"line {n}", "AS_number is not a number below 2**32")
            continue
        asn = int(asn_t)
        cc_t = as_text(parts[3].strip()) if len(parts) > 3 else ""
        desc = as_text(b"\t".join(parts[4:]).strip()) if len(parts) > 4 else ""
        if asn == 0 or desc.lower() == "not routed":
            asn, desc, cc_t = 0, "", ""  # an explicit statement that nobody routes it
        cc = "" if cc_t in ("None", "ZZ", "-", "") else cc_t
        rows[a[1]].append((a[0], b[0], asn, names.add(desc), countries.add(cc), n))
    return _source_from_ranges(path, "ip2asn", rows, names, countries, problems, {})


def _source_from_ranges(
    path: Path,
    kind: str,
    rows: dict[bool, list[tuple[int, int, int, int, int, int]]],
    names: _Strings,
    countries: _Strings,
    problems: list[Problem],
    meta: dict[str, Any],
) -> AsnSource:
    entries = _Entries()
    steps = {}
    for v6 in (False, True):
        kept = []
        prev_last = -1
        for r in sorted(rows[v6]):
            if r[0] <= prev_last:
                add_problem(
                    problems,
                    str(path),
                    f"line {r[5]}",
                    f"range {addr_text(r[0], v6)}-{addr_text(r[1], v6)} overlaps an earlier row; dropped",
                )
                continue
            kept.append(r)
            prev_last = r[1]
        fh, fl, lh, ll, ids = entries.add_rows(v6, kept)
        steps[v6] = steps_from_disjoint(fh, fl, lh, ll, ids)
        if not v6:
            steps[v6] = steps[v6].below(1 << 32)
    return entries.source(path, kind, steps, names, countries, problems=problems, meta=meta)
