"""The mutations ``bench.fuzz`` applies, one function per format.

Each returns a :class:`Case`: the mutated bytes, the kind of mutation, a short description, and
what the good records around the damage amount to (``expect``):

* ``("minus", n)``: the clean seed's stored flows less ``n`` (``n`` lines or records were damaged);
* ``("without", i)``: what the seed stores with packet ``i`` left out (a datagram's loss may take a
  template with it, so this is measured, not computed);
* ``("prefix", j)``: what the first ``j`` packets of the seed store;
* ``None``: unknown (the damage hit a file header, a Parquet footer, a compressed block...): the
  case counts for tracebacks only.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from .fuzz_seeds import Seed, build_pcap

Expect = tuple[str, int] | None

# extreme times: 2^62 ms, int64 max, negative, year 10000 (ms), 0
MS_EXTREMES = [1 << 62, (1 << 63) - 1, (1 << 64) - 1, 1 << 63, 253_402_300_800_000, 0]
U32_EXTREMES = [0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1]
TEXT_TIMES = [
    "4611686018427387.904",  # 2^62 ms, in seconds
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "-0.001",
    "253402300800",  # 10000-01-01 in seconds
    "253402300800000",
    "10000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "0001-01-01T00:00:00Z",
    "1e300",
    "1e-300",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "",
    "-",
    "18446744073709551616",
    "2026-13-45T99:99:99Z",
]
JUNK_VALUES = [
    "99999",
    "-1",
    "18446744073709551616",
    "999.1.1.1",
    "::g",
    "1.2.3",
    "x",
    "NaN",
    "\x00",
    "\u00e9\u00e9",
    '"',
    "'",
    "\\N",
    "(empty)",
    "0x10",
    "1e5",
    " 80 ",
]


@dataclass
class Case:
    kind: str
    detail: str
    data: bytes
    expect: Expect


def _flip(rng: random.Random, b: bytearray, lo: int = 0, hi: int | None = None) -> list[int]:
    hi = len(b) if hi is None else hi
    if hi <= lo:
        return []
    offs = []
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        o = rng.randrange(lo, hi)
        b[o] ^= 1 << rng.randrange(8)
        offs.append(o)
    return offs


def _run(rng: random.Random, n: int) -> bytes:
    how = rng.randrange(4)
    if how == 0:
        return b"\x00" * n
    if how == 1:
        return b"\xff" * n
    if how == 2:
        return bytes([rng.randrange(256)]) * n
    return rng.randbytes(n)


# ----- export datagrams --------------------------------------------------------------------------


def _sets(p: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """(version, [(offset, set id, set length)]) of a v9 or IPFIX message; [] for other versions."""
    if len(p) < 4:
        return 0, []
    ver = struct.unpack_from(">H", p, 0)[0]
    if ver not in (9, 10):
        return ver, []
    off = 20 if ver == 9 else 16
    out = []
    while off + 4 <= len(p):
        sid, ln = struct.unpack_from(">HH", p, off)
        if ln < 4:
            break
        out.append((off, sid, ln))
        off += ln
    return ver, out


def _templates(p: bytes) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
    """Data templates of a v9/IPFIX message: (offset, template id, field count, [(offset, element, length)])."""
    ver, sets = _sets(p)
    out = []
    for off, sid, ln in sets:
        if sid not in (0, 2):
            continue
        o, end = off + 4, off + ln
        while o + 4 <= end:
            tid, cnt = struct.unpack_from(">HH", p, o)
            fields = []
            q = o + 4
            for _ in range(cnt):
                if q + 4 > end:
                    break
                eid, flen = struct.unpack_from(">HH", p, q)
                fields.append((q, eid & 0x7FFF, flen))
                q += 8 if (ver == 10 and eid & 0x8000) else 4
            out.append((o, tid, cnt, fields))
            if len(fields) < cnt or tid < 256:
                break
            o = q
    return out


TIME_IES = {21: 4, 22: 4, 150: 4, 151: 4, 152: 8, 153: 8, 154: 8, 155: 8, 156: 8, 157: 8}


def _time_spots(seed: Seed) -> list[tuple[int, int, int]]:
    """(packet, offset in the datagram, length) of every time field of every data record of the seed."""
    spots = seed.info.get("time_spots")
    if spots is not None:
        return spots  # type: ignore[no-any-return]
    tmpl: dict[tuple[int, int], list[tuple[int, int]]] = {}
    spots = []
    for i, pk in enumerate(seed.packets):
        p = pk.payload
        ver, sets = _sets(p)
        for _o, tid, _c, fields in _templates(p):
            tmpl[(ver, tid)] = [(e, n) for _q, e, n in fields]
        for off, sid, ln in sets:
            fl = tmpl.get((ver, sid)) if sid >= 256 else None
            if not fl or any(n == 0xFFFF for _e, n in fl):
                continue
            size = sum(n for _e, n in fl)
            r = off + 4
            while size and r + size <= off + ln:
                q = r
                for e, n in fl:
                    if e in TIME_IES and n in (4, 8):
                        spots.append((i, q, n))
                    q += n
                r += size
        if ver == 5 and len(p) >= 24:
            cnt = struct.unpack_from(">H", p, 2)[0]
            for k in range(cnt):
                r = 24 + 48 * k
                if r + 48 <= len(p):
                    spots += [(i, r + 24, 4), (i, r + 28, 4)]
    seed.info["time_spots"] = spots
    return spots


def _header_time_spots(p: bytes) -> list[tuple[int, int]]:
    if len(p) < 4:
        return []
    ver = struct.unpack_from(">H", p, 0)[0]
    if ver == 5:
        return [(4, 4), (8, 4), (12, 4)]
    if ver == 9:
        return [(4, 4), (8, 4)]
    if ver == 10:
        return [(4, 4)]
    if len(p) >= 8 and struct.unpack_from(">I", p, 0)[0] == 5:  # sFlow v5: uptime after agent
        agent = 16 if struct.unpack_from(">I", p, 4)[0] == 2 else 4
        return [(8 + agent + 8, 4)]
    return []


def _put(b: bytearray, off: int, n: int, value: int) -> None:
    if off + n <= len(b):
        b[off : off + n] = (value & ((1 << (8 * n)) - 1)).to_bytes(n, "big")


def _datagram_change(rng: random.Random, kind: str, p: bytes, seed: Seed, i: int) -> tuple[bytes, str]:
    """A mutated copy of datagram ``p`` (packet ``i`` of the seed) and a description."""
    b = bytearray(p)
    if kind == "bitflip":
        return bytes(b), f"bits flipped at {_flip(rng, b)}"
    if kind == "byterun":
        n = rng.choice((1, 2, 4, 8, 16, 64))
        o = rng.randrange(max(1, len(b)))
        b[o : o + n] = _run(rng, min(n, len(b) - o))
        return bytes(b), f"{n} bytes overwritten at {o}"
    if kind == "truncate":
        k = rng.randrange(len(b)) if b else 0
        return bytes(b[:k]), f"cut to {k} of {len(b)} bytes"
    if kind == "extend":
        n = rng.choice((1, 4, 16, 100, 1000, 8000))
        return bytes(b) + _run(rng, n), f"{n} bytes appended"
    ver = struct.unpack_from(">H", b, 0)[0] if len(b) >= 2 else 0
    if kind == "length":
        _v, sets = _sets(p)
        spots: list[tuple[int, int, str]] = []
        if ver in (5, 9):
            spots.append((2, 2, "header count"))
        if ver == 10:
            spots.append((2, 2, "message length"))
        spots += [(o + 2, 2, f"set {sid} length") for o, sid, _ln in sets]
        if not spots:  # sFlow and the rest: any aligned 32-bit word (XDR counts and lengths)
            o = 4 * rng.randrange(max(1, len(b) // 4))
            _put(b, o, 4, rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(b), len(b) + 1, 1 << 20]))
            return bytes(b), f"32-bit word at {o} set to an extreme"
        o, n, what = rng.choice(spots)
        old = int.from_bytes(b[o : o + n], "big")
        v = rng.choice([0, 1, 3, 4, 15, 16, 20, old - 1, old + 1, old + 4, 0xFFFF, len(b), len(b) + 1])
        _put(b, o, n, v)
        return bytes(b), f"{what} {old} -> {v & 0xFFFF}"
    if kind == "template":
        ts = _templates(p)
        if not ts:
            return _datagram_change(rng, "length", p, seed, i)
        o, tid, cnt, fields = rng.choice(ts)
        what = rng.randrange(3) if fields else rng.randrange(2)
        if what == 0:
            v = rng.choice([0, 1, cnt - 1, cnt + 1, cnt + 100, 512, 0xFFFF])
            _put(b, o + 2, 2, v)
            return bytes(b), f"template {tid} field count {cnt} -> {v & 0xFFFF}"
        if what == 1:
            v = rng.choice([0, 1, 2, 3, 255, 256, 0xFFFF])
            _put(b, o, 2, v)
            return bytes(b), f"template id {tid} -> {v}"
        q, eid, flen = rng.choice(fields)
        if rng.random() < 0.8:
            v = rng.choice([0, 1, 3, 5, 7, 17, 255, 0xFFFE, 0xFFFF, 65000])
            _put(b, q + 2, 2, v)
            return bytes(b), f"template {tid} element {eid} length {flen} -> {v}"
        v = rng.choice([0, 0x8000 | eid, rng.randrange(1 << 16)])
        _put(b, q, 2, v)
        return bytes(b), f"template {tid} element id {eid} -> {v}"
    if kind == "time-header":
        spots2 = _header_time_spots(p)
        if not spots2:
            return _datagram_change(rng, "bitflip", p, seed, i)
        o, n = rng.choice(spots2)
        v = rng.choice(U32_EXTREMES)
        _put(b, o, n, v)
        return bytes(b), f"header time at {o} -> {v:#x}"
    raise ValueError(kind)


DATAGRAM_KINDS = [
    ("bitflip", 4),
    ("byterun", 2),
    ("truncate", 2),
    ("extend", 1),
    ("length", 3),
    ("template", 3),
    ("time-header", 1),
    ("time-record", 2),
    ("junk-datagram", 1),
    ("pcap-caplen", 1),
    ("file-bitflip", 1),
    ("file-truncate", 1),
]


def mutate_datagram(rng: random.Random, seed: Seed, kind: str) -> Case:
    pk = seed.packets
    frames = [(p.ts, p.frame) for p in pk]
    udp = [i for i, p in enumerate(pk) if p.ip_ver]
    if kind == "time-record":
        spots = _time_spots(seed)
        if not spots:
            kind = "time-header"
        else:
            i, o, n = rng.choice(spots)
            b = bytearray(pk[i].payload)
            v = rng.choice(MS_EXTREMES if n == 8 else U32_EXTREMES)
            _put(b, o, n, v)
            frames[i] = (pk[i].ts, pk[i].with_payload(bytes(b)))
            return Case(kind, f"packet {i}: time field at {o} -> {v:#x}", _pcap(seed, frames), ("minus", 1))
    if kind == "junk-datagram":
        i = rng.choice(udp)
        n = rng.choice((0, 1, 4, 20, 100, 1400))
        junk = _run(rng, n)
        if n >= 2 and rng.random() < 0.7:  # a plausible version number in front of the junk
            junk = struct.pack(">H", rng.choice((5, 9, 10))) + junk[2:]
        frames[i] = (pk[i].ts, pk[i].with_payload(junk))
        return Case(kind, f"packet {i}: datagram replaced by {n} junk bytes", _pcap(seed, frames), ("without", i))
    if kind == "pcap-caplen":
        i = rng.randrange(len(pk))
        v = rng.choice([0, 1, 13, len(pk[i].frame) + 1, 0xFFFF, 1 << 18, 0x7FFFFFFF, 0xFFFFFFFF])
        data = bytearray(_pcap(seed, frames))
        off = 24 + sum(16 + len(f) for _t, f in frames[:i])
        struct.pack_into(seed.bo + "I", data, off + 8, v)
        return Case(kind, f"packet {i}: pcap caplen -> {v}", bytes(data), ("prefix", i))
    if kind == "file-bitflip":
        data = bytearray(seed.data)
        offs = _flip(rng, data, 0, len(data))
        return Case(kind, f"pcap bits flipped at {offs}", bytes(data), _pcap_expect(seed, offs))
    if kind == "file-truncate":
        k = rng.randrange(len(seed.data))
        j, off = 0, 24
        while j < len(pk) and off + 16 + len(pk[j].frame) <= k:
            off += 16 + len(pk[j].frame)
            j += 1
        return Case(
            kind, f"pcap cut to {k} of {len(seed.data)} bytes", seed.data[:k], ("prefix", j) if k >= 24 else None
        )
    i = rng.choice(udp)
    new, detail = _datagram_change(rng, kind, pk[i].payload, seed, i)
    frames[i] = (pk[i].ts, pk[i].with_payload(new))
    return Case(kind, f"packet {i}: {detail}", _pcap(seed, frames), ("without", i))


def _pcap(seed: Seed, frames: list[tuple[tuple[int, int], bytes]]) -> bytes:
    return build_pcap(seed.pcap_header, seed.bo, frames)


def _pcap_expect(seed: Seed, offs: list[int]) -> Expect:
    if any(o < 24 for o in offs):
        return None
    hit = set()
    off = 24
    for i, p in enumerate(seed.packets):
        end = off + 16 + len(p.frame)
        for o in offs:
            if off <= o < off + 16:
                return ("prefix", i)  # a record header: its length may now be anything
            if off + 16 <= o < end:
                hit.add(i)
        off = end
    if len(hit) == 1:
        return ("without", hit.pop())
    return ("prefix", min(hit)) if hit else ("minus", 0)


def without_packet(seed: Seed, i: int) -> bytes:
    return build_pcap(seed.pcap_header, seed.bo, [(p.ts, p.frame) for k, p in enumerate(seed.packets) if k != i])


def prefix_packets(seed: Seed, j: int) -> bytes:
    return build_pcap(seed.pcap_header, seed.bo, [(p.ts, p.frame) for p in seed.packets[:j]])
