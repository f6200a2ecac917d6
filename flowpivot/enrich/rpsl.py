"""Allocation chains from RIR whois dumps in RPSL (RFC 2622) form, indexed on disk in SQLite.

Input: RIPE-style split dumps (``ripe.db.inetnum.gz``, ``ripe.db.inet6num.gz``,
``ripe.db.organisation.gz``, ``ripe.db.role.gz``, ``ripe.db.mntner.gz``), a whole dump with every
class mixed, or the same from APNIC/AFRINIC; plain or gzip. Dumps are streamed one object at a
time, so memory stays bounded whatever their size; SQLite sorts the ranges on disk.

The index keeps every inetnum/inet6num sorted by (start, end descending) with a pointer to the
nearest enclosing range. An address's chain is found with one indexed probe (the last range
starting at or before it) and a walk up the parent pointers.

Text is kept as data: values are stored as read (UTF-8, or Latin-1 for bytes that are not),
whatever they contain; nothing is interpreted beyond the attributes named here.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import socket
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EnrichError, Problem
from .asn import default_cache_dir
from .ranges import whois_range_text
from .textio import add_problem, as_text, numbered_lines

__all__ = ["WhoisIndex", "parse_objects", "RESELLER_STATUSES"]

log = logging.getLogger(__name__)

INDEX_VERSION = 2
MAX_OBJECT_BYTES = 16 << 20  # an object larger than this is cut there (and reported)
MAX_CHAIN = 64
# A holder below an LIR that re-sells space to its own customers.
RESELLER_STATUSES = ("SUB-ALLOCATED PA", "ALLOCATED-BY-LIR")
CLASSES = {"inetnum", "inet6num", "organisation", "role", "mntner"}
INET_KEYS = ("netname", "descr", "country", "org", "status", "abuse-c", "abuse-mailbox", "mnt-by", "source")


@dataclass
class RpslObject:
    """One object: its class and its attributes in order (values kept as bytes until asked for)."""

    cls: str
    raw: list[tuple[str, bytes]]
    file: str
    line: int

    def first(self, key: str) -> str | None:
        for k, v in self.raw:
            if k == key:
                return as_text(v)
        return None

    def all(self, key: str) -> list[str]:
        return [as_text(v) for k, v in self.raw if k == key]

    def firsts(self, keys: tuple[str, ...]) -> dict[str, str | None]:
        """The first value of each of ``keys`` in one pass."""
        out: dict[str, str | None] = dict.fromkeys(keys)
        for k, v in self.raw:
            if k in out and out[k] is None:
                out[k] = as_text(v)
        return out


_KEY_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_objects(path: str | Path, problems: list[Problem], classes: set[str] | None = None) -> Iterator[RpslObject]:
    """RPSL objects of a dump, one at a time. Continuation lines (space, tab, ``+``) join the value."""
    src = str(path)
    attrs: list[tuple[str, bytes]] = []
    start = 0
    size = 0
    keep = True
    cut = False
    keys: dict[bytes, str] = {}
    for n, raw in numbered_lines(path, problems):
        if not raw or raw.isspace():
            if attrs and keep:
                yield RpslObject(attrs[0][0], attrs, src, start)
            attrs, size, keep, cut = [], 0, True, False
            continue
        c0 = raw[0]
        if c0 == 37 or c0 == 35:  # % and # comment lines
            continue
        if not keep:
            continue
        size += len(raw)
        if size > MAX_OBJECT_BYTES:
            if not cut:
                add_problem(
                    problems, src, f"line {n}", f"object larger than {MAX_OBJECT_BYTES} bytes; the rest is ignored"
                )
                cut = True
            continue
        if c0 == 32 or c0 == 9 or c0 == 43:  # space, tab, + : continuation
            if attrs:
                k, v = attrs[-1]
                more = raw[1:].strip()
                attrs[-1] = (k, v + b" " + more if v and more else v or more)
            else:
                add_problem(problems, src, f"line {n}", "continuation line outside an object")
            continue
        colon = raw.find(b":")
        kb = raw[:colon].rstrip().lower() if 0 < colon <= 64 else b""
        known = keys.get(kb) if kb else None
        if known is None:
            if not kb or not _KEY_CHARS.issuperset(kb):
                add_problem(problems, src, f"line {n}", "not an `attribute: value` line")
                if not attrs:
                    keep = False  # garbage where an object should start: skip up to the next blank line
                continue
            known = keys[kb] = kb.decode("ascii")
        k = known
        if not attrs:
            start = n
            if classes is not None and k not in classes:
                keep = False
                continue
        attrs.append((k, raw[colon + 1 :].strip()))
    if attrs and keep:
        yield RpslObject(attrs[0][0], attrs, src, start)


def _ref(value: str | None) -> str | None:
    """A reference (org, nic-hdl, mntner): the handle before any ``#`` comment, upper-cased."""
    if not value:
        return None
    v = value.split("#", 1)[0].strip()
    return v.split()[0].upper() if v else None


def _addr(text: str) -> tuple[int, bytes] | None:
    try:
        if ":" in text:
            return 6, socket.inet_pton(socket.AF_INET6, text)
        return 4, socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return None


def _inet_range(cls: str, value: str) -> tuple[int, bytes, bytes] | None:
    """(family, first, last) as big-endian bytes, from ``a - b``, ``a-b`` or ``prefix/len``."""
    v = value.split("#", 1)[0].strip()
    if "/" in v:
        try:
            net = ipaddress.ip_network(v, strict=False)
        except ValueError:
            return None
        fam: int = net.version
        first, last = net.network_address.packed, net.broadcast_address.packed
    else:
        parts = v.split("-") if ":" not in v else v.split(" - ")
        if len(parts) != 2:
            return None
        a, b = _addr(parts[0].strip()), _addr(parts[1].strip())
        if a is None or b is None or a[0] != b[0] or a[1] > b[1]:
            return None
        fam, first, last = a[0], a[1], b[1]
    if (cls == "inet6num") != (fam == 6):
        return None
    return fam, first, last


SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE raw_inet(fam INT, start BLOB, "end" BLOB, netname TEXT, descr TEXT, country TEXT, org TEXT, status TEXT,
                      abuse_c TEXT, abuse_mailbox TEXT, mnt_by TEXT, source TEXT, file TEXT, line INT);
CREATE TABLE inet(id INTEGER PRIMARY KEY, parent INT, fam INT, start BLOB, "end" BLOB, netname TEXT, descr TEXT, country TEXT,
                  org TEXT, status TEXT, abuse_c TEXT, abuse_mailbox TEXT, mnt_by TEXT, source TEXT);
CREATE TABLE org(id TEXT PRIMARY KEY, name TEXT, type TEXT, country TEXT, abuse_c TEXT, abuse_mailbox TEXT);
CREATE TABLE role(id TEXT PRIMARY KEY, name TEXT, abuse_mailbox TEXT);
CREATE TABLE mntner(id TEXT PRIMARY KEY, descr TEXT, org TEXT);
CREATE TABLE problem(source TEXT, "where" TEXT, reason TEXT);
"""


def _inputs(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # Dump files by their registry names: ripe.db.inetnum.gz, apnic.db.role, afrinic.db.gz, x.rpsl
            out.extend(
                sorted(
                    q
                    for q in p.iterdir()
                    if q.is_file() and not q.name.startswith(".") and (".db" in q.name or ".rpsl" in q.name)
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise EnrichError(f"{p}: no such whois dump file or directory")
    if not out:
        raise EnrichError(f"no whois dump files in {', '.join(map(str, paths))}")
    return out


def _inputs_key(files: list[Path]) -> str:
    h = hashlib.sha256(f"rpsl-v{INDEX_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


@dataclass
class BuildReport:
    objects: dict[str, int] = field(default_factory=dict)
    ranges: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


def build_index(files: list[Path], out: Path, batch: int = 20000) -> BuildReport:
    """Stream the dumps into a new SQLite index at ``out`` (written under a temporary name, then renamed)."""
    t0 = time.perf_counter()
    rep = BuildReport()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=".tmp-whois-", suffix=".sqlite")
    os.close(fd)
    tmp = Path(tmp_name)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; PRAGMA cache_size=-16384;"
            + SCHEMA
        )
        inets: list[tuple[Any, ...]] = []
        orgs: list[tuple[Any, ...]] = []
        roles: list[tuple[Any, ...]] = []
        mnts: list[tuple[Any, ...]] = []

        def flush() -> None:
            con.executemany("INSERT INTO raw_inet VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inets)
            con.executemany("INSERT OR REPLACE INTO org VALUES (?,?,?,?,?,?)", orgs)
            con.executemany("INSERT OR REPLACE INTO role VALUES (?,?,?)", roles)
            con.executemany("INSERT OR REPLACE INTO mntner VALUES (?,?,?)", mnts)
            for buf in (inets, orgs, roles, mnts):
                buf.clear()

        for f in files:
            for obj in parse_objects(f, rep.problems, CLASSES):
                rep.objects[obj.cls] = rep.objects.get(obj.cls, 0) + 1
                key = as_text(obj.raw[0][1])
                if obj.cls in ("inetnum", "inet6num"):
                    r = _inet_range(obj.cls, key)
                    if r is None:
                        add_problem(
                            rep.problems, str(f), f"line {obj.line}", f"{obj.cls} value is not an address range"
                        )
                        continue
                    if r[1] == b"\x00" * len(r[1]) and r[2] == b"\xff" * len(r[2]):
                        # The registry's placeholder for the whole space (IANA-BLK, ROOT): it holds nothing.
                        rep.objects["whole-space placeholders"] = rep.objects.get("whole-space placeholders", 0) + 1
                        continue
                    v = obj.firsts(INET_KEYS)
                    inets.append(
                        (
                            r[0],
                            r[1],
                            r[2],
                            v["netname"],
                            v["descr"],
                            v["country"],
                            _ref(v["org"]),
                            (v["status"] or "").split("#", 1)[0].strip().upper() or None,
                            _ref(v["abuse-c"]),
                            v["abuse-mailbox"],
                            " ".join(filter(None, (_ref(m) for m in obj.all("mnt-by")))) or None,
                            (v["source"] or "").split("#", 1)[0].strip() or None,
                            str(f),
                            obj.line,
                        )
                    )
                elif obj.cls == "organisation":
                    orgs.append(
                        (
                            _ref(key),
                            obj.first("org-name"),
                            obj.first("org-type"),
                            obj.first("country"),
                            _ref(obj.first("abuse-c")),
                            obj.first("abuse-mailbox"),
                        )
                    )
                elif obj.cls == "role":
                    hdl = _ref(obj.first("nic-hdl"))
                    if hdl:
                        roles.append((hdl, key, obj.first("abuse-mailbox")))
                elif obj.cls == "mntner":
                    mnts.append((_ref(key), obj.first("descr"), _ref(obj.first("org"))))
                if len(inets) + len(orgs) + len(roles) + len(mnts) >= batch:
                    flush()
        flush()
        # Sort on disk, then one pass with a stack of open ranges gives each range its parent.
        stack: list[tuple[int, bytes, int]] = []  # (fam, end, id)
        rows: list[tuple[Any, ...]] = []
        next_id = 0
        last_key: tuple[int, bytes, bytes] | None = None
        cur = con.execute(
            'SELECT fam, start, "end", netname, descr, country, org, status, abuse_c, abuse_mailbox, mnt_by, source'
            ' FROM raw_inet ORDER BY fam, start, "end" DESC, file, line'
        )
        ins = con.cursor()
        while chunk := cur.fetchmany(batch):
            for r in chunk:
                fam, start, end = r[0], r[1], r[2]
                if (fam, start, end) == last_key:
                    rep.duplicates += 1
                    continue
                last_key = (fam, start, end)
                while stack and (stack[-1][0] != fam or stack[-1][1] < end):
                    stack.pop()
                parent = stack[-1][2] if stack else None
                rows.append((next_id, parent, *r))
                stack.append((fam, end, next_id))
                next_id += 1
            ins.executemany("INSERT INTO inet VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            rows.clear()
        rep.ranges = next_id
        con.executescript("DROP TABLE raw_inet; CREATE INDEX inet_start ON inet(fam, start, id);")
        con.executemany("INSERT INTO problem VALUES (?,?,?)", [(p.source, p.where, p.reason) for p in rep.problems])
        rep.seconds = time.perf_counter() - t0
        meta = {
            "version": str(INDEX_VERSION),
            "files": "\n".join(str(f) for f in files),
            "ranges": str(rep.ranges),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duplicates": str(rep.duplicates),
            **{f"objects.{k}": str(v) for k, v in rep.objects.items()},
        }
        con.executemany("INSERT INTO meta VALUES (?,?)", meta.items())
        con.commit()
        con.execute("VACUUM")
        con.close()
        os.replace(tmp, out)
    except BaseException:
        con.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return rep


class WhoisIndex:
    """Allocation chains for addresses, from an on-disk index built once from RPSL dumps."""

    def __init__(self, index_path: Path):
        self.path = index_path
        uri = f"file:{urllib.parse.quote(str(index_path.resolve()))}?mode=ro"
        self.con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        self.problems = [Problem(*r) for r in self.con.execute('SELECT source, "where", reason FROM problem')]

    @classmethod
    def open(cls, paths: str | Path | Sequence[str | Path], cache_dir: Path | None = None) -> WhoisIndex:
        """An index of these dumps (a directory of split dumps, files, or an index built before)."""
        plist = [paths] if isinstance(paths, str | Path) else list(paths)
        if len(plist) == 1 and Path(plist[0]).is_file() and _is_index(Path(plist[0])):
            return cls(Path(plist[0]))
        files = _inputs(plist)
        out = (cache_dir or default_cache_dir()) / f"whois-{_inputs_key(files)}.sqlite"
        if not out.exists():
            log.info("indexing whois dumps %s into %s", ", ".join(map(str, files)), out)
            rep = build_index(files, out)
            log.info("indexed %d ranges in %.1fs (%d problems)", rep.ranges, rep.seconds, len(rep.problems))
        return cls(out)

    def close(self) -> None:
        self.con.close()

    def provenance(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": "whois",
            "kind": "rpsl",
            "entries": int(self.meta.get("ranges", 0)),
            "files": self.meta.get("files", "").split("\n"),
            "build_date": self.meta.get("built"),
            "problems": len(self.problems),
        }

    def _most_specific(self, fam: int, key: bytes) -> int | None:
        row = self.con.execute(
            'SELECT id, "end", parent FROM inet WHERE fam=? AND start<=? ORDER BY start DESC, id DESC LIMIT 1',
            (fam, key),
        ).fetchone()
        hops = 0
        while row is not None and row[1] < key and hops < MAX_CHAIN:
            if row[2] is None:
                return None
            row = self.con.execute('SELECT id, "end", parent FROM inet WHERE id=?', (row[2],)).fetchone()
            hops += 1
        return None if row is None or row[1] < key else int(row[0])

    def chain(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[dict[str, Any]]:
        """Every range holding the address, most specific first, with org, status and abuse mailbox."""
        a = ipaddress.ip_address(ip)
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            a = a.ipv4_mapped
        rid = self._most_specific(a.version, a.packed)
        links: list[dict[str, Any]] = []
        while rid is not None and len(links) < MAX_CHAIN:
            r = self.con.execute(
                """SELECT i.parent, i.fam, i.start, i."end", i.netname, i.org, o.name, i.status, i.country, i.descr, i.mnt_by,
                          i.source, ri.abuse_mailbox, i.abuse_mailbox, ro.abuse_mailbox, o.abuse_mailbox, o.country
                   FROM inet i LEFT JOIN org o ON o.id = i.org LEFT JOIN role ri ON ri.id = i.abuse_c
                   LEFT JOIN role ro ON ro.id = o.abuse_c WHERE i.id = ?""",
                (rid,),
            ).fetchone()
            links.append(
                {
                    "range": whois_range_text(ipaddress.ip_address(r[2]), ipaddress.ip_address(r[3])),
                    "netname": r[4],
                    "org": r[5],
                    "org_name": r[6],
                    "status": r[7],
                    "country": r[8] or r[16],
                    "abuse_mailbox": r[12] or r[13] or r[14] or r[15],
                    "descr": r[9],
                    "mnt_by": r[10],
                    "source": f"whois:{r[11]}" if r[11] else "whois",
                }
            )
            rid = r[0]
        return links

    def chains(self, ips: Iterable[str]) -> list[list[dict[str, Any]]]:
        return [self.chain(ip) for ip in ips]


def reseller_of(chain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The holder of the most specific sub-allocation in a chain: the reseller the space was bought through."""
    for link in chain:
        if (link.get("status") or "").upper() in RESELLER_STATUSES:
            return {
                "org": link.get("org"),
                "org_name": link.get("org_name"),
                "netname": link.get("netname"),
                "range": link.get("range"),
            }
    return None


def abuse_mailbox_of(chain: list[dict[str, Any]]) -> str | None:
    """Where to report abuse: the most specific link that names a mailbox (as the RIPE abuse finder does)."""
    for link in chain:
        if link.get("abuse_mailbox"):
            return str(link["abuse_mailbox"])
    return None


def _is_index(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"
