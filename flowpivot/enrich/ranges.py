"""Address ranges as step functions over 128-bit keys: flattening, layering and vectorised search.

Every address family is held as a sorted array of segment starts that covers the whole space
from 0: segment ``i`` is ``[start[i], start[i+1])`` and carries one entry id (-1 = nothing).
A 128-bit key is a pair of uint64 arrays ``(hi, lo)``; IPv4 keys have ``hi == 0``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Steps",
    "add_one",
    "rank_right",
    "sort_unique",
    "split128",
    "steps_from_disjoint",
    "steps_from_nested",
    "layer_steps",
    "range_text",
    "whois_range_text",
    "parse_ips",
]

U64 = np.uint64
ONE = np.uint64(1)


@dataclass
class Steps:
    """A step function over one address family: ``start_hi``/``start_lo`` sorted, first start 0."""

    start_hi: np.ndarray  # uint64
    start_lo: np.ndarray  # uint64
    entry: np.ndarray  # int64, -1 = not covered

    def __len__(self) -> int:
        return len(self.entry)

    def find(self, qh: np.ndarray, ql: np.ndarray) -> np.ndarray:
        """Segment index of each query key."""
        return rank_right(self.start_hi, self.start_lo, qh, ql) - 1

    def below(self, limit_lo: int) -> Steps:
        """Only the segments that start inside a space of ``limit_lo`` addresses (IPv4: 2**32)."""
        keep = (self.start_hi == 0) & (self.start_lo < np.uint64(limit_lo))
        return self if keep.all() else Steps(self.start_hi[keep], self.start_lo[keep], self.entry[keep])

    def compact(self) -> Steps:
        """Merge neighbouring segments that carry the same entry."""
        if len(self.entry) < 2:
            return self
        keep = np.ones(len(self.entry), bool)
        keep[1:] = self.entry[1:] != self.entry[:-1]
        return Steps(self.start_hi[keep], self.start_lo[keep], self.entry[keep])


def add_one(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hi, lo) + 1`` with carry, and a mask of the keys that wrapped past 2**128 - 1."""
    lo1 = lo + ONE
    carry = lo1 == 0
    hi1 = hi + carry.astype(U64)
    wrapped = carry & (hi1 == 0)
    return hi1, lo1, wrapped


def rank_right(H: np.ndarray, L: np.ndarray, qh: np.ndarray, ql: np.ndarray) -> np.ndarray:
    """Number of keys ``(H, L)`` (sorted) that are <= each query: ``searchsorted(side='right')`` on 128 bits.

    ``searchsorted`` on the high words narrows each query to the keys that share its high word;
    a vectorised binary search on the low words finishes only those (few: prefixes longer than /64).
    """
    qh = np.asarray(qh, U64)
    ql = np.asarray(ql, U64)
    left = np.searchsorted(H, qh, "left")
    right = np.searchsorted(H, qh, "right")
    tie = np.nonzero(right > left)[0]
    if len(tie) == 0:
        return right
    out = right.copy()
    size = right[tie] - left[tie]
    # Large groups of equal high words (e.g. the IPv4-compatible ::/96 of an MMDB): one
    # searchsorted per group. Small groups: a vectorised binary search of a few steps.
    big = size > 64
    if big.any():
        bt = tie[big]
        starts = left[bt]
        for g in np.unique(starts).tolist():
            sel = bt[starts == g]
            end = int(right[sel[0]])
            out[sel] = g + np.searchsorted(L[g:end], ql[sel], "right")
        tie = tie[~big]
    lo_i = left[tie]
    hi_i = right[tie]
    q = ql[tie]
    while True:
        active = lo_i < hi_i
        if not active.any():
            break
        mid = (lo_i + hi_i) // 2
        midc = np.minimum(mid, len(L) - 1)
        le = L[midc] <= q
        lo_i = np.where(active & le, mid + 1, lo_i)
        hi_i = np.where(active & ~le, mid, hi_i)
    out[tie] = lo_i
    return out


def split128(values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Python ints below 2**128 as (hi, lo) uint64 arrays."""
    hi = np.fromiter((v >> 64 for v in values), U64, len(values))
    lo = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), U64, len(values))
    return hi, lo


def sort_unique(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct 128-bit keys ``(hi, lo)``, sorted."""
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    keep = np.ones(len(hi), bool)
    keep[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return hi[keep], lo[keep]


def steps_from_disjoint(fh: np.ndarray, fl: np.ndarray, lh: np.ndarray, ll: np.ndarray, entry: np.ndarray) -> Steps:
    """Step function of disjoint ranges ``[first, last]`` sorted by first, gaps marked -1."""
    n = len(entry)
    eh, el, wrapped = add_one(lh, ll)
    sh = np.empty(2 * n + 1, U64)
    sl = np.empty(2 * n + 1, U64)
    se = np.empty(2 * n + 1, np.int64)
    sh[0] = sl[0] = 0
    se[0] = -1
    sh[1::2], sl[1::2], se[1::2] = fh, fl, entry
    sh[2::2], sl[2::2], se[2::2] = eh, el, -1
    keep = np.ones(2 * n + 1, bool)
    keep[2::2] = ~wrapped
    sh, sl, se = sh[keep], sl[keep], se[keep]
    # A gap of length zero shares its start with the next range: keep the later (the range).
    dup = np.zeros(len(se), bool)
    dup[:-1] = (sh[:-1] == sh[1:]) & (sl[:-1] == sl[1:])
    return Steps(sh[~dup], sl[~dup], se[~dup]).compact()


def steps_from_nested(
    fh: np.ndarray, fl: np.ndarray, lh: np.ndarray, ll: np.ndarray, plen: np.ndarray, entry: np.ndarray
) -> Steps:
    """Step function of prefixes that may nest: the longest (most specific) prefix wins.

    Elementary segments come from every prefix boundary; prefixes are painted level by level from
    the shortest, and prefixes of one length are disjoint, so each level is one cumulative sum.
    """
    eh, el, wrapped = add_one(lh, ll)
    bh = np.concatenate([np.zeros(1, U64), fh, eh[~wrapped]])
    bl = np.concatenate([np.zeros(1, U64), fl, el[~wrapped]])
    sh, sl = sort_unique(bh, bl)
    nseg = len(sh)
    seg = np.full(nseg, -1, np.int64)
    a = rank_right(sh, sl, fh, fl) - 1  # first segment of each prefix
    b = np.where(wrapped, nseg, rank_right(sh, sl, eh, el) - 1)  # one past its last segment
    for length in np.unique(plen):
        m = plen == length
        mark = np.zeros(nseg + 1, np.int64)
        ids = entry[m] + 1
        np.add.at(mark, a[m], ids)
        np.add.at(mark, b[m], -ids)
        cs = np.cumsum(mark[:nseg])
        painted = cs > 0
        seg[painted] = cs[painted] - 1
    return Steps(sh, sl, seg).compact()


def layer_steps(layers: list[Steps]) -> Steps:
    """Overlay step functions, the first layer winning wherever its entry is not -1.

    Entry ids must already be global (distinct between layers).
    """
    if len(layers) == 1:
        return layers[0]
    sh, sl = sort_unique(np.concatenate([s.start_hi for s in layers]), np.concatenate([s.start_lo for s in layers]))
    out = np.full(len(sh), -1, np.int64)
    for s in reversed(layers):
        e = s.entry[s.find(sh, sl)]
        out = np.where(e >= 0, e, out)
    return Steps(sh, sl, out).compact()


def range_text(first: int, last: int, v6: bool) -> str:
    """``a.b.c.0/22`` when the range is one CIDR block, else ``first-last``."""
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    size = last - first + 1
    if size & (size - 1) == 0 and first % size == 0:
        return f"{cls(first)}/{(128 if v6 else 32) - size.bit_length() + 1}"
    return f"{cls(first)}-{cls(last)}"


def whois_range_text(
    a: ipaddress.IPv4Address | ipaddress.IPv6Address, b: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> str:
    """A whois range as registries write it: ``a - b``, or the CIDR block for an IPv6 range that is one.
    TypeError when the ends are of two families, ValueError for an IPv6 range that runs backwards."""
    if a.version != b.version:
        raise TypeError(f"{a} and {b} are not of one address family")
    if a.version == 6:
        nets = list(ipaddress.summarize_address_range(a, b))
        if len(nets) == 1:
            return str(nets[0])
    return f"{a} - {b}"


def parse_ips(ips: list[str]) -> tuple[list[str | None], list[int], list[int], list[int], list[int]]:
    """Canonical text of each address (None if not an address) and the positions/ints of v4 and v6 ones.

    IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry."""
    canon: list[str | None] = []
    i4: list[int] = []
    v4: list[int] = []
    i6: list[int] = []
    v6: list[int] = []
    for i, text in enumerate(ips):
        try:
            a = ipaddress.ip_address(text.strip() if isinstance(text, str) else text)
        except ValueError:
            canon.append(None)
            continue
        if isinstance(a, ipaddress.IPv6Address) and a.scope_id:
            a = ipaddress.IPv6Address(int(a))
        canon.append(str(a))
        if a.version == 4:
            i4.append(i)
            v4.append(int(a))
        elif a.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
            i4.append(i)
            v4.append(int(a.ipv4_mapped))
        else:
            i6.append(i)
            v6.append(int(a))
    return canon, i4, v4, i6, v6
