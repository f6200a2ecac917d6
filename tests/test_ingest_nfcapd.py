"""Files written by a real nfcapd: v5, v9 and IPFIX exporters, ICMP, IPv6 and sampling.

The recorded export datagrams of the shared captures are replayed over loopback to ``nfcapd -s 10``
(a default 1-in-10 sampler, so nfcapd multiplies every count by 10). flowpivot must read the file
back with the counts as exported and ``sampling_rate`` 10; the oracle is nfdump's own line printer.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import free_udp_port, need_tool, shared, wait_for

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.schema import to_output
from flowpivot.store import Store

CAPTURES = (
    "netflow-icmp-template.pcap",
    "netflow-icmp-data.pcap",
    "netflow-nfv5.pcap",
    "netflow-ipfixprobe-templates.pcap",
    "netflow-ipfixprobe-data.pcap",
)
RATE = 10


def _udp_payloads(pcap: Path) -> list[bytes]:
    from scapy.all import UDP, rdpcap  # type: ignore[import-untyped]

    return [bytes(p[UDP].payload) for p in rdpcap(str(pcap)) if UDP in p]


@pytest.fixture(scope="module")
def nfcapd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nfcapd = need_tool("nfcapd")
    d = tmp_path_factory.mktemp("nfcapd")
    port = free_udp_port()
    log = d / "nfcapd.log"
    flows = d / "flows"
    flows.mkdir()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [nfcapd, "-w", str(flows), "-b", "127.0.0.1", "-p", str(port), "-t", "3600", "-s", str(RATE)],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"},
        )  # fmt: skip
    try:
        wait_for(lambda: b"Startup" in log.read_bytes(), "nfcapd to start")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for name in CAPTURES:
                for payload in _udp_payloads(shared(f"exports/akvorado/{name}")):
                    s.sendto(payload, ("127.0.0.1", port))
        wait_for(lambda: b"Process_ipfix" in log.read_bytes(), "nfcapd to see the IPFIX exporter")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    [path] = [p for p in flows.iterdir() if p.name.startswith("nfcapd.") and ".current." not in p.name]
    return path


def _oracle(path: Path) -> Counter:
    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-q", "-N", "-6", "-o", "fmt:%ts|%te|%sa|%da|%sp|%dp|%pr|%flg|%pkt|%byt"],
        capture_output=True, env={**os.environ, "TZ": "UTC"}, check=True,
    )  # fmt: skip
    out: Counter = Counter()
    for line in res.stdout.decode().splitlines():
        ts, te, sa, da, sp, dp, pr, flg, pkt, byt = (f.strip() for f in line.split("|"))
        proto = int(pr)
        if proto in (1, 58):  # nfdump prints an ICMP destination port as type.code
            t, c = (int(x) for x in dp.split("."))
            dport, flags = t * 256 + c, None
        else:
            dport, flags = int(dp), sum(0x80 >> i for i, ch in enumerate(flg) if ch != ".")
        out[(ts, te, sa, da, int(sp), dport, proto, flags, int(pkt) // RATE, int(byt) // RATE, RATE)] += 1
    return out


def test_nfcapd_file_with_v5_v9_ipfix_icmp_ipv6_and_sampling(nfcapd_file: Path, tmp_path: Path) -> None:
    assert detect_format(nfcapd_file) == "nfdump"
    expected = _oracle(nfcapd_file)
    assert len(expected) > 30
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([nfcapd_file], store)
    assert (rep.status, rep.bad) == ("ingested", 0), rep.problems
    t = to_output(store.query())
    got = Counter(
        (r["start"].strftime("%Y-%m-%d %H:%M:%S.") + f"{r['start'].microsecond // 1000:03d}",
         r["end"].strftime("%Y-%m-%d %H:%M:%S.") + f"{r['end'].microsecond // 1000:03d}",
         r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"], r["tcp_flags"],
         r["packets"], r["bytes"], r["sampling_rate"])
        for r in t.to_pylist()
    )  # fmt: skip
    assert got == expected
    rows = t.to_pylist()
    assert any(":" in r["src_addr"] for r in rows), "the captures hold IPv6 flows"
    icmp = [r for r in rows if r["protocol"] in (1, 58)]
    assert icmp and all(r["icmp_type"] == r["dst_port"] >> 8 and r["icmp_code"] == r["dst_port"] & 255 for r in icmp)
    # nfcapd numbers exporters by SysID; the domain is the v9 source id / IPFIX domain it printed with -E
    assert set(t.column("exporter").to_pylist()) == {"127.0.0.1"}
    domains = set(t.column("observation_domain").to_pylist())
    assert None in domains  # v5 has no observation domain
    assert pa.compute.min(store.query().column("sampling_rate")).as_py() == RATE


def test_a_record_that_is_not_json_is_reported_and_its_neighbours_kept(nfcapd_file: Path) -> None:
    """nfdump's real output for the file, with one record garbled (as nfdump's unquoted 'sni' would)."""
    import io

    from flowpivot.ingest.base import ReadReport
    from flowpivot.ingest.nfdump import _json_records

    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(nfcapd_file), "-q", "-N", "-6", "-o", "json"],
        capture_output=True, env={**os.environ, "TZ": "UTC"}, check=True,
    )  # fmt: skip
    text = res.stdout
    total = text.count(b'"type" :')
    assert b'"src6_addr"' in text and b'"src4_addr"' in text
    third = [i for i in range(len(text)) if text.startswith(b'"type" :', i)][2]
    garbled = text[:third] + b'"sni" : www.example.com,\n\t' + text[third:]
    rep = ReadReport("nfdump")
    tables = [t for t, _ in _json_records(io.BytesIO(garbled), rep)]
    rows = sum(t.num_rows for t in tables)
    assert rows == total - 1
    assert [p.where for p in rep.problems] == ["record 3"]
    names = set().union(*(t.column_names for t in tables))
    assert {"src4_addr", "src6_addr"} <= names  # records of both families survive the fallback
