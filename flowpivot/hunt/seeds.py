"""Seed indicators in: text (defanged, CIDRs, ``ip:port``), CSV, STIX 2.1, MISP event JSON, maltrail.

Seeds come in named sets (``NAME=FILE``; a plain path's set is its file's stem) so that a report can
attribute to an actor only what rests on that actor's seeds. Every reader turns its input into :class:`Seed` rows and records what it could not read as a
:class:`~flowpivot.errors.Problem` with the line (or JSON position) where it was. Nothing here
raises on bad content: a bad line never stops the hunt.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem

__all__ = [
    "Seed",
    "SeedSet",
    "SeedInput",
    "read_seeds",
    "seed_entry",
    "SET_NAME",
    "parse_indicator",
    "stix_pattern_addresses",
    "refang",
    "MAX_CIDR_ADDRESSES",
]

#: A CIDR seed is expanded to its addresses for the equality join; larger networks are refused
#: (a /16 is already 65,536 seeds; hunting a whole provider is the allowlist's opposite, not a seed).
MAX_CIDR_ADDRESSES = 65_536

_REFANG = (
    (re.compile(r"\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|\{\s*(?:\.|dot)\s*\}", re.I), "."),
    (re.compile(r"\[\s*:\s*\]|\(\s*:\s*\)"), ":"),
    (re.compile(r"^(?:hxxp|hxxps|hXXp|hXXps|fxp|meow)(?=s?\[?:)", re.I), "http"),
    (re.compile(r"\[:\]//|\[://\]"), "://"),
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}\.?$", re.I)


@dataclass(frozen=True)
class Seed:
    ip: str  # canonical address string
    source: str  # file it came from
    where: str  # "line 12", "indicator 3", "attribute 7"
    port: int | None = None  # the port the indicator named, if any
    network: str | None = None  # the CIDR it was expanded from, if any
    set: str = ""  # the seed set it was read into (NAME=FILE, else the file's stem)


@dataclass
class SeedSet:
    """The seeds read from all inputs, with what was skipped and why.

    ``seeds`` keeps one row per (address, set), the first one read, so that an address listed in two
    sets is known to be in both; :meth:`ips` is the deduplicated address list the hunt pivots on.
    """

    seeds: list[Seed] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # kind -> count (domains, hashes, ...)
    sources: list[dict[str, Any]] = field(default_factory=list)
    set_files: dict[str, list[str]] = field(default_factory=dict)  # set name -> files, in reading order
    _sets_by_ip: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows, self.seeds = self.seeds, []
        for s in rows:
            self.add(s)

    def ips(self) -> list[str]:
        return sorted(self._sets_by_ip, key=_ip_sort_key)

    def add(self, seed: Seed) -> None:
        """Keep ``seed`` unless its address was already read into the same set."""
        sets = self._sets_by_ip.setdefault(seed.ip, [])
        if seed.set not in sets:
            sets.append(seed.set)
            self.seeds.append(seed)

    def first(self) -> dict[str, Seed]:
        """Address -> the first row read for it (the file and line the result reports)."""
        out: dict[str, Seed] = {}
        for s in self.seeds:
            out.setdefault(s.ip, s)
        return out

    def sets_of(self, ip: str) -> list[str]:
        """The names of the sets that list ``ip``, in reading order ([] for an address not read)."""
        return list(self._sets_by_ip.get(ip, ()))

    def sets(self) -> dict[str, dict[str, Any]]:
        """``{name: {"files": [...], "count": distinct addresses}}`` for every set, in reading order."""
        count: dict[str, int] = {}
        for s in self.seeds:  # rows are unique per (address, set)
            count[s.set] = count.get(s.set, 0) + 1
        names = list(dict.fromkeys([*self.set_files, *count]))
        return {n: {"files": list(self.set_files.get(n, [])), "count": count.get(n, 0)} for n in names}

    def skip(self, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": len(self.ips()),
            "sources": self.sources,
            "sets": self.sets(),
            "skipped": dict(sorted(self.skipped.items())),
            "problems": [p.as_dict() for p in self.problems],
        }


def _ip_sort_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def refang(text: str) -> str:
    """``86.104.72[.]16`` -> ``86.104.72.16``; ``hxxp://1.2.3[.]4/x`` -> ``http://1.2.3.4/x``."""
    t = text.strip()
    for rx, rep in _REFANG:
        t = rx.sub(rep, t)
    return t


def parse_indicator(text: str) -> tuple[list[tuple[str, int | None, str | None]], str | None]:
    """One indicator string -> ([(ip, port, network)], why-not).

    ``why-not`` is ``None`` when addresses were found, ``"domain"``/``"url-domain"`` for a valid
    indicator that is not an address (counted, not a problem), or a message for a bad one.
    """
    t = refang(text).strip().strip("'\"<>").strip()
    if not t:
        return [], "empty"
    if _SCHEME.match(t):
        rest = _SCHEME.sub("", t, count=1)
        host = re.split(r"[/?#]", rest, maxsplit=1)[0]
        host = host.rsplit("@", 1)[-1]
        found, why = _host_port(host)
        if found is None:
            return [], "url-domain" if why == "domain" else f"URL host is not an address: {host!r}"
        return [found], None
    if "/" in t and not re.fullmatch(r"[^/]+/\d{1,3}", t):
        # a URL without its scheme ("host/path") or a bare path, as maltrail writes them
        host = t.split("/", 1)[0]
        if not host:
            return [], "url-path"
        found, why = _host_port(host)
        if found is None:
            return [], "url-domain" if why == "domain" else f"URL host is not an address: {host!r}"
        return [found], None
    if "/" in t:
        try:
            net = ipaddress.ip_network(t, strict=False)
        except ValueError:
            return [], f"not an address or CIDR: {text.strip()!r}"
        if net.num_addresses > MAX_CIDR_ADDRESSES:
            return [], f"CIDR {net} has {net.num_addresses:,} addresses, more than {MAX_CIDR_ADDRESSES:,}"
        if net.num_addresses == 1:
            return [(_canon(net.network_address), None, None)], None
        return [(_canon(a), None, str(net)) for a in _hosts(net)], None
    found, why = _host_port(t)
    if found is None:
        return [], why
    return [found], None


def _hosts(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterable[ipaddress._BaseAddress]:
    return iter(net)  # every address: flows may well use the network and broadcast addresses


def _canon(a: ipaddress._BaseAddress) -> str:
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a)


def _host_port(t: str) -> tuple[tuple[str, int | None, str | None] | None, str]:
    port: int | None = None
    host = t
    m = re.fullmatch(r"\[([0-9a-fA-F:.%]+)\](?::(\d{1,5}))?", t)
    if m:
        host, port = m.group(1), int(m.group(2)) if m.group(2) else None
    elif t.count(":") == 1:
        host, _, p = t.partition(":")
        if not p.isdigit():
            return None, f"bad port in {t!r}"
        port = int(p)
    try:
        a = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if _DOMAIN.match(host):
            return None, "domain"
        return None, f"not an address: {t!r}"
    if port is not None and not 0 <= port <= 65535:
        return None, f"port out of range in {t!r}"
    return (_canon(a), port, None), ""


# ----- readers -----------------------------------------------------------------------------------


#: A seed set's name: what ``NAME=FILE`` may put before the ``=``.
SET_NAME = re.compile(r"[A-Za-z0-9_.-]+")
#: The set of indicators given as arguments (``extra``) rather than in a file.
ARGUMENT_SET = "argument"

SeedInput = str | os.PathLike[str] | tuple[str, str | os.PathLike[str]]


def seed_entry(entry: SeedInput) -> tuple[str, Path]:
    """``NAME=FILE``, ``(NAME, FILE)`` or a path -> (set name, path).

    A plain path's set is the file's stem. An existing path that contains ``=`` stays a path, and so
    does one whose part before the ``=`` is not a set name (letters, digits, ``_ . -``).
    """
    if isinstance(entry, tuple):
        name, file = entry
        if not SET_NAME.fullmatch(name):
            raise InputError(f"seed set name {name!r} for {file}: use letters, digits, '_', '.' and '-'")
        return name, Path(file)
    path = Path(entry)
    text = os.fspath(entry)
    if "=" in text and not path.exists():
        name, _, file = text.partition("=")
        if SET_NAME.fullmatch(name) and file:
            return name, Path(file)
    return path.stem, path


def read_seeds(paths: Sequence[SeedInput] | str | os.PathLike[str], extra: Iterable[str] = ()) -> SeedSet:
    """Read seed files of any supported format (detected from content) plus literal indicators.

    Each entry is ``NAME=FILE`` (the seeds go into set NAME; several files may share a name), a
    ``(NAME, FILE)`` tuple, or a plain path (set: the file's stem). Literal indicators go into the
    set ``argument``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = SeedSet()
    for entry in paths:
        name, path = seed_entry(entry)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read seed file {path}: {e.strerror or e}") from e
        text = data.decode("utf-8", errors="replace")
        fmt = detect_format(text)
        out.set_files.setdefault(name, []).append(str(path))
        reader = _Into(out, name)
        bad_before = len(out.problems)
        {"stix": _read_stix, "misp": _read_misp, "csv": _read_csv, "text": _read_text}[fmt](text, str(path), reader)
        out.sources.append(
            {
                "path": str(path),
                "set": name,
                "format": fmt,
                "seeds": len(reader.ips),
                "problems": len(out.problems) - bad_before,
            }
        )
    reader = _Into(out, ARGUMENT_SET)
    for i, ind in enumerate(extra, 1):
        _add_indicator(reader, ind, "argument", f"indicator {i}")
    return out


class _Into:
    """What a reader writes to: the seed set, with every row put into one named set."""

    def __init__(self, out: SeedSet, name: str) -> None:
        self.out = out
        self.name = name
        self.problems = out.problems
        self.ips: set[str] = set()

    def add(self, seed: Seed) -> None:
        self.ips.add(seed.ip)
        self.out.add(seed)

    def skip(self, kind: str) -> None:
        self.out.skip(kind)


def detect_format(text: str) -> str:
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("{") or head.startswith("["):
        try:
            doc = json.loads(head)
        except ValueError:
            return "text"
        if isinstance(doc, dict) and doc.get("type") == "bundle":
            return "stix"
        if isinstance(doc, dict) and doc.get("type") in ("indicator", "ipv4-addr", "ipv6-addr"):
            return "stix"
        return "misp"
    first = next((ln for ln in head.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if "," in first or "\t" in first or ";" in first:
        cols = [c.strip().strip('"').lower() for c in re.split(r"[,;\t]", first)]
        if any(c in _CSV_IP_COLUMNS for c in cols):
            return "csv"
    return "text"


_CSV_IP_COLUMNS = ("ip", "ip_address", "ipaddress", "ip address", "address", "addr", "indicator", "value", "ioc")


def _add_indicator(out: _Into, text: str, source: str, where: str) -> None:
    found, why = parse_indicator(text)
    if found:
        for ip, port, net in found:
            out.add(Seed(ip, source, where, port, net, out.name))
        return
    if why in ("domain", "url-domain", "url-path"):
        out.skip(why)
    elif why == "empty":
        return
    else:
        out.problems.append(Problem(source, where, why or "unreadable"))


def _read_text(text: str, source: str, out: _Into) -> None:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#") else ""
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith("//") or line.startswith(";"):
            continue
        # "1.2.3.4 c2 server", "1.2.3.4,comment", "1.2.3.4\tlabel": the indicator is the first token
        token = re.split(r"[\s,;]+", line, maxsplit=1)[0]
        _add_indicator(out, token, source, f"line {n}")


def _read_csv(text: str, source: str, out: _Into) -> None:
    lines = text.lstrip("\ufeff").splitlines()
    # skip leading comments, keep line numbers
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    sample = "\n".join(lines[start : start + 5])
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    reader = csv.reader(io.StringIO("\n".join(lines[start:])), dialect)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    col = next((header.index(c) for c in _CSV_IP_COLUMNS if c in header), None)
    if col is None:
        out.problems.append(Problem(source, f"line {start + 1}", f"no ip column in CSV header {header}"))
        return
    for i, row in enumerate(reader):
        n = start + 2 + i
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if col >= len(row):
            out.problems.append(Problem(source, f"line {n}", f"row has {len(row)} columns, the ip column is {col + 1}"))
            continue
        _add_indicator(out, row[col], source, f"line {n}")


# Which comparisons of a STIX pattern name seed addresses: (object type, property path) -> operators.
# Negated comparisons (!=, NOT =) name addresses that are *not* the indicator and are left out.
_STIX_ADDRESS_TERMS = {
    ("ipv4-addr", ("value",)): {"=", "ISSUBSET", "ISSUPERSET", "LIKE", "IN"},
    ("ipv6-addr", ("value",)): {"=", "ISSUBSET", "ISSUPERSET", "LIKE", "IN"},
    ("network-traffic", ("src_ref", "value")): {"=", "ISSUBSET", "IN"},
    ("network-traffic", ("dst_ref", "value")): {"=", "ISSUBSET", "IN"},
}


def _stix_strings(literal: str) -> list[str]:
    """The strings of a STIX pattern literal as the grammar's parser gives it: ``'x'`` or a set ``('x','y')``
    (quotes and backslashes escaped with a backslash). Other literals (numbers, booleans) give nothing."""
    out: list[str] = []
    i, n = 0, len(literal)
    while i < n:
        if literal[i] != "'":
            i += 1
            continue
        buf = []
        i += 1
        while i < n and literal[i] != "'":
            if literal[i] == "\\" and i + 1 < n:
                i += 1
            buf.append(literal[i])
            i += 1
        out.append("".join(buf))
        i += 1
    return out


def stix_pattern_addresses(pattern: str) -> list[str]:
    """The address values a STIX 2.1 pattern compares against, read with the OASIS grammar (stix2-patterns):
    ``ipv4-addr:value`` / ``ipv6-addr:value`` (``=``, ``ISSUBSET``, ``ISSUPERSET``, ``LIKE``, ``IN``) and
    ``network-traffic:src_ref.value`` / ``dst_ref.value`` (``=``, ``ISSUBSET``, ``IN``), in pattern order.
    ValueError (with the parser's line:column) when the pattern does not parse."""
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except ParseException as e:
        raise ValueError(f"not a STIX 2.1 pattern: {e}") from None
    values: list[str] = []
    for kind, terms in comparisons.items():
        for path, op, literal in terms:
            if op in _STIX_ADDRESS_TERMS.get((kind, tuple(path)), ()):
                values += _stix_strings(literal)
    return values


def _read_stix(text: str, source: str, out: _Into) -> None:
    doc = json.loads(text.lstrip("\ufeff"))
    objects = doc.get("objects", []) if doc.get("type") == "bundle" else [doc]
    if not isinstance(objects, list):
        out.problems.append(Problem(source, "objects", "bundle objects is not a list"))
        return
    for i, obj in enumerate(objects):
        where = f"object {i} ({obj.get('id', '?') if isinstance(obj, dict) else '?'})"
        if not isinstance(obj, dict):
            out.problems.append(Problem(source, f"object {i}", "not a JSON object"))
            continue
        kind = obj.get("type")
        if kind in ("ipv4-addr", "ipv6-addr"):
            _add_indicator(out, str(obj.get("value", "")), source, where)
        elif kind == "indicator":
            pattern = obj.get("pattern", "")
            if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
                out.skip("indicator-non-stix-pattern")
                continue
            try:
                values = stix_pattern_addresses(pattern)
            except ValueError as e:
                out.problems.append(Problem(source, where, str(e)))
                continue
            if not values:
                out.skip("indicator-without-address")
                continue
            for v in values:
                _add_indicator(out, v, source, where)


_MISP_TYPES = {"ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "ip", "ip-any"}


def _read_misp(text: str, source: str, out: _Into) -> None:
    doc = json.loads(text.lstrip("\ufeff"))
    events: list[Any] = []
    if isinstance(doc, dict) and "response" in doc:
        doc = doc["response"]
    for item in doc if isinstance(doc, list) else [doc]:
        if isinstance(item, dict):
            events.append(item.get("Event", item))
    if not events:
        out.problems.append(Problem(source, "document", "no MISP Event found"))
        return
    for e_i, ev in enumerate(events):
        attrs: list[tuple[str, Any]] = [
            (f"event {e_i} attribute {i}", a) for i, a in enumerate(ev.get("Attribute", []) or [])
        ]
        for o_i, obj in enumerate(ev.get("Object", []) or []):
            attrs += [
                (f"event {e_i} object {o_i} attribute {i}", a) for i, a in enumerate(obj.get("Attribute", []) or [])
            ]
        for where, a in attrs:
            if not isinstance(a, dict):
                out.problems.append(Problem(source, where, "attribute is not an object"))
                continue
            kind = str(a.get("type", ""))
            if kind not in _MISP_TYPES:
                out.skip(f"misp-{kind or 'untyped'}")
                continue
            value = str(a.get("value", ""))
            if "|" in kind:
                ip, _, port = value.partition("|")
                value = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            _add_indicator(out, value, source, f"{where} ({kind})")
