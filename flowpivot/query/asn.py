"""ASN databases for ``as`` filters and AS statistics: address -> ASN, and ASN -> address ranges.

Reads the databases ``flowpivot enrich`` reads (MMDB, ip2asn TSV, pfx2as), through the same
flattened, cached form (:func:`flowpivot.enrich.asn.open_source`). Several databases are layered:
for an address the first database that covers it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..enrich.asn import open_source
from ..enrich.ranges import Steps, layer_steps, split128

__all__ = ["AsnTable"]


class AsnTable:
    """The layered step functions of one or more ASN databases (IPv4 and IPv6)."""

    def __init__(self, v4: Steps, v6: Steps, asn: np.ndarray, names: list[str]):
        self.v4, self.v6, self.asn, self.names = v4, v6, asn, names

    @classmethod
    def open(cls, paths: Sequence[str | Path], cache_dir: Path | None = None) -> AsnTable:
        layers4: list[Steps] = []
        layers6: list[Steps] = []
        asns: list[np.ndarray] = []
        offset = 0
        for p in paths:
            src = open_source(p, cache_dir=cache_dir)
            for steps, layers in ((src.v4, layers4), (src.v6, layers6)):
                e = np.where(steps.entry >= 0, steps.entry + offset, -1)
                layers.append(Steps(steps.start_hi, steps.start_lo, e))
            asns.append(src.asn.astype(np.uint32))
            offset += src.entries
        if not asns:
            raise ValueError("no ASN database given")
        return cls(layer_steps(layers4), layer_steps(layers6), np.concatenate(asns), [str(p) for p in paths])

    def ranges(self, test: Callable[[int], bool]) -> list[tuple[int, int, int]]:
        """The address ranges ``(version, first, last)`` whose ASN passes ``test`` (ASN 0 = none never does)."""
        wanted = {int(a) for a in np.unique(self.asn) if a and test(int(a))}
        if not wanted:
            return []
        ok_entry = np.isin(self.asn, np.fromiter(wanted, np.uint32, len(wanted)))
        out: list[tuple[int, int, int]] = []
        for version, steps, top in ((4, self.v4, 1 << 32), (6, self.v6, 1 << 128)):
            hit = (steps.entry >= 0) & ok_entry[np.maximum(steps.entry, 0)]
            n = len(steps.entry)
            for i in np.flatnonzero(hit).tolist():
                first = (int(steps.start_hi[i]) << 64) | int(steps.start_lo[i])
                last = ((int(steps.start_hi[i + 1]) << 64 | int(steps.start_lo[i + 1])) if i + 1 < n else top) - 1
                if out and out[-1][0] == version and out[-1][2] + 1 == first:
                    out[-1] = (version, out[-1][1], last)
                else:
                    out.append((version, first, last))
        return out

    def lookup4(self, addrs: np.ndarray) -> np.ndarray:
        """ASN of each IPv4 address (uint32 array); 0 where no database covers it."""
        q = np.asarray(addrs, dtype=np.uint64)
        return self._find(self.v4, np.zeros_like(q), q)

    def lookup6(self, addrs: Sequence[bytes]) -> np.ndarray:
        """ASN of each IPv6 address given as 16 bytes; 0 where no database covers it."""
        hi, lo = split128([int.from_bytes(b, "big") for b in addrs])
        return self._find(self.v6, hi, lo)

    def _find(self, steps: Steps, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        if len(lo) == 0:
            return np.zeros(0, np.uint32)
        e = steps.entry[steps.find(hi, lo)]
        return np.where(e >= 0, self.asn[np.maximum(e, 0)], 0).astype(np.uint32)
