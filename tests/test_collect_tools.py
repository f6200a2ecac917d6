"""End to end with real tools: softflowd replays a pcap as NetFlow v5, v9 or IPFIX to nfcapd 1.7.1, whose
repeater (-R) forwards every datagram byte for byte to ``flowpivot collect``. What flowpivot stores
must equal what ``nfdump -r`` reads from nfcapd's file: same 5-tuples, packets, bytes, TCP flags."""

from __future__ import annotations

import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import need_tool
from test_collect import read_stats, start_cli_collector, stop_process, stored_flows, udp_queue, wait_for

pytestmark = pytest.mark.tools

TCP_FLAG_LETTERS = "CEUAPRSF"  # nfdump's %flg column, most significant bit first


def write_pcap(path: Path) -> None:
    """Complete TCP sessions, SYN scans (some answered by RST) and UDP exchanges, over IPv4 and IPv6."""
    from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, wrpcap  # type: ignore[import-untyped]

    packets = []
    clock = [1_700_000_000.0]

    def add(p: object) -> None:
        clock[0] += 0.003
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
        frame.time = clock[0]
        packets.append(frame)

    for fam, client, server, scanner in (
        (IP, "10.1.0.5", "198.51.100.7", "203.0.113.66"),
        (IPv6, "2001:db8::5", "2001:db8:1::7", "2001:db8:bad::66"),
    ):
        for k in range(4):  # sessions: handshake, data both ways with PSH, FIN both ways
            cport = 40_000 + k
            a, b = fam(src=client, dst=server), fam(src=server, dst=client)
            add(a / TCP(sport=cport, dport=443, flags="S", seq=1000))
            add(b / TCP(sport=443, dport=cport, flags="SA", seq=5000, ack=1001))
            add(a / TCP(sport=cport, dport=443, flags="A", seq=1001, ack=5001))
            for i in range(k + 2):
                add(a / TCP(sport=cport, dport=443, flags="PA") / Raw(b"q" * (60 + 7 * i + k)))
                add(b / TCP(sport=443, dport=cport, flags="PA") / Raw(b"r" * (900 + 13 * i + k)))
            add(a / TCP(sport=cport, dport=443, flags="FA"))
            add(b / TCP(sport=443, dport=cport, flags="FA"))
            add(a / TCP(sport=cport, dport=443, flags="A"))
        for port in (21, 22, 23, 25, 80, 110, 139, 445, 3389, 8080):  # SYN scan; closed ports answer RST
            add(fam(src=scanner, dst=server) / TCP(sport=61_000, dport=port, flags="S"))
            if port % 2:
                add(fam(src=server, dst=scanner) / TCP(sport=port, dport=61_000, flags="RA"))
        for k in range(3):  # UDP request/response
            add(fam(src=client, dst=server) / UDP(sport=5300 + k, dport=53) / Raw(b"d" * (30 + k)))
            add(fam(src=server, dst=client) / UDP(sport=53, dport=5300 + k) / Raw(b"a" * (120 + k)))
        add(fam(src=client, dst=server) / UDP(sport=6000, dport=123) / Raw(b"n" * 48))  # unanswered
    wrpcap(str(path), packets)


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("pcap") / "sessions-scans-udp.pcap"
    write_pcap(p)
    return p


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nfdump_flows(nfdump: str, flowdir: Path) -> Counter[tuple[object, ...]]:
    res = subprocess.run(
        [nfdump, "-R", str(flowdir), "-q", "-N", "-6", "-o", "fmt:%sa|%da|%sp|%dp|%pr|%flg|%pkt|%byt"],
        capture_output=True,
        text=True,
        check=True,
    )
    protos = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58}
    out: Counter[tuple[object, ...]] = Counter()
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        sa, da, sp, dp, pr, flg, pkt, byt = (x.strip() for x in line.split("|"))
        flags = sum(1 << (7 - i) for i, ch in enumerate(flg) if ch != ".")
        proto = int(pr) if pr.isdigit() else protos[pr]
        out[(sa, da, int(sp), int(dp), proto, flags, int(pkt), int(byt))] += 1
    return out


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_nfcapd_and_flowpivot_store_the_same_flows(version: str, pcap: Path, tmp_path: Path) -> None:
    softflowd, nfcapd, nfdump = need_tool("softflowd"), need_tool("nfcapd"), need_tool("nfdump")
    store, log, flowdir = tmp_path / "store", tmp_path / "collect.log", tmp_path / "nfcapd"
    flowdir.mkdir()
    # softflowd 1.1.0 replaying a file as IPFIX dates the flows weeks ahead of the clock (nfdump
    # shows 2027-01-01 for a 2023 capture on 2026-12-04): a wide --future-slack lets them in, so
    # that the comparison is of the decoding, not of the time check (tests/test_collect_robust.py).
    collector, fp_port = start_cli_collector(store, log, "--future-slack", "3650d")
    nf_port = free_udp_port()
    nf = subprocess.Popen(
        [nfcapd, "-w", str(flowdir), "-b", "127.0.0.1", "-p", str(nf_port), "-R", f"127.0.0.1/{fp_port}", "-y"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: udp_queue(nf_port) is not None or nf.poll() is not None, what="nfcapd to listen")
        assert nf.poll() is None, "nfcapd exited at start"
        # A malformed datagram straight to flowpivot, among the good ones.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00\x09\x00\x01\x00\x00", ("127.0.0.1", fp_port))
        # -r: read the file and expire everything at its end; -d: stay in the foreground;
        # -6: IPv6 flows too (v9 and IPFIX carry them, v5 cannot). No -c: a control socket
        # given with -r makes softflowd 1.1.0 wait on it forever.
        sf = subprocess.run(
            [softflowd, "-r", str(pcap), "-n", f"127.0.0.1:{nf_port}", "-v", version, "-d", "-6"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sf.returncode == 0, sf.stdout + sf.stderr
        assert "(0 failures)" in sf.stdout
        wait_for(lambda: udp_queue(nf_port) == 0, what="nfcapd to read what softflowd sent")
    finally:
        # nfcapd first: once it has gone, everything it repeated is in flowpivot's socket buffer.
        nf.terminate()
        nf.wait(timeout=60)
        rc = stop_process(collector)
    assert rc == 0, log.read_text()

    expected = nfdump_flows(nfdump, flowdir)
    got = stored_flows(store, times=False)
    n_v4 = sum(c for k, c in expected.items() if ":" not in str(k[0]))
    assert n_v4 == 31  # 4 sessions x 2 directions + 10 SYNs + 6 RSTs (odd ports) + 3 x 2 + 1 UDP
    assert sum(expected.values()) == (31 if version == "5" else 62)
    assert got == expected

    stats = read_stats(store)
    e = stats["exporters"]["127.0.0.1"]
    assert e["flows"] == sum(expected.values()) and e["malformed"] == 1
    assert stats["final"] and stats["flows_stored"] == sum(expected.values())
