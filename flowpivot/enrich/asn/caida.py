"""CAIDA Routeviews pfx2as (``prefix length AS``; ``a_b`` multi-origin, ``a,b`` AS sets) and CAIDA
as2org (``as-org2info.txt``), which names the ASes of every pfx2as source opened with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import Problem
from ..ranges import steps_from_nested
from ..textio import add_problem, as_text, numbered_lines
from .source import AsnSource, _Entries, _ip_int, _Strings

__all__ = ["read_as2org", "read_pfx2as"]


def read_as2org(path: str | Path, problems: list[Problem] | None = None) -> dict[int, tuple[str, str | None]]:
    """ASN -> (AS name, country) from CAIDA's as-org2info: ``aut|changed|aut_name|org_id|opaque_id|source``
    joined with ``org_id|changed|org_name|country|source``. The name is ``aut_name org_name``."""
    problems = problems if problems is not None else []
    path = Path(path)
    auts: dict[int, tuple[str, str]] = {}
    orgs: dict[str, tuple[str, str]] = {}
    section = None
    for n, line in numbered_lines(path, problems):
        if line.startswith(b"# format:"):
            section = "aut" if b"aut_name" in line else "org" if b"org_name" in line else None
            continue
        if not line.strip() or line.startswith(b"#"):
            continue
        f = [as_text(x) for x in line.split(b"|")]
        if section == "org" and len(f) >= 4:
            orgs[f[0]] = (f[2], f[3])
        elif section == "aut" and len(f) >= 4 and f[0].isdigit():
            auts[int(f[0])] = (f[2], f[3])
        else:
            add_problem(problems, str(path), f"line {n}", "not an as2org aut or org line")
    out: dict[int, tuple[str, str | None]] = {}
    for asn, (aut_name, org_id) in auts.items():
        org_name, cc = orgs.get(org_id, ("", ""))
        name = " ".join(x for x in (aut_name, org_name) if x)
        out[asn] = (name, cc or None)
    return out


def read_pfx2as(path: Path, as2org: dict[int, tuple[str, str | None]] | None = None) -> AsnSource:
    """Routeviews pfx2as; prefixes nest, and the most specific announced one answers.

    Multi-origin (``a_b``) and AS-set (``a,b``) origins answer with the first AS.
    """
    problems: list[Problem] = []
    src = str(path)
    names, countries = _Strings(), _Strings()
    as2org = as2org or {}
    rows: dict[bool, list[tuple[int, int, int, int, int]]] = {False: [], True: []}
    for n, line in numbered_lines(path, problems):
        if not line.strip() or line.startswith(b"#"):
            continue
        parts = line.split(b"\t")
        if len(parts) != 3:
            parts = line.split()
        a = _ip_int(parts[0]) if parts else None
        if len(parts) != 3 or a is None or not parts[1].strip().isdigit():
            add_problem(problems, src, f"line {n}", "expected `prefix<TAB>length<TAB>AS`")
            continue
        bits = 128 if a[1] else 32
        plen = int(parts[1])
        first_as = parts[2].strip().replace(b",", b"_").split(b"_")[0]
        if plen > bits or not first_as.isdigit() or int(first_as) >= 1 << 32:
            add_problem(problems, src, f"line {n}", "prefix length or AS number out of range")
            continue
        host = bits - plen
        start = (a[0] >> host) << host
        asn = int(first_as)
        name, cc = as2org.get(asn, (None, None))
        rows[a[1]].append((start, start | ((1 << host) - 1), asn, names.add(name), countries.add(cc)))
    entries = _Entries()
    steps = {}
    for v6 in (False, True):
        rs = rows[v6]
        fh, fl, lh, ll, ids = entries.add_rows(v6, rs)
        plen_a = np.fromiter(
            ((128 if v6 else 32) - ((r[1] - r[0] + 1).bit_length() - 1) for r in rs), np.int16, len(rs)
        )
        steps[v6] = steps_from_nested(fh, fl, lh, ll, plen_a, ids)
        if not v6:
            steps[v6] = steps[v6].below(1 << 32)
    return entries.source(path, "pfx2as", steps, names, countries, {"as2org": bool(as2org)}, problems)
