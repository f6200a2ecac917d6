"""A tiny flow world for the hunt's tests: sessions written as NetFlow-like records into a Store.

Every record is built from what the packets of a TCP/UDP exchange would put in a flow record
(flags ORed, layer-3 bytes), so the hunt's rules are tested against packet semantics, not
against numbers picked to pass.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path

import numpy as np

from flowpivot.schema import conform, ip_columns_from_strings
from flowpivot.store import DAY_MS, Store

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def _hdr(ip: str) -> int:
    return 40 if ipaddress.ip_address(ip).version == 4 else 60  # IP + TCP headers, no options


class World:
    def __init__(self, sampling: int = 1, seed: int = 7):
        self.cols: dict[str, list] = defaultdict(list)
        self.sampling = sampling
        self.rng = np.random.default_rng(seed)
        self._eph = 40000

    def eph(self) -> int:
        self._eph = 32768 + (self._eph - 32768 + 7919) % 28000
        return self._eph

    def row(
        self,
        t: int,
        src: str,
        dst: str,
        sport: int,
        dport: int,
        proto: int,
        flags: int,
        pkts: int,
        byts: int,
        dur: int = 1000,
        **extra,
    ) -> None:
        c = self.cols
        c["start"].append(t)
        c["end"].append(t + dur)
        c["src_addr"].append(src)
        c["dst_addr"].append(dst)
        c["src_port"].append(sport)
        c["dst_port"].append(dport)
        c["protocol"].append(proto)
        c["tcp_flags"].append(flags)
        c["packets"].append(pkts)
        c["bytes"].append(byts)
        c["sampling_rate"].append(extra.pop("sampling_rate", self.sampling))
        for k in ("conn_state", "history", "rev_packets", "rev_bytes", "rev_tcp_flags"):
            c[k].append(extra.pop(k, None))
        assert not extra, extra

    # --- exchanges ---------------------------------------------------------------------------------

    def session(self, client: str, server: str, port: int, t: int, data_pkts: int = 20, seg: int = 600) -> None:
        """A TCP session with payload both ways. Under 1:N sampling only the sampled packets remain."""
        sp = self.eph()
        h = _hdr(client)
        c_pk, s_pk = 3 + data_pkts, 2 + data_pkts
        if self.sampling == 1:
            self.row(t, client, server, sp, port, 6, SYN | ACK | PSH | FIN, c_pk, c_pk * h + data_pkts * seg)
            self.row(t + 5, server, client, port, sp, 6, SYN | ACK | PSH | FIN, s_pk, s_pk * h + data_pkts * 3 * seg)
            return
        # sampled: each packet survives with chance 1/N; a surviving mid-session packet is data+ACK
        for src, dst, a, b, n, size in (
            (client, server, sp, port, c_pk, h + seg),
            (server, client, port, sp, s_pk, h + 3 * seg),
        ):
            k = int(self.rng.binomial(n, 1 / self.sampling))
            if k:
                self.row(t, src, dst, a, b, 6, ACK | PSH, k, k * min(size, 1500))

    def rejected(self, client: str, server: str, port: int, t: int) -> None:
        sp = self.eph()
        self.row(t, client, server, sp, port, 6, SYN, 1, _hdr(client) + 20, dur=0)
        self.row(t + 1, server, client, port, sp, 6, RST | ACK, 1, _hdr(client), dur=0)

    def syn(self, client: str, server: str, port: int, t: int) -> None:
        self.row(t, client, server, self.eph(), port, 6, SYN, 1, _hdr(client) + 20, dur=0)

    def handshake(self, client: str, server: str, port: int, t: int) -> None:
        """A connect scan: SYN, SYN-ACK, ACK, then the client resets; no payload."""
        sp = self.eph()
        h = _hdr(client)
        self.row(t, client, server, sp, port, 6, SYN | ACK | RST, 3, 3 * h + 20, dur=10)
        self.row(t + 1, server, client, port, sp, 6, SYN | ACK, 1, h + 20, dur=0)

    def udp(self, client: str, server: str, port: int, t: int) -> None:
        sp = self.eph()
        self.row(t, client, server, sp, port, 17, 0, 1, 80, dur=0)
        self.row(t + 2, server, client, port, sp, 17, 0, 1, 200, dur=0)

    def write(self, root: Path, key: str = "world") -> Store:
        cols = dict(self.cols)
        src4, src6 = ip_columns_from_strings(cols.pop("src_addr"))
        dst4, dst6 = ip_columns_from_strings(cols.pop("dst_addr"))
        cols.update({"src_addr_v4": src4, "src_addr_v6": src6, "dst_addr_v4": dst4, "dst_addr_v6": dst6})
        cols["exporter"] = ["192.0.2.1"] * len(cols["start"])
        store = Store(root)
        store.write([conform(cols)], key)
        return store


def day(n: float) -> int:
    return T0 + int(n * DAY_MS)


def write_asn_tsv(path: Path, rows: list[tuple[str, str, int, str, str]]) -> Path:
    """ip2asn TSV: range_start, range_end, AS number, country, AS description."""
    path.write_text("".join(f"{a}\t{b}\t{asn}\t{cc}\t{name}\n" for a, b, asn, cc, name in rows))
    return path


def fin7_like(root: Path, *, sampling: int = 1, v6: bool = False, seed: int = 7) -> dict:
    """Two actor providers reaching overlapping seed sets, new hosts, victims and every kind of noise.

    Returns the ground truth the tests compare the hunt with.
    """
    w = World(sampling=sampling, seed=seed)
    rng = np.random.default_rng(seed)
    if v6:
        seeds = [f"2a06:1280:ae01::{i + 0x10:x}" for i in range(14)]
        a_mem = [f"2a0a:8d80:0:1::{i + 1:x}" for i in range(4)]
        b_mem = [f"2a0c:9a40:1::{i + 1:x}" for i in range(3)]
        new = ["2a02:4780:5::a", "2a02:4780:5::b"]
    else:
        seeds = [f"86.104.72.{16 + i}" for i in range(14)]
        a_mem = [f"5.133.76.{10 + i}" for i in range(4)]
        b_mem = [f"85.137.164.{5 + i}" for i in range(3)]
        new = ["193.42.33.7", "193.42.33.8"]
    a_seeds, b_seeds = seeds[0:10], seeds[4:14]  # 10 each, 6 shared
    background = [f"10.{1 + i // 200}.{i % 200}.{1 + i % 7}" for i in range(400)]
    victims = ["10.200.0.5", "10.200.0.6"]
    scanner, research, resolver, cdn = "45.155.205.99", "167.94.138.50", "9.9.9.9", "23.45.67.89"
    # The actor's activity runs to day 20; the store runs to day 30 (providers suspended the seeds).
    for d in range(0, 20):
        for members, their_seeds, port in ((a_mem, a_seeds, 22), (b_mem, b_seeds, 3389)):
            for m in members:
                for s in their_seeds:
                    if rng.random() < 0.7:
                        for _ in range(3 if sampling > 1 else 1):
                            w.session(m, s, port, day(d + rng.random()), data_pkts=60 if sampling > 1 else 20)
                for n in new:
                    if rng.random() < 0.5:
                        w.session(m, n, 443, day(d + rng.random()), data_pkts=60 if sampling > 1 else 20)
        for s in seeds:  # seeds resolve names and fetch updates like everyone else
            w.udp(s, resolver, 53, day(d + rng.random()))
            if rng.random() < 0.5:
                w.session(s, cdn, 443, day(d + rng.random()), data_pkts=40)
    # victims beacon to one seed each, every 10 minutes for 3 days (short sessions: 6 packets)
    for v, s in zip(victims, (seeds[0], seeds[7]), strict=True):
        t = day(2)
        while t < day(5):
            w.session(v, s, 443, t, data_pkts=3)
            t += 600_000 + int(rng.integers(-20_000, 20_000))
    # background: hosts using the resolver and the CDN for the whole 30 days
    for d in range(0, 30):
        for b in background:
            if rng.random() < 0.3:
                w.udp(b, resolver, 53, day(d + rng.random()))
            if rng.random() < 0.2:
                w.session(b, cdn, 443, day(d + rng.random()), data_pkts=40)
    # a SYN scanner and a research scanner that completes handshakes with everyone
    targets = seeds + a_mem + b_mem + new + background
    for i, t in enumerate(targets):
        w.syn(scanner, t, 22, day(3 + i / len(targets)))
        w.handshake(research, t, 443, day(4 + i / len(targets)))
        if sampling == 1:
            w.session(research, t, 443, day(6 + i / len(targets)), data_pkts=1)
    w.write(root)
    return {
        "seeds": seeds,
        "a_members": a_mem,
        "b_members": b_mem,
        "a_seeds": a_seeds,
        "b_seeds": b_seeds,
        "new": new,
        "victims": victims,
        "noise": [scanner, research, resolver, cdn],
        "background": background,
    }


def fin7_asn(path: Path, v6: bool = False) -> Path:
    if v6:
        rows = [
            ("2a06:1280:ae01::", "2a06:1280:ae01:ffff:ffff:ffff:ffff:ffff", 44477, "GB", "STARK-INDUSTRIES"),
            ("2a0a:8d80::", "2a0a:8d80:ffff:ffff:ffff:ffff:ffff:ffff", 12494, "RU", "ASN-POSTLTD"),
            ("2a0c:9a40::", "2a0c:9a40:ffff:ffff:ffff:ffff:ffff:ffff", 62212, "EE", "EE - SmartApe OU"),
            ("2a02:4780::", "2a02:4780:ffff:ffff:ffff:ffff:ffff:ffff", 47583, "LT", "AS-HOSTINGER"),
        ]
    else:
        rows = [
            ("5.133.76.0", "5.133.79.255", 12494, "RU", "ASN-POSTLTD"),
            ("85.137.164.0", "85.137.167.255", 62212, "EE", "EE - SmartApe OU"),
            ("86.104.72.0", "86.104.75.255", 44477, "GB", "STARK-INDUSTRIES"),
            ("193.42.33.0", "193.42.33.255", 47583, "LT", "AS-HOSTINGER"),
        ]
    return write_asn_tsv(path, rows)
