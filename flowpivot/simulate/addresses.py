"""The simulated internet's addresses: draw hosts inside real providers' prefixes, write the ip2asn TSV."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np

from .scenario import Provider

__all__ = ["AddressBook"]


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted union of two uint32 arrays (np.union1d's hashing is slow on large arrays)."""
    c = np.concatenate([a, b.astype(np.uint32)])
    c.sort()
    return c[np.concatenate([[True], c[1:] != c[:-1]])] if len(c) else c


class AddressBook:
    """Every simulated address, indexed by an int; IPv4 as uint32, IPv6 as 16 network-order bytes."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._v4: list[np.ndarray] = []
        self._v6: list[np.ndarray] = []
        self._fam: list[np.ndarray] = []
        self._org: list[np.ndarray] = []
        self.n = 0
        self.providers: list[Provider] = []
        self._provider_ix: dict[tuple[int, str], int] = {}
        self._used4 = np.zeros(0, np.uint32)  # sorted
        self._used6: set[bytes] = set()
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    # ----- providers -------------------------------------------------------------------------------

    def provider_index(self, p: Provider) -> int:
        key = (p.asn, p.name)
        if key not in self._provider_ix:
            self._provider_ix[key] = len(self.providers)
            self.providers.append(p)
        return self._provider_ix[key]

    @staticmethod
    def _nets(p: Provider, v6: bool) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [n for n in (ipaddress.ip_network(x, strict=False) for x in p.prefixes) if (n.version == 6) == v6]

    @classmethod
    def has_family(cls, p: Provider, v6: bool) -> bool:
        return bool(cls._nets(p, v6))

    # ----- allocation -----------------------------------------------------------------------------

    def allocate(self, p: Provider, n: int, v6: bool = False) -> np.ndarray:
        """``n`` new distinct addresses inside ``p``'s prefixes; returns their indices."""
        if n <= 0:
            return np.zeros(0, np.int64)
        nets = self._nets(p, v6)
        if not nets:
            raise ValueError(f"AS{p.asn} ({p.name}) has no IPv{'6' if v6 else '4'} prefix to draw addresses from")
        pix = self.provider_index(p)
        if v6:
            rows = self._draw_v6(nets, n)
            v4 = np.zeros(n, np.uint32)
        else:
            v4 = self._draw_v4(nets, n)
            rows = np.zeros((n, 16), np.uint8)
        return self._append(v4, rows, np.full(n, v6), np.full(n, pix, np.int32))

    def fixed(self, p: Provider, addrs: list[str]) -> np.ndarray:
        """Well-known addresses (public resolvers); each must lie in one of ``p``'s prefixes."""
        pix = self.provider_index(p)
        v4 = np.zeros(len(addrs), np.uint32)
        rows = np.zeros((len(addrs), 16), np.uint8)
        fam = np.zeros(len(addrs), bool)
        for i, a in enumerate(addrs):
            ip = ipaddress.ip_address(a)
            if not any(ip in net for net in self._nets(p, ip.version == 6)):
                raise ValueError(f"{a} is not inside AS{p.asn}'s prefixes")
            if ip.version == 6:
                rows[i] = np.frombuffer(ip.packed, np.uint8)
                fam[i] = True
                self._used6.add(ip.packed)
            else:
                v4[i] = int(ip)
                self._used4 = _merge(self._used4, np.array([int(ip)], np.uint32))
        return self._append(v4, rows, fam, np.full(len(addrs), pix, np.int32))

    def _append(self, v4: np.ndarray, rows: np.ndarray, fam: np.ndarray, org: np.ndarray) -> np.ndarray:
        ix = np.arange(self.n, self.n + len(v4), dtype=np.int64)
        self._v4.append(v4)
        self._v6.append(rows)
        self._fam.append(fam)
        self._org.append(org)
        self.n += len(v4)
        self._cache = None
        return ix

    def _draw_v4(self, nets: list, n: int) -> np.ndarray:
        starts = np.array([int(x.network_address) for x in nets], np.int64)
        sizes = np.array([x.num_addresses for x in nets], np.int64)
        cdf = np.cumsum(sizes) / sizes.sum()
        got = np.zeros(0, np.uint32)
        while len(got) < n:
            k = (n - len(got)) * 2 + 8
            which = np.minimum(np.searchsorted(cdf, self.rng.random(k), side="right"), len(nets) - 1)
            off = (self.rng.random(k) * sizes[which]).astype(np.int64)
            cand = (starts[which] + off).astype(np.uint32)
            last = cand & 0xFF
            cand = cand[((last != 0) & (last != 255)) | (sizes[which] < 256)]
            taken = _merge(self._used4, got)
            pos = np.minimum(np.searchsorted(taken, cand), max(len(taken) - 1, 0))
            if len(taken):
                cand = cand[taken[pos] != cand]
            _, first = np.unique(cand, return_index=True)  # keep the draw order, drop repeats
            got = np.concatenate([got, cand[np.sort(first)][: n - len(got)]])
        self._used4 = _merge(self._used4, got)
        return got

    def _draw_v6(self, nets: list, n: int) -> np.ndarray:
        pre = np.stack([np.frombuffer(x.network_address.packed, np.uint8) for x in nets])
        mask = np.stack([np.frombuffer(x.hostmask.packed, np.uint8) for x in nets])
        which = self.rng.integers(len(nets), size=n)
        rnd = self.rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        rows = pre[which] | (rnd & mask[which])
        # 2^64 and more host addresses per prefix: a repeat is practically impossible, but be exact
        keys = [r.tobytes() for r in rows] if n < 50_000 else None
        if keys is not None:
            for i, k in enumerate(keys):
                while k in self._used6:
                    rows[i] = pre[which[i]] | (self.rng.integers(0, 256, 16, dtype=np.uint8) & mask[which[i]])
                    k = rows[i].tobytes()
                self._used6.add(k)
        return rows

    # ----- views ----------------------------------------------------------------------------------

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None:
            self._cache = (
                np.concatenate(self._v4) if self._v4 else np.zeros(0, np.uint32),
                np.concatenate(self._v6) if self._v6 else np.zeros((0, 16), np.uint8),
                np.concatenate(self._fam) if self._fam else np.zeros(0, bool),
                np.concatenate(self._org) if self._org else np.zeros(0, np.int32),
            )
        return self._cache

    @property
    def v4(self) -> np.ndarray:
        return self._arrays()[0]

    @property
    def v6(self) -> np.ndarray:
        return self._arrays()[1]

    @property
    def is_v6(self) -> np.ndarray:
        return self._arrays()[2]

    @property
    def org(self) -> np.ndarray:
        return self._arrays()[3]

    def text(self, ix: np.ndarray | list[int] | int) -> list[str] | str:
        """Canonical address strings for indices."""
        one = np.isscalar(ix)
        arr = np.atleast_1d(np.asarray(ix, dtype=np.int64))
        v4, v6, fam, _ = self._arrays()
        out = [
            str(ipaddress.IPv6Address(bytes(v6[i]))) if fam[i] else str(ipaddress.IPv4Address(int(v4[i])))
            for i in arr.tolist()
        ]
        return out[0] if one else out

    # ----- ip2asn ---------------------------------------------------------------------------------

    def write_ip2asn(self, path: Path) -> int:
        """Write every prefix of every provider used, in ip2asn TSV form; returns the row count."""
        rows: list[tuple[int, int, int, int, str, str]] = []
        for p in self.providers:
            for x in p.prefixes:
                net = ipaddress.ip_network(x, strict=False)
                rows.append(
                    (net.version, int(net.network_address), int(net.broadcast_address), p.asn, p.country, p.name)
                )
        rows.sort()
        out = []
        prev: tuple[int, int, int] | None = None
        for fam, lo, hi, asn, cc, name in rows:
            if prev and prev[0] == fam and lo <= prev[1]:
                if (lo, hi) == (prev[2], prev[1]):
                    continue  # the same prefix listed by two roles of one provider
                raise ValueError(
                    f"prefix {ipaddress.ip_address(lo)}-{ipaddress.ip_address(hi)} (AS{asn}) overlaps another provider's"
                )
            prev = (fam, hi, lo)
            a, b = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
            if fam == 6:
                a, b = ipaddress.IPv6Address(lo), ipaddress.IPv6Address(hi)
            out.append(f"{a}\t{b}\t{asn}\t{cc}\t{name}\n")
        Path(path).write_text("".join(out))
        return len(out)
