"""Saved investigations: a name, seed sets, hunt parameters, notes, and every run's result.

One SQLite file per workspace folder (``WORKSPACE/investigations.sqlite``, stdlib ``sqlite3``)::

    investigations  id, name (unique), created, notes, disclosed, params (JSON), sources (JSON)
    seed_sets       investigation, name, addresses (JSON list)    one row per (investigation, set)
    runs            id, investigation, time, store_state (JSON), summary (JSON), result (JSON)

``params`` is :class:`~flowpivot.hunt.params.HuntParams` as a dict (only the fields it knows are
kept); ``sources`` says what a re-run hunts over (``store``, ``asn_dbs``, ``whois``,
``allowlist``); a run's ``result`` is the hunt's ``flowpivot-hunt/1`` result as it was returned,
and ``store_state`` the state of the store it ran on (:func:`flowpivot.watch.store_state`).

The schema is versioned with ``PRAGMA user_version`` and migrated forward when a newer flowpivot
opens an older file; a file written by a newer flowpivot is refused, never changed. The journal is
WAL, so readers (the web app, ``investigation list``) never wait for a writer (``watch``) and
never see half of a run; writers wait for each other up to ``busy_timeout``. Every call opens its
own connection, so one :class:`Investigations` may be used from several threads.

Names (of investigations and of seed sets) are letters, digits, ``_``, ``.`` and ``-``, starting
with a letter or digit, at most 64 characters: they are safe in file names, URLs and shells.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FlowpivotError

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "NAME",
    "Investigation",
    "Investigations",
    "Run",
    "WorkspaceError",
    "NotFound",
    "AlreadyExists",
    "InvalidInput",
    "seed_sets_from_files",
    "summarize",
]

DB_NAME = "investigations.sqlite"
SCHEMA_VERSION = 1
#: Investigation and seed-set names.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: The keys of ``sources`` (what a re-run hunts over besides the seeds).
SOURCE_KEYS = ("store", "asn_dbs", "whois", "allowlist")
RESULT_FORMAT = "flowpivot-hunt/1"

_MIGRATIONS: dict[int, str] = {
    # version 0 -> 1: the first schema
    1: """
    CREATE TABLE investigations (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        disclosed TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        sources TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE seed_sets (
        investigation INTEGER NOT NULL REFERENCES investigations(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        addresses TEXT NOT NULL,
        PRIMARY KEY (investigation, name)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        investigation INTEGER NOT NULL REFERENCES investigations(id) ON DELETE CASCADE,
        time TEXT NOT NULL,
        store_state TEXT NOT NULL DEFAULT '{}',
        summary TEXT NOT NULL DEFAULT '{}',
        result TEXT NOT NULL
    );
    CREATE INDEX runs_by_investigation ON runs (investigation, id);
    """,
}


class WorkspaceError(FlowpivotError):
    """The investigations file cannot be used as asked."""


class NotFound(WorkspaceError, LookupError):
    """No investigation (or run) by that name or id."""


class AlreadyExists(WorkspaceError):
    """An investigation by that name exists already."""


class InvalidInput(WorkspaceError, ValueError):
    """A name, address, date, parameter or result that is not what it must be."""


@dataclass(frozen=True)
class Investigation:
    id: int
    name: str
    created: str  # ISO 8601 UTC
    notes: str
    disclosed: str | None  # when the analyst reported the hosts (ISO 8601 UTC), if recorded
    seeds: dict[str, list[str]]  # set name -> addresses
    params: dict[str, Any]  # HuntParams fields that differ from nothing: what the hunt is given
    sources: dict[str, Any]  # store, asn_dbs, whois, allowlist
    runs: int = 0
    last_run: str | None = None  # time of the newest run

    def addresses(self) -> list[str]:
        """Every seed address of every set, once."""
        return sorted({a for v in self.seeds.values() for a in v}, key=_ip_key)

    def hunt_params(self) -> Any:
        """The stored parameters as :class:`~flowpivot.hunt.params.HuntParams`."""
        from ..hunt.params import HuntParams

        return HuntParams(**self.params)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Run:
    id: int
    investigation: int
    time: str  # ISO 8601 UTC, when it was recorded
    store_state: dict[str, Any]
    summary: dict[str, Any]  # counts of the result (:func:`summarize`)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _now_iso() -> str:
    ms = int(time.time() * 1000)
    return _iso(ms)


def _iso(ms: int) -> str:
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _ip_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return (a.version, int(a))


def check_name(name: str, what: str = "investigation name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r}: use 1-64 letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return name


def _addresses(name: str, addresses: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for i, a in enumerate(addresses, 1):
        try:
            ip = ipaddress.ip_address(str(a).strip())
        except ValueError:
            raise InvalidInput(f"seed set {name!r}, item {i}: not an IP address: {a!r}") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        out.add(str(ip))
    return sorted(out, key=_ip_key)


def _time(value: str | int | float | dt.datetime | None) -> str | None:
    """A disclosure date: ISO 8601 date or time, epoch seconds, or a datetime -> ISO 8601 UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        d = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return _iso(int(d.timestamp() * 1000))
    if isinstance(value, (int, float)):
        return _iso(int(value * 1000))
    from ..store import parse_time

    try:
        return _iso(parse_time(str(value)))
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def _params(params: Any) -> dict[str, Any]:
    from ..hunt.params import HuntParams

    if params is None:
        return {}
    if isinstance(params, HuntParams):
        params = params.as_dict()
    if not isinstance(params, Mapping):
        raise InvalidInput(f"hunt parameters must be a mapping, not {type(params).__name__}")
    known = set(HuntParams.names())
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInput(f"unknown hunt parameter(s): {', '.join(unknown)}")
    d = dict(params)
    try:
        HuntParams(**d)
        json.dumps(d)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"hunt parameters: {e}") from None
    return d


def _sources(sources: Mapping[str, Any] | None) -> dict[str, Any]:
    if not sources:
        return {}
    unknown = sorted(set(sources) - set(SOURCE_KEYS))
    if unknown:
        raise InvalidInput(f"unknown source(s): {', '.join(unknown)} (known: {', '.join(SOURCE_KEYS)})")
    out: dict[str, Any] = {}
    for k, v in sources.items():
        if v is None or v == [] or v == "":
            continue
        if k == "asn_dbs":
            if isinstance(v, (str, os.PathLike)):
                v = [v]
            out[k] = [os.fspath(x) for x in v]
        else:
            out[k] = os.fspath(v)
    return out


def summarize(result: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of a ``flowpivot-hunt/1`` result that a list of runs shows."""
    status: dict[str, int] = {}
    for s in result.get("seeds", []):
        status[s.get("status", "?")] = status.get(s.get("status", "?"), 0) + 1
    return {
        "window": result.get("window"),
        "seeds": len(result.get("seeds", [])),
        "seed_status": dict(sorted(status.items())),
        "clusters": len(result.get("clusters", [])),
        "members": len({m for c in result.get("clusters", []) for m in c.get("members", [])}),
        "expansion": len(result.get("expansion", [])),
        "victims": len(result.get("victims", [])),
        "probes": len(result.get("probes", [])),
        "near_misses": result.get("near_misses_total", len(result.get("near_misses", []))),
        "flows_in_window": (result.get("provenance") or {}).get("flows_in_window"),
    }


def _check_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, Mapping) or result.get("format") != RESULT_FORMAT:
        got = result.get("format") if isinstance(result, Mapping) else type(result).__name__
        raise InvalidInput(f"a run's result must be in {RESULT_FORMAT} form (format: {got!r})")
    for key in ("window", "seeds", "clusters", "expansion", "victims"):
        if key not in result:
            raise InvalidInput(f"the {RESULT_FORMAT} result has no {key!r}")
    return dict(result)


def seed_sets_from_files(entries: Iterable[str | os.PathLike[str]]) -> tuple[dict[str, list[str]], Any]:
    """``NAME=FILE`` (or plain paths: the set is the file's stem), read as ``flowpivot hunt --seeds``
    reads them (any format, defanged, CIDRs) -> ({set name: addresses}, the SeedSet with its problems)."""
    from ..hunt.seeds import read_seeds

    seedset = read_seeds([os.fspath(e) if isinstance(e, os.PathLike) else e for e in entries])
    sets: dict[str, list[str]] = {}
    for s in seedset.seeds:
        sets.setdefault(s.set, []).append(s.ip)
    return {check_name(k, "seed set name"): _addresses(k, v) for k, v in sets.items()}, seedset


class Investigations:
    """The saved investigations of one workspace folder (created on first use)."""

    def __init__(self, workspace: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.workspace = Path(workspace)
        self.path = self.workspace / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # ---- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _con(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys = ON")
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if not write:
                yield con
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise WorkspaceError(f"{self.path}: {e}") from e
        finally:
            con.close()

    def _migrate(self) -> None:
        with self._con() as con:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # a file system without shared memory (rare)
                con.execute("PRAGMA journal_mode = DELETE")
        with self._con(write=True) as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise WorkspaceError(
                    f"{self.path} was written by a newer flowpivot (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade flowpivot to open it"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version = {v}")

    def schema_version(self) -> int:
        with self._con() as con:
            return int(con.execute("PRAGMA user_version").fetchone()[0])

    def _id(self, con: sqlite3.Connection, ref: int | str) -> int:
        if isinstance(ref, bool):
            raise NotFound(f"no investigation {ref!r}")
        if isinstance(ref, int):
            row = con.execute("SELECT id FROM investigations WHERE id = ?", (ref,)).fetchone()
        else:
            row = con.execute("SELECT id FROM investigations WHERE name = ?", (str(ref),)).fetchone()
            if row is None and str(ref).isascii() and str(ref).isdigit():
                row = con.execute("SELECT id FROM investigations WHERE id = ?", (int(ref),)).fetchone()
        if row is None:
            raise NotFound(f"no investigation {ref!r} in {self.path}")
        return int(row[0])

    def _load(self, con: sqlite3.Connection, iid: int) -> Investigation:
        r = con.execute(
            "SELECT i.*, (SELECT count(*) FROM runs WHERE investigation = i.id) AS n,"
            " (SELECT max(time) FROM runs WHERE investigation = i.id) AS last"
            " FROM investigations i WHERE id = ?",
            (iid,),
        ).fetchone()
        if r is None:
            raise NotFound(f"no investigation {iid} in {self.path}")
        seeds = {
            s["name"]: json.loads(s["addresses"])
            for s in con.execute("SELECT name, addresses FROM seed_sets WHERE investigation = ? ORDER BY name", (iid,))
        }
        return Investigation(
            id=int(r["id"]),
            name=r["name"],
            created=r["created"],
            notes=r["notes"],
            disclosed=r["disclosed"],
            seeds=seeds,
            params=json.loads(r["params"]),
            sources=json.loads(r["sources"]),
            runs=int(r["n"]),
            last_run=r["last"],
        )

    # ---- investigations ----------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        seeds: Mapping[str, Iterable[str]] | None = None,
        params: Any = None,
        notes: str = "",
        disclosed: str | int | float | dt.datetime | None = None,
        sources: Mapping[str, Any] | None = None,
    ) -> Investigation:
        """Save a new investigation. ``seeds``: set name -> addresses; ``params``: HuntParams or
        its dict; ``sources``: ``store``, ``asn_dbs``, ``whois``, ``allowlist`` for re-runs."""
        check_name(name)
        sets = {check_name(k, "seed set name"): _addresses(k, v) for k, v in (seeds or {}).items()}
        p, src, when = _params(params), _sources(sources), _time(disclosed)
        with self._con(write=True) as con:
            try:
                cur = con.execute(
                    "INSERT INTO investigations (name, created, notes, disclosed, params, sources)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, _now_iso(), str(notes), when, json.dumps(p), json.dumps(src)),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"an investigation named {name!r} exists already") from None
            iid = int(cur.lastrowid or 0)
            for k, v in sets.items():
                con.execute(
                    "INSERT INTO seed_sets (investigation, name, addresses) VALUES (?, ?, ?)", (iid, k, json.dumps(v))
                )
            return self._load(con, iid)

    def get(self, ref: int | str) -> Investigation:
        """By id (an int, or digits that are no investigation's name) or by name."""
        with self._con() as con:
            return self._load(con, self._id(con, ref))

    def list(self) -> builtins.list[Investigation]:
        with self._con() as con:
            ids = [int(r[0]) for r in con.execute("SELECT id FROM investigations ORDER BY id")]
            return [self._load(con, i) for i in ids]

    def set_notes(self, ref: int | str, notes: str) -> Investigation:
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("UPDATE investigations SET notes = ? WHERE id = ?", (str(notes), iid))
            return self._load(con, iid)

    def add_note(self, ref: int | str, text: str) -> Investigation:
        """Append a line to the notes, dated (``2024-05-01T10:00:00.000Z text``)."""
        line = f"{_now_iso()} {text.strip()}"
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            old = con.execute("SELECT notes FROM investigations WHERE id = ?", (iid,)).fetchone()[0]
            notes = f"{old.rstrip()}\n{line}" if old.strip() else line
            con.execute("UPDATE investigations SET notes = ? WHERE id = ?", (notes, iid))
            return self._load(con, iid)

    def set_disclosed(self, ref: int | str, when: str | int | float | dt.datetime | None) -> Investigation:
        """Record when the hosts were reported (None clears it)."""
        value = _time(when)
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("UPDATE investigations SET disclosed = ? WHERE id = ?", (value, iid))
            return self._load(con, iid)

    def set_params(self, ref: int | str, params: Any) -> Investigation:
        p = _params(params)
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("UPDATE investigations SET params = ? WHERE id = ?", (json.dumps(p), iid))
            return self._load(con, iid)

    def set_sources(self, ref: int | str, sources: Mapping[str, Any]) -> Investigation:
        src = _sources(sources)
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("UPDATE investigations SET sources = ? WHERE id = ?", (json.dumps(src), iid))
            return self._load(con, iid)

    def set_seeds(self, ref: int | str, name: str, addresses: Iterable[str] | None) -> Investigation:
        """Replace seed set ``name`` (None removes it)."""
        check_name(name, "seed set name")
        addrs = None if addresses is None else _addresses(name, addresses)
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("DELETE FROM seed_sets WHERE investigation = ? AND name = ?", (iid, name))
            if addrs is not None:
                con.execute(
                    "INSERT INTO seed_sets (investigation, name, addresses) VALUES (?, ?, ?)",
                    (iid, name, json.dumps(addrs)),
                )
            return self._load(con, iid)

    def delete(self, ref: int | str) -> None:
        """Remove the investigation with its seed sets and runs."""
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            con.execute("DELETE FROM investigations WHERE id = ?", (iid,))

    # ---- runs --------------------------------------------------------------------------------

    def record_run(
        self,
        ref: int | str,
        result: Mapping[str, Any],
        *,
        store_state: Mapping[str, Any] | None = None,
        when: str | None = None,
    ) -> Run:
        """Keep one run's ``flowpivot-hunt/1`` result and the store state it ran on."""
        res = _check_result(result)
        text = json.dumps(res, separators=(",", ":"))
        summary = summarize(res)
        state = dict(store_state or {})
        at = _time(when) or _now_iso()
        with self._con(write=True) as con:
            iid = self._id(con, ref)
            cur = con.execute(
                "INSERT INTO runs (investigation, time, store_state, summary, result) VALUES (?, ?, ?, ?, ?)",
                (iid, at, json.dumps(state), json.dumps(summary), text),
            )
            return Run(int(cur.lastrowid or 0), iid, at, state, summary)

    def runs(self, ref: int | str) -> builtins.list[Run]:
        """The investigation's runs, oldest first (without their results)."""
        with self._con() as con:
            iid = self._id(con, ref)
            rows = con.execute(
                "SELECT id, investigation, time, store_state, summary FROM runs WHERE investigation = ? ORDER BY id",
                (iid,),
            ).fetchall()
        return [_run(r) for r in rows]

    def run(self, run_id: int) -> Run:
        with self._con() as con:
            r = con.execute(
                "SELECT id, investigation, time, store_state, summary FROM runs WHERE id = ?", (int(run_id),)
            ).fetchone()
        if r is None:
            raise NotFound(f"no run {run_id} in {self.path}")
        return _run(r)

    def last_run(self, ref: int | str) -> Run | None:
        runs = self.runs(ref)
        return runs[-1] if runs else None

    def run_result(self, run_id: int) -> dict[str, Any]:
        """The run's result, as the hunt returned it."""
        with self._con() as con:
            r = con.execute("SELECT result FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if r is None:
            raise NotFound(f"no run {run_id} in {self.path}")
        out: dict[str, Any] = json.loads(r[0])
        return out

    def delete_run(self, run_id: int) -> None:
        with self._con(write=True) as con:
            if con.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)).rowcount == 0:
                raise NotFound(f"no run {run_id} in {self.path}")


def _run(r: sqlite3.Row) -> Run:
    return Run(
        id=int(r["id"]),
        investigation=int(r["investigation"]),
        time=r["time"],
        store_state=json.loads(r["store_state"]),
        summary=json.loads(r["summary"]),
    )
