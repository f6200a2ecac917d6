"""Who holds an address: ASN, AS name and country from layered offline databases, and the
allocation chain (with the reseller) from whois dumps or RDAP.

Layering: databases are given in order and the first one that covers an address wins, field by
field: the AS answer (``asn``, ``as_name``, ``prefix``, ``source``) comes from the first database
with an AS for the address, the country from the first with a country. So a historical database
given before a current one answers wherever it knows the address, and the current one fills the
rest. An address no database gives an AS for is ``unrouted``; nothing is guessed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import EnrichError
from .asn import AsnSource, default_cache_dir, detect_kind, open_source
from .ranges import U64, Steps, layer_steps, parse_ips, range_text, rank_right, sort_unique, split128
from .rdap import DEFAULT_BASE, RdapClient
from .rpsl import WhoisIndex, abuse_mailbox_of, reseller_of
from .special import special_purpose
from .textio import atomic_file

__all__ = ["Enricher"]

MERGED_VERSION = 1

log = logging.getLogger(__name__)

BLOCK_SHIFT = 8  # the IPv4 direct table has one slot per /24


STATE = (
    "start_hi",
    "start_lo",
    "asn_entry",
    "cc_entry",
    "asn",
    "name",
    "source",
    "country",
    "country_source",
    "answer",
    "ans_asn",
    "ans_name",
    "ans_country",
    "ans_source",
)


class _Family:
    """The merged step function of one address family, with per-segment answer columns."""

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> _Family:
        f = cls.__new__(cls)
        for k in STATE:
            setattr(f, k, state[k])
        f.table = None
        f._ready()
        return f

    def state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in STATE}

    def _ready(self) -> None:
        pass

    def __init__(self, steps_asn: Steps, steps_cc: Steps, ent: dict[str, np.ndarray]):
        if len(steps_cc) == 1 or len(steps_asn) == 1:
            # One side is constant (e.g. an ASN-only database): the other side's steps are the answer.
            base, other = (steps_asn, steps_cc) if len(steps_cc) == 1 else (steps_cc, steps_asn)
            sh, sl = base.start_hi, base.start_lo
            const = np.full(len(sh), other.entry[0], np.int64)
            a, c = (base.entry, const) if base is steps_asn else (const, base.entry)
        else:
            sh, sl = sort_unique(
                np.concatenate([steps_asn.start_hi, steps_cc.start_hi]),
                np.concatenate([steps_asn.start_lo, steps_cc.start_lo]),
            )
            a = steps_asn.entry[steps_asn.find(sh, sl)]
            c = steps_cc.entry[steps_cc.find(sh, sl)]
        keep = np.ones(len(sh), bool)
        keep[1:] = (a[1:] != a[:-1]) | (c[1:] != c[:-1])
        self.start_hi, self.start_lo, self.asn_entry, self.cc_entry = sh[keep], sl[keep], a[keep], c[keep]
        has_a, has_c = self.asn_entry >= 0, self.cc_entry >= 0
        if len(ent["asn"]) == 0:  # no database at all: every address is unrouted
            ent = {k: np.zeros(1, v.dtype) for k, v in ent.items()}
        ai, ci = np.where(has_a, self.asn_entry, 0), np.where(has_c, self.cc_entry, 0)
        self.asn = np.where(has_a, ent["asn"][ai], 0).astype(np.uint32)
        self.name = np.where(has_a, ent["name"][ai], -1).astype(np.int32)
        self.source = np.where(has_a, ent["src"][ai], -1).astype(np.int16)
        self.country = np.where(has_c, ent["cc"][ci], -1).astype(np.int32)
        self.country_source = np.where(has_c, ent["src"][ci], -1).astype(np.int16)
        # Distinct answers (asn, name, country, source): few (~100 k), so their columns stay in cache.
        k1 = (self.asn.astype(np.uint64) << np.uint64(32)) | (self.name.astype(np.int64) + 1).astype(np.uint64)
        k2 = (
            ((self.country.astype(np.int64) + 1) << 32)
            | ((self.source.astype(np.int64) + 1) << 16)
            | (self.country_source.astype(np.int64) + 1)
        )
        u1, i1 = np.unique(k1, return_inverse=True)
        u2, i2 = np.unique(k2, return_inverse=True)
        u, inv = np.unique(i1.astype(np.int64) * len(u2) + i2, return_inverse=True)
        self.answer = inv.astype(np.int32)
        a1, a2 = u1[u // len(u2)], u2[u % len(u2)]
        uniq = np.stack(
            [
                (a1 >> np.uint64(32)).astype(np.int64),
                (a1 & np.uint64(0xFFFFFFFF)).astype(np.int64) - 1,
                (a2 >> 32) - 1,
                ((a2 >> 16) & 0xFFFF) - 1,
            ],
            1,
        )
        self.ans_asn = uniq[:, 0].astype(np.uint32)
        self.ans_name = uniq[:, 1].astype(np.int32)
        self.ans_country = uniq[:, 2].astype(np.int32)
        self.ans_source = uniq[:, 3].astype(np.int16)
        self.table: np.ndarray | None = None
        self._ready()

    def find(self, qh: np.ndarray, ql: np.ndarray) -> np.ndarray:
        return rank_right(self.start_hi, self.start_lo, qh, ql) - 1


class _Family4(_Family):
    """IPv4: uint32 starts, and a direct table from /24 block to segment for most lookups."""

    def _ready(self) -> None:
        self.starts = self.start_lo.astype(np.uint32)

    def block_table(self) -> np.ndarray:
        """Answer of each /24 block, or -1 where a segment starts inside the block."""
        if self.table is None:
            nblocks = 1 << (32 - BLOCK_SHIFT)
            blk = self.starts >> BLOCK_SHIFT
            # Segment holding the last address of each block = number of starts in blocks <= it, minus one.
            table = (np.cumsum(np.bincount(blk, minlength=nblocks)) - 1).astype(np.int32)
            inner = self.starts[(self.starts & ((1 << BLOCK_SHIFT) - 1)) != 0]
            table = self.answer[table]
            table[inner >> BLOCK_SHIFT] = -1
            self.table = table
        return self.table

    def find4(self, addrs: np.ndarray) -> np.ndarray:
        """Segment of each address."""
        return np.searchsorted(self.starts, addrs, "right") - 1

    def answers4(self, addrs: np.ndarray) -> np.ndarray:
        """Answer id of each address: the /24 table, and a search only in blocks a boundary cuts."""
        aid = self.block_table()[addrs >> BLOCK_SHIFT]
        mixed = np.nonzero(aid < 0)[0]
        if len(mixed):
            aid[mixed] = self.answer[np.searchsorted(self.starts, addrs[mixed], "right") - 1]
        return aid


class Enricher:
    """ASN, AS name, country and allocation chain of addresses, from offline sources (and RDAP if asked)."""

    def __init__(
        self,
        sources: list[AsnSource],
        whois: WhoisIndex | None = None,
        rdap: RdapClient | None = None,
        merged_cache: Path | None = None,
    ):
        self._sources = sources
        self.whois = whois
        self.rdap = rdap
        self.source_names = np.array([Path(s.path).name for s in sources], dtype=object)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("asn", "name", "cc", "src", "fh", "fl", "lh", "ll", "v6")}
        maps: list[tuple[np.ndarray | None, np.ndarray | None]]
        if len(sources) == 1:  # nothing to merge: use the source's own tables
            s0 = sources[0]
            names_l, countries_l = list(s0.names), list(s0.countries)
            maps = [(None, None)]
        else:
            names: dict[str, int] = {}
            countries: dict[str, int] = {}
            maps = []
            for s in sources:
                maps.append(
                    (
                        np.array([names.setdefault(x, len(names)) for x in s.names] + [-1], np.int32),
                        np.array([countries.setdefault(x, len(countries)) for x in s.countries] + [-1], np.int32),
                    )
                )
            names_l, countries_l = list(names), list(countries)
        for si, (s, (nmap, cmap)) in enumerate(zip(sources, maps, strict=True)):
            cols["asn"].append(s.asn.astype(np.uint32, copy=False))
            cols["name"].append(s.name if nmap is None else nmap[s.name])  # -1 indexes the trailing -1
            cols["cc"].append(s.country if cmap is None else cmap[s.country])
            cols["src"].append(np.full(s.entries, si, np.int16))
            for k, v in (("fh", s.first_hi), ("fl", s.first_lo), ("lh", s.last_hi), ("ll", s.last_lo), ("v6", s.is_v6)):
                cols[k].append(v)
        empty: dict[str, np.ndarray] = {
            "asn": np.zeros(0, np.uint32),
            "name": np.zeros(0, np.int32),
            "cc": np.zeros(0, np.int32),
            "src": np.zeros(0, np.int16),
            "fh": np.zeros(0, U64),
            "fl": np.zeros(0, U64),
            "lh": np.zeros(0, U64),
            "ll": np.zeros(0, U64),
            "v6": np.zeros(0, bool),
        }
        self._ent = {k: (v[0] if len(v) == 1 else np.concatenate(v) if v else empty[k]) for k, v in cols.items()}
        self.as_names = np.array(names_l, dtype=object)
        self.countries = np.array(countries_l, dtype=object)
        state = _load_state(merged_cache) if merged_cache is not None else None
        if state is not None:
            self._v4: _Family4 = _Family4.from_state(state["v4"])  # type: ignore[assignment]
            self._v6 = _Family.from_state(state["v6"])
        else:
            self._v4, self._v6 = self._merge()
            if merged_cache is not None:
                _save_state(merged_cache, {"v4": self._v4.state(), "v6": self._v6.state()})

    def _merge(self) -> tuple[_Family4, _Family]:
        layers: dict[tuple[bool, str], list[Steps]] = {(v6, f): [] for v6 in (False, True) for f in ("asn", "cc")}
        offset = 0
        for s in self._sources:
            for v6, st in ((False, s.v4.below(1 << 32)), (True, s.v6)):
                e = st.entry
                valid = e >= 0
                ei = np.where(valid, e, 0)
                g = np.where(valid, e + offset, -1)
                layers[(v6, "asn")].append(
                    Steps(st.start_hi, st.start_lo, np.where(valid & (s.asn[ei] > 0), g, -1)).compact()
                )
                layers[(v6, "cc")].append(
                    Steps(st.start_hi, st.start_lo, np.where(valid & (s.country[ei] >= 0), g, -1)).compact()
                )
            offset += s.entries
        nothing = Steps(np.zeros(1, U64), np.zeros(1, U64), np.full(1, -1, np.int64))

        def merged(v6: bool, f: str) -> Steps:
            ls = layers[(v6, f)]
            return layer_steps(ls) if ls else nothing

        return _Family4(merged(False, "asn"), merged(False, "cc"), self._ent), _Family(
            merged(True, "asn"), merged(True, "cc"), self._ent
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        asn_dbs: Sequence[str | Path] = (),
        whois: str | Path | Sequence[str | Path] | None = None,
        *,
        rdap: bool | RdapClient = False,
        cache_dir: Path | None = None,
        rdap_base: str = DEFAULT_BASE,
        use_cache: bool = True,
    ) -> Enricher:
        """Open the databases (first given wins where it covers an address) and the whois index.

        CAIDA as2org files among ``asn_dbs`` name the ASes of the pfx2as files among them.
        ``rdap`` may be a configured :class:`RdapClient` instead of True.
        """
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        paths = [Path(p) for p in asn_dbs]
        for p in paths:
            if not p.is_file():
                raise EnrichError(f"{p}: no such ASN database file")
        kinds = [detect_kind(p) for p in paths]
        as2org = [p for p, k in zip(paths, kinds, strict=True) if k == "as2org"]
        if len(as2org) > 1:
            raise EnrichError("give at most one as2org file")
        if as2org and "pfx2as" not in kinds:
            raise EnrichError(f"{as2org[0]}: an as2org file names the ASes of a pfx2as file; give one with it")
        sources = [
            open_source(p, as2org=as2org[0] if as2org else None, cache_dir=cache_dir, use_cache=use_cache, kind=k)
            for p, k in zip(paths, kinds, strict=True)
            if k != "as2org"
        ]
        idx = WhoisIndex.open(whois, cache_dir) if whois is not None else None
        client = rdap if isinstance(rdap, RdapClient) else RdapClient(cache_dir, rdap_base) if rdap else None
        merged_cache = None
        if use_cache and sources and all(s.key for s in sources):
            key = hashlib.sha256(f"merged-v{MERGED_VERSION}|{'|'.join(s.key for s in sources)}".encode()).hexdigest()[
                :32
            ]
            merged_cache = cache_dir / f"asn-merged-{key}.npz"
        return cls(sources, idx, client, merged_cache)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Where the answers come from: one dict per database (path, kind, entries, build date), whois, RDAP."""
        out = [s.provenance() for s in self._sources]
        if self.whois is not None:
            out.append(self.whois.provenance())
        if self.rdap is not None:
            out.append(
                {
                    "path": self.rdap.base_url,
                    "name": "rdap",
                    "kind": "rdap",
                    "entries": None,
                    "cache": str(self.rdap.cache_dir),
                }
            )
        return out

    @property
    def problems(self) -> list[Any]:
        out = [p for s in self._sources for p in s.problems]
        if self.whois is not None:
            out.extend(self.whois.problems)
        return out

    # ------------------------------------------------------------------ vectorised

    def lookup_v4(self, addrs: np.ndarray, segments: bool = False) -> dict[str, np.ndarray]:
        """Columns for IPv4 addresses (uint32): ``asn`` (0 = unrouted), ``name_index`` into
        :attr:`as_names`, ``country_index`` into :attr:`countries`, ``source_index`` into
        :attr:`source_names` (-1 = none); with ``segments=True`` also ``segment`` (for :meth:`prefix_v4`)."""
        a = np.asarray(addrs, dtype=np.uint32)
        f = self._v4
        aid = f.answers4(a)
        out = {
            "asn": f.ans_asn[aid],
            "name_index": f.ans_name[aid],
            "country_index": f.ans_country[aid],
            "source_index": f.ans_source[aid],
        }
        if segments:
            out["segment"] = f.find4(a)
        return out

    def lookup_v6(self, hi: np.ndarray, lo: np.ndarray) -> dict[str, np.ndarray]:
        """Same columns for IPv6 addresses given as high and low 64-bit halves."""
        f = self._v6
        seg = f.find(np.asarray(hi, U64), np.asarray(lo, U64))
        return {
            "asn": f.asn[seg],
            "name_index": f.name[seg],
            "country_index": f.country[seg],
            "source_index": f.source[seg],
            "segment": seg,
        }

    def lookup_v6_bytes(self, addrs: np.ndarray | pa.Array) -> dict[str, np.ndarray]:
        """IPv6 addresses as 16-byte big-endian values (the store's ``*_v6`` columns)."""
        if isinstance(addrs, pa.Array | pa.ChunkedArray):
            arr = addrs.combine_chunks() if isinstance(addrs, pa.ChunkedArray) else addrs
            buf = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * 16 : (arr.offset + len(arr)) * 16]
        else:
            buf = np.asarray(addrs).view(np.uint8).reshape(-1)
        w = buf.reshape(-1, 16).view(">u8")
        return self.lookup_v6(w[:, 0].astype(U64), w[:, 1].astype(U64))

    def table_v4(self, addrs: np.ndarray) -> pa.Table:
        """:meth:`lookup_v4` as an Arrow table with dictionary-encoded ``as_name``, ``country`` and ``source``."""
        c = self.lookup_v4(addrs)
        return self._arrow(c)

    def _arrow(self, c: dict[str, np.ndarray]) -> pa.Table:
        def dic(idx: np.ndarray, values: np.ndarray) -> pa.DictionaryArray:
            idx32 = idx.astype(np.int32)
            return pa.DictionaryArray.from_arrays(pa.array(idx32, mask=idx32 < 0), pa.array(list(values), pa.string()))

        asn = pa.array(c["asn"], pa.uint32(), mask=c["asn"] == 0)
        return pa.table(
            {
                "asn": asn,
                "as_name": dic(c["name_index"], self.as_names),
                "country": dic(c["country_index"], self.countries),
                "source": dic(c["source_index"], self.source_names),
            }
        )

    def prefix_v4(self, segment: int) -> str | None:
        return self._prefix(self._v4, segment)

    def _prefix(self, fam: _Family, segment: int) -> str | None:
        e = int(fam.asn_entry[segment])
        if e < 0:
            return None
        ent = self._ent
        first = (int(ent["fh"][e]) << 64) | int(ent["fl"][e])
        last = (int(ent["lh"][e]) << 64) | int(ent["ll"][e])
        return range_text(first, last, bool(ent["v6"][e]))

    # ------------------------------------------------------------------ per address

    @cached_property
    def _text_tables(self) -> tuple[list[str], list[str], list[str]]:
        """AS names, countries and source names as lists, made once: for ~80 k names that took most of a
        small :meth:`lookup` call when it was redone on every call."""
        return self.as_names.tolist(), self.countries.tolist(), self.source_names.tolist()

    def lookup(self, ips: Sequence[str]) -> list[dict[str, Any]]:
        """One answer per address, in order: ``ip``, ``asn``, ``as_name``, ``country``, ``prefix``,
        ``source``, ``status`` (routed/unrouted), ``special`` (the IANA special-purpose block holding
        the address, with its range, name and RFC, from :mod:`flowpivot.enrich.special`; None for
        ordinary space), ``allocation`` (most
        specific first), ``reseller``, ``abuse_mailbox``. A string that is not an address gets ``status`` ``invalid``."""
        ips = list(ips)
        canon, i4, v4, i6, v6 = parse_ips(ips)
        out: list[dict[str, Any]] = [{}] * len(ips)
        all_dbs = "+".join(self.source_names.tolist()) or None
        names, countries, src_names = self._text_tables
        for fam, pos, vals in ((self._v4, i4, v4), (self._v6, i6, v6)):
            if not pos:
                continue
            if fam is self._v4:
                seg = self._v4.find4(np.array(vals, np.uint32))
            else:
                seg = fam.find(*split128(vals))
            asn_l, name_l, cc_l = fam.asn[seg].tolist(), fam.name[seg].tolist(), fam.country[seg].tolist()
            src_l, csrc_l = fam.source[seg].tolist(), fam.country_source[seg].tolist()
            prefixes: dict[int, str | None] = {}
            for k, (p, s) in enumerate(zip(pos, seg.tolist(), strict=True)):
                asn, name_i, cc_i, src_i, csrc_i = asn_l[k], name_l[k], cc_l[k], src_l[k], csrc_l[k]
                if s not in prefixes:
                    prefixes[s] = self._prefix(fam, s)
                out[p] = {
                    "ip": canon[p],
                    "asn": asn or None,
                    "as_name": names[name_i] if name_i >= 0 else None,
                    "country": countries[cc_i] if cc_i >= 0 else None,
                    "prefix": prefixes[s],
                    "source": src_names[src_i] if src_i >= 0 else all_dbs,
                    "country_source": src_names[csrc_i] if csrc_i >= 0 else None,
                    "status": "routed" if asn else "unrouted",
                }
        for p, text in enumerate(ips):
            if canon[p] is None:
                out[p] = {
                    "ip": text,
                    "asn": None,
                    "as_name": None,
                    "country": None,
                    "prefix": None,
                    "source": None,
                    "country_source": None,
                    "status": "invalid",
                }
        for ans in out:
            chain: list[dict[str, Any]] = []
            # private, shared, documentation, ...: what an address no provider announces is
            ans["special"] = special_purpose(ans["ip"]) if ans["status"] != "invalid" else None
            if ans["status"] != "invalid":
                if self.whois is not None:
                    chain = self.whois.chain(ans["ip"])
                if not chain and self.rdap is not None:
                    chain = self.rdap.chain(ans["ip"])
                    if chain and ans["source"] is None:
                        ans["source"] = "rdap"
                    if ans["country"] is None and chain and chain[0].get("country"):
                        ans["country"], ans["country_source"] = chain[0]["country"], "rdap"
            ans["allocation"] = chain
            ans["reseller"] = reseller_of(chain)
            ans["abuse_mailbox"] = abuse_mailbox_of(chain)
        if self.rdap is not None and self.rdap.errors:
            for e in self.rdap.errors[-5:]:
                log.warning("rdap: %s", e)
        return out

    def close(self) -> None:
        if self.whois is not None:
            self.whois.close()

    def __enter__(self) -> Enricher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def ip_to_u32(ips: Sequence[str]) -> np.ndarray:
    """IPv4 text to uint32 (for callers building :meth:`Enricher.lookup_v4` input)."""
    return np.fromiter((int(ipaddress.IPv4Address(x)) for x in ips), np.uint32, len(ips))


def _save_state(path: Path, state: dict[str, dict[str, np.ndarray]]) -> None:
    """Write the merged lookup arrays (atomically: temporary file, then rename)."""
    arrays = {f"{fam}_{k}": v for fam, st in state.items() for k, v in st.items()}
    try:
        with atomic_file(path, ".npz") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    except OSError as e:
        log.warning("cannot write cache %s (%s)", path, e)


def _load_state(path: Path) -> dict[str, dict[str, np.ndarray]] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {fam: {k: z[f"{fam}_{k}"] for k in STATE} for fam in ("v4", "v6")}
    except (OSError, ValueError, KeyError, EOFError) as e:
        log.warning("cache %s unreadable (%s); rebuilding", path, e)
        return None
