"""The simulator's other writers against independent oracles: IPFIX pcaps decoded by tshark and
ingested by flowpivot, Zeek conn.logs read by a few lines of csv code and ingested by flowpivot,
and systematic 1-in-N sampling's arithmetic."""

from __future__ import annotations

import csv
import ipaddress
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from conftest import need_tool

from flowpivot.ingest import ingest_paths
from flowpivot.simulate import traffic as T
from flowpivot.simulate.ipfix import IPFIX_PORT, IpfixWriter
from flowpivot.simulate.netflow9 import Exporter
from flowpivot.simulate.zeeklog import write_conn_log
from flowpivot.store import Store

T0 = 1_700_000_000_000
N_HOSTS = 4000


def addresses() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An address book: index i is 10.x.y.z (uint32) and 2001:db8::i (16 bytes); its text, by family."""
    i = np.arange(N_HOSTS)
    v4 = (0x0A000000 + 7 * i + 1).astype(np.uint32)
    v6 = np.zeros((N_HOSTS, 16), np.uint8)
    v6[:, :4] = [0x20, 0x01, 0x0D, 0xB8]
    v6[:, 14], v6[:, 15] = i >> 8, i & 0xFF
    return v4, v6, [str(ipaddress.IPv4Address(int(x))) for x in v4]


def v6_text(i: int) -> str:
    return str(ipaddress.IPv6Address(bytes(addresses()[1][i])))


def sessions(rng: np.random.Generator, n: int, big: bool = False) -> T.Sessions:
    """TCP sessions closed by FIN or RST, IPv4 and IPv6, and DNS over UDP; ``big``: long transfers."""
    med = 3000 if big else 8
    c = T.tcp_established(
        rng,
        n,
        T.lognormal_int(rng, n, med, 1.0, 1, 50_000),
        T.lognormal_int(rng, n, med, 1.0, 1, 50_000),
        400.0,
        1300.0,
    )
    rst = T.tcp_established(rng, n, c["data0"], c["data1"], 400.0, 1300.0, close="rst")
    aborted = rng.random(n) < 0.2
    c = {k: np.where(aborted, rst.get(k, 0), v) for k, v in c.items()}
    c["rst0"] = aborted.astype(np.int64)
    udp = rng.random(n) < 0.2
    for k in ("syn0", "syn1", "ack0", "ack1", "fin0", "fin1", "rst0"):
        c[k] = np.where(udp, 0, c[k])
    c["data0"] = np.where(udp, 1, c["data0"])
    c["data1"] = np.where(udp, 1, c["data1"])
    return T.new_sessions(
        n, t0=T0 + np.sort(rng.integers(0, 3_600_000, n)), dur=rng.integers(50, 600_000, n),
        a=rng.integers(0, N_HOSTS // 2, n), b=N_HOSTS // 2 + rng.integers(0, N_HOSTS // 2, n),
        sport=rng.integers(32768, 61000, n), dport=np.where(udp, 53, 443), proto=np.where(udp, 17, 6),
        v6=rng.random(n) < 0.3, **c,
    )  # fmt: skip


def exported(parts: list[dict[str, np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Flows of exporter 0, 1, ... (one part each) with interfaces and export times, as core._assign adds."""
    for e, f in enumerate(parts):
        f["exporter"] = np.full(len(f["start"]), e, np.int64)
    f = T.concat(parts)
    f["in_if"] = np.where(f["dir"] == 0, 1, 2).astype(np.uint16)
    f["out_if"] = np.where(f["dir"] == 0, 2, 1).astype(np.uint16)
    f["export"] = f["end"] + 15_000 + rng.integers(0, 1000, len(f["start"]))
    return f


def write_ipfix(
    tmp: Path, rates: list[int], algorithm: str, seed: int = 3, big: bool = False
) -> tuple[Path, dict[str, np.ndarray], list[Exporter]]:
    rng = np.random.default_rng(seed)
    parts = [T.to_flows(sessions(rng, 300, big), n, 1_800_000, rng, mode=algorithm) for n in rates]
    f = exported(parts, rng)
    exporters = [Exporter(f"192.0.2.{i + 1}", source_id=i + 1, boot_ms=T0 - 86_400_000) for i in range(len(rates))]
    v4, v6, _ = addresses()
    path = tmp / "ipfix.pcap"
    w = IpfixWriter(exporters, rates if len(rates) > 1 else rates[0], algorithm)
    w.write(path, {k: v[: len(v) // 2] for k, v in f.items()}, v4, v6)
    w.write(path, {k: v[len(v) // 2 :] for k, v in f.items()}, v4, v6, append=True)  # templates again
    return path, f, exporters


def expected_rows(f: dict[str, np.ndarray]) -> list[tuple]:
    """(domain, src, dst, sport, dport, proto, flags, packets, bytes, start, end, in_if, out_if), sorted."""
    v4, v6, text4 = addresses()
    rows = []
    for i in range(len(f["start"])):
        txt = v6_text if f["v6"][i] else text4.__getitem__
        rows.append(
            (int(f["exporter"][i]) + 1, txt(int(f["src"][i])), txt(int(f["dst"][i])))
            + tuple(int(f[k][i]) for k in ("sport", "dport", "proto", "flags", "packets", "bytes", "start", "end"))
            + (int(f["in_if"][i]), int(f["out_if"][i]))
        )
    return sorted(rows)


# ----- IPFIX decoded by tshark ---------------------------------------------------------------------

TSHARK_FIELDS = (
    "cflow.od_id", "cflow.sequence", "cflow.exporttime", "frame.time_epoch", "cflow.srcaddr", "cflow.srcaddrv6",
    "cflow.dstaddr", "cflow.dstaddrv6", "cflow.srcport", "cflow.dstport", "cflow.protocol", "cflow.tcpflags",
    "cflow.packets", "cflow.octets", "cflow.abstimestart", "cflow.abstimeend", "cflow.inputint",
    "cflow.outputint", "cflow.selector_id", "cflow.selector_algorithm", "cflow.sampling_packet_interval",
    "cflow.sampling_packet_space", "cflow.sampling_size", "cflow.sampling_population", "ip.checksum.status",
)  # fmt: skip


def tshark_messages(pcap: Path) -> list[dict[str, list[str]]]:
    """One dict per message, each field a list of its values, as tshark decodes them."""
    args = [need_tool("tshark"), "-r", str(pcap), "-n", "-d", f"udp.port=={IPFIX_PORT},cflow"]
    args += ["-o", "ip.check_checksum:TRUE", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for name in TSHARK_FIELDS:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [
        {k: (c.split("|") if c else []) for k, c in zip(TSHARK_FIELDS, line.split("\t"), strict=True)}
        for line in out.splitlines()
    ]


def ms(text: str) -> int:
    """tshark's absolute time ("Nov 14, 2023 22:13:39.395000000 UTC") in ms."""
    day, frac = text.removesuffix(" UTC").rsplit(".", 1)
    return int(datetime.strptime(day, "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC).timestamp()) * 1000 + int(frac[:3])


@pytest.mark.tools
@pytest.mark.parametrize("algorithm", ["random", "systematic"])
def test_tshark_decodes_exactly_the_written_ipfix(algorithm: str, tmp_path: Path) -> None:
    path, f, _ = write_ipfix(tmp_path, [10, 4096], algorithm, big=True)
    got, options, records_before = [], {}, Counter[int]()
    for m in tshark_messages(path):
        dom = int(m["cflow.od_id"][0])
        assert m["ip.checksum.status"] == ["1"]  # tshark verified the IPv4 header checksum
        assert int(m["cflow.exporttime"][0]) == int(float(m["frame.time_epoch"][0]))
        # the sequence number counts the data records (options data included) sent before
        assert int(m["cflow.sequence"][0]) == records_before[dom]
        if m["cflow.selector_algorithm"]:
            scope = [int(m[k][0]) if m[k] else None for k in TSHARK_FIELDS[18:24]]
            options.setdefault(dom, set()).add(tuple(scope))
            records_before[dom] += 1
        src = m["cflow.srcaddr"] or m["cflow.srcaddrv6"]
        dst = m["cflow.dstaddr"] or m["cflow.dstaddrv6"]
        records_before[dom] += len(src)
        cols = [m[k] for k in TSHARK_FIELDS[8:18]]
        assert all(len(c) == len(src) for c in cols)
        for i in range(len(src)):
            sp, dp, pr, fl, pk, by, st, en, i_in, i_out = (c[i] for c in cols[:10])
            row = (dom, src[i], dst[i], int(sp), int(dp), int(pr), int(fl, 0), int(pk), int(by), ms(st), ms(en))
            got.append((*row, int(i_in), int(i_out)))
            assert int(m["cflow.selector_id"][-1]) == dom
    assert len(got) == len(f["start"]) > 100
    assert sorted(got) == expected_rows(f)
    if algorithm == "systematic":  # 1 packet selected, N-1 skipped
        want = {1: {(1, 1, 1, 9, None, None)}, 2: {(2, 1, 1, 4095, None, None)}}
    else:  # 1 drawn out of N
        want = {1: {(1, 3, None, None, 1, 10)}, 2: {(2, 3, None, None, 1, 4096)}}
    assert options == want


# ----- IPFIX ingested by flowpivot -----------------------------------------------------------------


def address(v4: int | None, v6: bytes | None) -> str:
    """A stored address (uint32 or 16 bytes) as text."""
    return str(ipaddress.ip_address(v6 if v6 is not None else v4))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("algorithm", "rates"),
    [
        ("systematic", [1]),
        ("systematic", [10]),
        ("systematic", [4096]),
        ("systematic", [10, 4096]),
        ("random", [1]),
        ("random", [10]),
        ("random", [4096]),
        ("random", [10, 4096]),
    ],
)
def test_flowpivot_ingests_the_ipfix_flows_and_their_sampling(algorithm: str, rates: list[int], tmp_path: Path) -> None:
    path, f, exporters = write_ipfix(tmp_path, rates, algorithm, big=max(rates) > 100)
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.fmt, rep.records, rep.bad) == ("ingested", "pcap", len(f["start"]), 0), rep.problems
    got = [
        (r[0], address(r[1], r[2]), address(r[3], r[4]), *r[5:])
        for r in store.connect()
        .sql(
            "SELECT observation_domain, src_addr_v4, src_addr_v6, dst_addr_v4, dst_addr_v6, src_port, dst_port, "
            'protocol, tcp_flags, packets, bytes, epoch_ms(start), epoch_ms("end"), in_if, out_if, exporter, '
            "sampling_rate FROM flows"
        )
        .fetchall()
    ]
    assert sorted(r[:13] for r in got) == expected_rows(f)
    want = {e.address: n for e, n in zip(exporters, rates, strict=True)}
    assert {(r[13], r[14]) for r in got} == set(want.items())


# ----- systematic sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("n_rate", [2, 10, 4096])
def test_systematic_sampling_keeps_floor_or_ceil_of_n_over_N(n_rate: int) -> None:
    rng = np.random.default_rng(n_rate)
    s = sessions(rng, 4000, big=True)
    full = T.to_flows(s, 1, 3_600_000, rng)  # one record per session and direction
    kept = T.to_flows(s, n_rate, 3_600_000, rng, mode="systematic")
    n = {(int(a), int(b)): int(c) for a, b, c in zip(full["session"], full["dir"], full["packets"], strict=True)}
    flags = {(int(a), int(b)): int(c) for a, b, c in zip(full["session"], full["dir"], full["flags"], strict=True)}
    got = {(int(a), int(b)): int(c) for a, b, c in zip(kept["session"], kept["dir"], kept["packets"], strict=True)}
    assert len(got) == len(kept["packets"])  # at most one record per session and direction
    k = np.array([got.get(key, 0) for key in n])
    total = np.array(list(n.values()))
    assert ((k == total // n_rate) | (k == -(-total // n_rate))).all()
    # the phase is uniform, so the share is exact on average: sum(k) - sum(n)/N is a sum of centred terms in [-1, 1]
    assert abs(k.sum() - total.sum() / n_rate) < 5 * np.sqrt(len(k)) / 2
    for i, key in enumerate(zip(kept["session"].tolist(), kept["dir"].tolist(), strict=True)):
        assert int(kept["flags"][i]) & ~flags[key] == 0  # a kept packet's flags are some of the record's
        sess = key[0]
        assert s["t0"][sess] <= kept["start"][i] <= kept["end"][i] <= s["t0"][sess] + max(s["dur"][sess], 1)
    assert (kept["bytes"] >= kept["packets"] * 40).all()


def test_systematic_sampling_at_rate_1_is_no_sampling() -> None:
    """N=1 is no sampling: every packet kept, whichever mode."""
    s = sessions(np.random.default_rng(1), 500)
    a = T.to_flows(s, 1, 1_800_000, np.random.default_rng(2))
    b = T.to_flows(s, 1, 1_800_000, np.random.default_rng(2), mode="systematic")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unknown sampling mode"):
        T.to_flows(s, 10, 1_800_000, np.random.default_rng(2), mode="stratified")


# ----- Zeek conn.log -------------------------------------------------------------------------------

# Session kinds and what Zeek logs for them (conn_state, history), per the Zeek manual's table.
KINDS = {
    "SF": ("SF", "ShADadFf"),  # handshake, data both ways, FIN both ways
    "RSTO": ("RSTO", "ShADadR"),  # established, the originator aborts
    "RSTR": ("RSTR", "ShADadr"),  # established, the responder aborts
    "S1": ("S1", "ShADad"),  # established, still open
    "S0": ("S0", "S"),  # a SYN, no answer
    "REJ": ("REJ", "Sr"),  # a SYN answered by RST
    "UDP": ("SF", "Dd"),  # a question and its answer
    "UDP1": ("S0", "D"),  # a datagram, no answer
}


def zeek_sessions(rng: np.random.Generator, per_kind: int = 25) -> tuple[T.Sessions, list[str]]:
    """``per_kind`` sessions of every kind in KINDS, IPv4 and IPv6 mixed; and the kind of each."""
    kinds = [k for k in KINDS for _ in range(per_kind)]
    n = len(kinds)
    kind = np.array(kinds)
    c = T.tcp_established(rng, n, rng.integers(2, 40, n), rng.integers(1, 400, n), 500.0, 1400.0)  # 2+: an "a"
    c["rst0"] = (kind == "RSTO").astype(np.int64)
    c["rst1"] = np.isin(kind, ["RSTR", "REJ"]).astype(np.int64)
    for k in ("fin0", "fin1"):
        c[k] = np.where(kind == "SF", c[k], 0)
    c["ack0"] = np.where(kind == "SF", c["ack0"], c["ack0"] - 1 + (kind == "SF"))  # no ACK of a FIN
    for k in ("ack0", "ack1", "data0", "data1"):
        c[k] = np.where(np.isin(kind, ["S0", "REJ"]), 0, c[k])
    c["syn1"] = np.where(np.isin(kind, ["S0", "REJ"]), 0, c["syn1"])
    udp = np.isin(kind, ["UDP", "UDP1"])
    for k in ("syn0", "syn1", "ack0", "ack1", "fin0", "fin1", "rst0", "rst1"):
        c[k] = np.where(udp, 0, c[k])
    c["data0"] = np.where(udp, 1, c["data0"])
    c["data1"] = np.where(kind == "UDP", 1, np.where(kind == "UDP1", 0, c["data1"]))
    s = T.new_sessions(
        n, t0=T0 + rng.integers(0, 86_400_000, n), dur=rng.integers(1, 900_000, n),
        a=rng.integers(0, N_HOSTS // 2, n), b=N_HOSTS // 2 + rng.integers(0, N_HOSTS // 2, n),
        sport=rng.integers(32768, 61000, n), dport=np.where(udp, 53, 443), proto=np.where(udp, 17, 6),
        v6=rng.random(n) < 0.3, **c,
    )  # fmt: skip
    return s, kinds


def text_of(s: T.Sessions) -> Callable[[np.ndarray], list[str]]:
    """Address ids -> text, by each id's family in the sessions (as AddressBook.text does)."""
    v6_ids = set(s["a"][s["v6"]].tolist()) | set(s["b"][s["v6"]].tolist())
    _, _, text4 = addresses()
    return lambda ix: [v6_text(int(i)) if int(i) in v6_ids else text4[int(i)] for i in ix]


def unsampled(s: T.Sessions) -> dict[tuple[int, int], tuple[int, int]]:
    """(session, direction) -> (packets, IP bytes) of every packet, by the flow model at 1:1."""
    f = T.to_flows(s, 1, 1 << 40, np.random.default_rng(0))
    return {
        (int(a), int(d)): (int(p), int(b))
        for a, d, p, b in zip(f["session"], f["dir"], f["packets"], f["bytes"], strict=True)
    }


def read_tsv(path: Path) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """#fields, #types and rows of a Zeek TSV log, by its header alone."""
    fields: list[str] = []
    types: list[str] = []
    rows = []
    with open(path, newline="") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row[0].startswith("#"):
                fields = row[1:] if row[0] == "#fields" else fields
                types = row[1:] if row[0] == "#types" else types
                continue
            assert len(row) == len(fields)
            rows.append(dict(zip(fields, row, strict=True)))
    return fields, types, rows


def test_zeek_tsv_follows_its_header_and_the_sessions(tmp_path: Path) -> None:
    s, kinds = zeek_sessions(np.random.default_rng(7))
    path = tmp_path / "conn.log"
    assert write_conn_log(s, text_of(s), path, start_uid=1000) == len(kinds)
    head = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
    assert head[0] == "#separator \\x09" and head[4] == "#path\tconn" and head[-1].startswith("#close\t")
    fields, types, rows = read_tsv(path)
    assert fields[:7] == ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"]
    assert len(types) == len(fields) and types[0] == "time"
    assert len(rows) == len(kinds) and len({r["uid"] for r in rows}) == len(rows)
    truth = unsampled(s)
    text = text_of(s)
    by_key = {(r["id.orig_h"], int(r["id.orig_p"]), r["ts"]): r for r in rows}
    ends = [int(Decimal(r["ts"]) * 1000) + int(Decimal(r["duration"].replace("-", "0")) * 1000) for r in rows]
    assert ends == sorted(ends)  # written as connections end
    for i, kind in enumerate(kinds):
        r = by_key[(text([s["a"][i]])[0], int(s["sport"][i]), f"{s['t0'][i] // 1000}.{s['t0'][i] % 1000:03d}000")]
        assert (r["conn_state"], r["history"]) == KINDS[kind], (i, kind)
        assert r["id.resp_h"] == text([s["b"][i]])[0] and int(r["id.resp_p"]) == s["dport"][i]
        assert r["proto"] == ("udp" if kind.startswith("UDP") else "tcp")
        orig, resp = truth[(i, 0)], truth.get((i, 1), (0, 0))
        assert (int(r["orig_pkts"]), int(r["orig_ip_bytes"]), int(r["resp_pkts"]), int(r["resp_ip_bytes"])) == (
            *orig,
            *resp,
        )
        if orig[0] + resp[0] == 1:  # Zeek leaves duration and sizes unset for a single packet
            assert (r["duration"], r["orig_bytes"], r["resp_bytes"]) == ("-", "-", "-")
        else:
            assert Decimal(r["duration"]) * 1000 == int(s["dur"][i])
            assert 0 <= int(r["orig_bytes"]) < orig[1] and 0 <= int(r["resp_bytes"]) <= resp[1]
        assert (r["missed_bytes"], r["service"], r["tunnel_parents"]) == ("0", "-", "-")


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_flowpivot_ingests_one_flow_per_zeek_session(fmt: str, tmp_path: Path) -> None:
    s, kinds = zeek_sessions(np.random.default_rng(8))
    path = tmp_path / ("conn.log" if fmt == "tsv" else "conn.json")
    write_conn_log(s, text_of(s), path, fmt=fmt)
    if fmt == "json":
        assert all(json.loads(ln)["uid"].startswith("C") for ln in path.read_text().splitlines())
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([path], store)
    assert (rep.status, rep.fmt, rep.records, rep.bad) == ("ingested", "zeek", len(kinds), 0), rep.problems
    got = sorted(
        (address(r[0], r[1]), r[2], *r[3:])
        for r in store.connect()
        .sql(
            'SELECT src_addr_v4, src_addr_v6, src_port, epoch_ms(start), epoch_ms("end"), conn_state, history, '
            "packets, bytes, rev_packets, rev_bytes, sampling_rate FROM flows"
        )
        .fetchall()
    )
    truth = unsampled(s)
    text = text_of(s)
    want = []
    for i, kind in enumerate(kinds):
        orig, resp = truth[(i, 0)], truth.get((i, 1), (0, 0))
        dur = int(s["dur"][i]) if orig[0] + resp[0] > 1 else 0
        want.append(
            (text([s["a"][i]])[0], int(s["sport"][i]), int(s["t0"][i]), int(s["t0"][i]) + dur, *KINDS[kind])
            + (*orig, *resp, 1)
        )
    assert got == sorted(want)


def test_zeek_uids_are_distinct_across_calls() -> None:
    from flowpivot.simulate.zeeklog import uids

    a, b = uids(np.arange(0, 50_000)), uids(50_000 + np.arange(50_000))
    assert len(set(a) | set(b)) == 100_000 and all(len(u) == 17 and u[0] == "C" for u in a[:100])
