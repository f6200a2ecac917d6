"""The live collector: datagrams built by scapy (an independent NetFlow v5 encoder) sent over real UDP
sockets, the store and the counters compared with what was sent. No sleeps: every wait polls."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flowpivot.collect import Collector, _MmsgReader, _reader, kernel_drops, parse_listen, udp_queue
from flowpivot.decode import FlowDecoder
from flowpivot.schema import to_output
from flowpivot.store import Store

REPO = Path(__file__).resolve().parents[1]
FlowKey = tuple[Any, ...]

# ---- helpers shared with test_collect_tools.py --------------------------------------------------


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (and return it)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)  # polling interval, not a wait for an outcome
        delay = min(delay * 2, 0.1)


def start_cli_collector(
    store: Path, log: Path, *args: str, listen: str = "127.0.0.1:0"
) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``flowpivot collect`` in a subprocess; return it and the UDP port it bound (read from its log)."""
    cmd = [
        sys.executable,
        "-c",
        "from flowpivot.cli import main; main()",
        "collect",
        "--store",
        str(store),
        "--listen",
        listen,
        *args,
    ]
    fh = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, cwd=REPO)
    fh.close()

    def port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"flowpivot collect exited early ({proc.returncode}): {log.read_text()}")
        for line in log.read_text().splitlines():
            if line.startswith("listening on "):
                return int(line.split()[2].rsplit(":", 1)[1])
        return None

    return proc, wait_for(port, what="flowpivot collect to listen")


def stop_process(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
    proc.send_signal(signum)
    return proc.wait(timeout=timeout)


def random_v5_flows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    flows = []
    for _ in range(n):
        proto = rng.choice((6, 6, 6, 17, 17, 1))
        first = rng.randrange(0, 50_000)
        flows.append(
            dict(
                src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                dst=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                srcport=rng.randrange(1024, 65536) if proto != 1 else 0,
                dstport=rng.choice((443, 80, 53, 22, 8080, 3389))
                if proto != 1
                else rng.choice((0x0800, 0x0000, 0x0303)),
                prot=proto,
                tcpFlags=rng.choice((0x02, 0x12, 0x14, 0x1B, 0x1F, 0x18)) if proto == 6 else 0,
                dpkts=rng.randrange(1, 5000),
                dOctets=rng.randrange(40, 5_000_000),
                first=first,
                last=first + rng.randrange(0, 10_000),
                input=rng.randrange(1, 9),
                output=rng.randrange(1, 9),
            )
        )
    return flows


def v5_datagrams(
    flows: list[dict[str, Any]], per: int = 30, seq0: int = 0, uptime: int = 60_000, secs: int | None = None
) -> list[bytes]:
    """NetFlow v5 export datagrams (scapy's encoder) carrying ``flows``, ``per`` records each."""
    from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5  # type: ignore[import-untyped]

    secs = int(time.time()) if secs is None else secs
    out = []
    for i in range(0, len(flows), per):
        chunk = flows[i : i + per]
        header = NetflowHeader() / NetflowHeaderV5(
            count=len(chunk), sysUptime=uptime, unixSecs=secs, flowSequence=seq0 + i
        )
        out.append(bytes(header) + b"".join(bytes(NetflowRecordV5(**f)) for f in chunk))
    return out


def expected_v5(flows: list[dict[str, Any]], uptime: int = 60_000, secs: int = 0) -> Counter[FlowKey]:
    """What the v5 format says each record means (start/end = export time - uptime + first/last)."""
    base = secs * 1000 - uptime
    return Counter(
        (
            f["src"],
            f["dst"],
            f["srcport"],
            f["dstport"],
            f["prot"],
            f["tcpFlags"],
            f["dpkts"],
            f["dOctets"],
            base + f["first"],
            base + f["last"],
        )
        for f in flows
    )


def stored_flows(store: Path, times: bool = True) -> Counter[FlowKey]:
    t = to_output(Store(store).query())
    rows = t.to_pylist()
    key = ("src_addr", "dst_addr", "src_port", "dst_port", "protocol", "tcp_flags", "packets", "bytes")
    out: Counter[FlowKey] = Counter()
    for r in rows:
        k = tuple(r[c] or 0 if c in ("src_port", "dst_port", "tcp_flags") else r[c] for c in key)
        if times:
            k += (int(r["start"].timestamp() * 1000), int(r["end"].timestamp() * 1000))
        out[k] += 1
    return out


def stored_v5_flows(store: Path) -> Counter[FlowKey]:
    """As stored_flows, with ICMP type/code folded back into the v5 destination port."""
    t = to_output(Store(store).query()).to_pylist()
    out: Counter[FlowKey] = Counter()
    for r in t:
        dport = r["dst_port"] or 0
        if r["protocol"] == 1 and not dport:
            dport = ((r["icmp_type"] or 0) << 8) | (r["icmp_code"] or 0)
        out[
            (r["src_addr"], r["dst_addr"], r["src_port"] or 0, dport, r["protocol"], r["tcp_flags"] or 0, r["packets"], r["bytes"],
             int(r["start"].timestamp() * 1000), int(r["end"].timestamp() * 1000))
        ] += 1  # fmt: skip
    return out


def send_all(datagrams: list[bytes], addr: tuple[str, int], family: int = socket.AF_INET) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, addr)


def read_stats(store: Path) -> dict[str, Any]:
    return json.loads((store / "collector" / "stats.json").read_text())


def read_stats_lines(store: Path) -> list[dict[str, Any]]:
    p = store / "collector" / "stats.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


# ---- library ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("127.0.0.1:2055", ("127.0.0.1", 2055)),
        ("0.0.0.0:9995", ("0.0.0.0", 9995)),
        ("[::1]:4739", ("::1", 4739)),
        ("::1", ("::1", 2055)),
        ("10.0.0.1", ("10.0.0.1", 2055)),
        (":6343", ("127.0.0.1", 6343)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:port", "[::1]:70000", "1.2.3.4:-1"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_constructor_touches_nothing(tmp_path: Path) -> None:
    Collector(Store(tmp_path / "s"), ("127.0.0.1", 0))
    assert not (tmp_path / "s").exists()


RECEIVERS = pytest.mark.parametrize(
    "process,use_recvmmsg,call",
    [
        (True, True, "recvmmsg in a receive process"),
        (False, True, "recvmmsg"),
        (False, False, "recvfrom"),
    ],
    ids=["process", "thread-recvmmsg", "thread-recvfrom"],
)


@RECEIVERS
def test_stores_what_was_sent_and_counts_malformed(
    tmp_path: Path, process: bool, use_recvmmsg: bool, call: str
) -> None:
    rng = random.Random(5)
    secs = int(time.time())
    flows = random_v5_flows(rng, 600)
    good = v5_datagrams(flows, secs=secs)
    malformed = [
        b"\x00\x05\x00",  # shorter than any header
        good[0][:24] + b"\x01" * 20,  # v5 header announcing 30 records, less than one present
        b"\x42\x42" + bytes(100),  # no such export version
    ]
    stream = good[:7] + [malformed[0]] + good[7:13] + malformed[1:] + good[13:]
    store = tmp_path / "store"
    c = Collector(
        Store(store), ("127.0.0.1", 0), decoder=FlowDecoder(), use_recvmmsg=use_recvmmsg, receive_process=process
    )
    addr = c.start()
    try:
        send_all(stream, addr)
    finally:
        c.stop()
    assert c.receive_call == call
    assert stored_v5_flows(store) == expected_v5(flows, secs=secs)
    stats = read_stats(store)
    e = stats["exporters"]["127.0.0.1"]
    assert (e["datagrams"], e["flows"], e["malformed"], e["lost_seq"]) == (len(stream), 600, 3, 0)
    assert stats["final"] is True and stats["flows_stored"] == 600 and stats["datagrams_received"] == len(stream)
    assert stats["rcvbuf_effective"] >= 1 << 16 and stats["kernel_drops"] == 0
    assert len(stats["recent_problems"]) == 3 and all(p["source"] == "127.0.0.1" for p in stats["recent_problems"])
    lines = read_stats_lines(store)
    assert lines[-1]["final"] is True and sum(x["flows_stored"] for x in lines) == 600
    assert sum(x["exporters"]["127.0.0.1"]["malformed"] for x in lines if x["exporters"]) == 3


def test_sequence_gap_is_counted(tmp_path: Path) -> None:
    rng = random.Random(6)
    flows = random_v5_flows(rng, 300)
    dgrams = v5_datagrams(flows)
    store = tmp_path / "store"
    with Collector(Store(store), ("127.0.0.1", 0), decoder=FlowDecoder()) as c:
        assert c.address is not None
        send_all(dgrams[:4] + dgrams[6:], c.address)  # two datagrams of 30 flows never arrive
    e = read_stats(store)["exporters"]["127.0.0.1"]
    assert (e["flows"], e["lost_seq"]) == (240, 60)


class GatedDecoder(FlowDecoder):
    """The real decoder, held back until the test opens the gate (to fill the buffers on purpose)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def decode_many(self, datagrams, where=None):  # type: ignore[no-untyped-def]
        self.gate.wait()
        return super().decode_many(datagrams, where)


def test_overload_is_bounded_and_counted(tmp_path: Path) -> None:
    """With the decoder stalled, the backlog stops at its bound, the kernel drops the rest, and the
    counters account for every flow: stored + 30 x kernel drops = sent, lost_seq agrees."""
    rng = random.Random(13)
    secs = int(time.time())
    flows, last = random_v5_flows(rng, 30 * 400), random_v5_flows(rng, 30)
    dgrams = v5_datagrams(flows, secs=secs)
    marker = v5_datagrams(last, seq0=len(flows), secs=secs)  # after the overload: reveals a gap at the end
    store = tmp_path / "store"
    dec = GatedDecoder()
    c = Collector(
        Store(store), ("127.0.0.1", 0), decoder=dec, rcvbuf=1 << 16, max_backlog_bytes=50_000, chunk_datagrams=8
    )
    addr = c.start()
    exporter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # one source port: one transport session
    try:
        for d in dgrams:
            exporter.sendto(d, addr)
        wait_for(lambda: (kernel_drops(c._sock) or 0) > 0, what="the kernel to drop")  # type: ignore[arg-type]
        wait_for(lambda: c.timing["backlog_waits"] > 0, what="the receive thread to hold back")
        assert c.alive()
        dec.gate.set()
        wait_for(
            lambda: udp_queue(addr[1]) == 0 and c.flows_decoded == c.datagrams_received * 30,
            what="the backlog to clear",
        )
        exporter.sendto(marker[0], addr)
        wait_for(
            lambda: c.flows_decoded == c.datagrams_received * 30 == 30 * (401 - (kernel_drops(c._sock) or 0)),
            what="the last datagram",
        )  # type: ignore[arg-type]
    finally:
        exporter.close()
        dec.gate.set()
        c.stop()
    stats = read_stats(store)
    drops = stats["kernel_drops"]
    stored = stats["flows_stored"]
    # the backlog never went past its bound by more than the one list that crossed it (8 datagrams,
    # or up to 63 more from the recvmmsg call that filled it)
    assert 50_000 < stats["timing"]["max_backlog_bytes_seen"] <= 50_000 + (8 + 63) * (len(dgrams[0]) + 160)
    assert stats["loss"]["kernel_drops"] == drops and stats["loss"]["lost_seq"] == 30 * drops
    assert drops > 0 and stored + 30 * drops == len(flows) + 30
    assert stats["exporters"]["127.0.0.1"]["lost_seq"] == 30 * drops
    got = stored_v5_flows(store)
    assert not got - expected_v5(flows + last, secs=secs)  # only flows that were sent
    assert not expected_v5(last, secs=secs) - got  # the datagram sent after the overload is there


def test_data_without_template_is_counted_lost_at_exit(tmp_path: Path) -> None:
    """A v9 data set whose template never came cannot be decoded after exit: it is counted, not silently held."""
    import struct

    body = bytes(range(40))
    dataset = struct.pack(">HH", 300, 4 + len(body)) + body
    datagram = struct.pack(">HHIIII", 9, 1, 60_000, int(time.time()), 0, 7) + dataset  # RFC 3954 header
    store = tmp_path / "store"
    with Collector(Store(store), ("127.0.0.1", 0), decoder=FlowDecoder()) as c:
        assert c.address is not None
        send_all([datagram], c.address)
        wait_for(lambda: c.exporters().get("127.0.0.1", {}).get("pending") == 1, what="the data set to be held")
    e = read_stats(store)["exporters"]["127.0.0.1"]
    assert (e["pending"], e["pending_lost"], e["flows"]) == (0, 1, 0)
    assert not Store(store).files()


def test_rotation_commits_each_window(tmp_path: Path) -> None:
    now = [1_800_000_000_000]  # a window boundary (divisible by 60 s)
    rng = random.Random(7)
    first, second = random_v5_flows(rng, 90), random_v5_flows(rng, 60)
    store = tmp_path / "store"
    c = Collector(Store(store), ("127.0.0.1", 0), rotate_ms=60_000, decoder=FlowDecoder(), clock_ms=lambda: now[0])
    addr = c.start()
    try:
        send_all(v5_datagrams(first, secs=1_800_000_000), addr)
        wait_for(lambda: c.flows_decoded == 90, what="the first window's flows")
        assert c.windows_committed == 0 and not Store(store).files()
        now[0] += 60_000
        wait_for(lambda: c.windows_committed == 1, what="the first rotation")
        assert sum(pq.read_metadata(f).num_rows for f in Store(store).files()) == 90
        send_all(v5_datagrams(second, seq0=90, secs=1_800_000_060), addr)
        wait_for(lambda: c.flows_decoded == 150, what="the second window's flows")
    finally:
        c.stop()
    files = Store(store).files()
    assert len(files) == 2 and sorted(pq.read_metadata(f).num_rows for f in files) == [60, 90]
    lines = read_stats_lines(store)
    assert [(x["window_start"], x["flows_stored"], x["final"]) for x in lines] == [
        ("2027-01-15T08:00:00.000Z", 90, False),
        ("2027-01-15T08:01:00.000Z", 60, True),
    ]
    keys = {k for x in lines for k in x["keys"]}
    assert all(Store(store).has_source(k) for k in keys) and len(keys) == 2
    assert stored_v5_flows(store) == expected_v5(first, secs=1_800_000_000) + expected_v5(second, secs=1_800_000_060)


def test_two_write_threads_commit_each_window_once(tmp_path: Path) -> None:
    now = [1_800_000_000_000]
    rng = random.Random(12)
    first, second = random_v5_flows(rng, 300), random_v5_flows(rng, 120)
    store = tmp_path / "store"
    c = Collector(
        Store(store),
        ("127.0.0.1", 0),
        rotate_ms=60_000,
        decoder=FlowDecoder(),
        clock_ms=lambda: now[0],
        writers=2,
        write_rows=60,
    )
    d1, d2 = v5_datagrams(first, secs=1_800_000_000), v5_datagrams(second, seq0=300, secs=1_800_000_060)
    addr = c.start()
    try:  # each half decoded on its own, so each goes to the next write thread
        send_all(d1[:5], addr)
        wait_for(lambda: c.flows_decoded == 150, what="the first half")
        send_all(d1[5:], addr)
        wait_for(lambda: c.flows_decoded == 300, what="the first window's flows")
        now[0] += 60_000
        wait_for(lambda: c.windows_committed == 1, what="the first rotation")
        send_all(d2[:2], addr)
        wait_for(lambda: c.flows_decoded == 360, what="the second window's first half")
        send_all(d2[2:], addr)
        wait_for(lambda: c.flows_decoded == 420, what="the second window's flows")
    finally:
        c.stop()
    lines = read_stats_lines(store)
    assert [(x["flows_stored"], len(x["keys"]), x["final"]) for x in lines] == [(300, 2, False), (120, 2, True)]
    assert len(Store(store).files()) == 4 and c.windows_committed == 2
    assert stored_v5_flows(store) == expected_v5(first, secs=1_800_000_000) + expected_v5(second, secs=1_800_000_060)
    assert read_stats(store)["flows_stored"] == 420


@RECEIVERS
def test_ipv6_listener_names_the_exporter(tmp_path: Path, process: bool, use_recvmmsg: bool, call: str) -> None:
    rng = random.Random(8)
    flows = random_v5_flows(rng, 45)
    secs = int(time.time())
    store = tmp_path / "store"
    with Collector(
        Store(store), ("::1", 0), decoder=FlowDecoder(), use_recvmmsg=use_recvmmsg, receive_process=process
    ) as c:
        assert c.address is not None and c.address[0] == "::1"
        send_all(v5_datagrams(flows, secs=secs), c.address, socket.AF_INET6)
    assert stored_v5_flows(store) == expected_v5(flows, secs=secs)
    assert set(to_output(Store(store).query()).column("exporter").to_pylist()) == {"::1"}
    assert read_stats(store)["exporters"]["::1"]["flows"] == 45


def test_dual_stack_listener_names_ipv4_exporters_plainly(tmp_path: Path) -> None:
    """On [::] an IPv4 exporter arrives as ::ffff:127.0.0.1; it is stored as 127.0.0.1."""
    rng = random.Random(11)
    flows = random_v5_flows(rng, 30)
    store = tmp_path / "store"
    with Collector(Store(store), ("::", 0), decoder=FlowDecoder()) as c:
        assert c.address is not None
        send_all(v5_datagrams(flows), ("127.0.0.1", c.address[1]))
    assert set(to_output(Store(store).query()).column("exporter").to_pylist()) == {"127.0.0.1"}
    assert list(read_stats(store)["exporters"]) == ["127.0.0.1"]


def test_junk_never_stops_it(tmp_path: Path) -> None:
    rng = random.Random(9)
    flows = random_v5_flows(rng, 150)
    secs = int(time.time())
    good = v5_datagrams(flows, secs=secs)
    junk = []
    for _ in range(120):
        head = rng.choice((b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"))
        junk.append(head + rng.randbytes(rng.randrange(0, 1500)))
    stream = junk[:60] + good + junk[60:]
    store = tmp_path / "store"
    c = Collector(Store(store), ("127.0.0.1", 0), decoder=FlowDecoder())
    addr = c.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))  # junk from its own exporter address, good flows from another socket
            for d in stream[:60]:
                s.sendto(d, addr)
            send_all(good, addr)
            for d in stream[60 + len(good) :]:
                s.sendto(d, addr)
        wait_for(lambda: c.datagrams_received == len(stream), what="every datagram")
        assert c.alive()
    finally:
        c.stop()
    got = stored_v5_flows(store)
    assert not expected_v5(flows, secs=secs) - got  # every good flow is there
    stats = read_stats(store)
    assert stats["datagrams_received"] == len(stream)
    assert stats["totals"]["malformed"] + stats["totals"]["unsupported"] > 30


@pytest.mark.parametrize("use_recvmmsg", [True, False], ids=["recvmmsg", "recvfrom"])
def test_reader_names_each_datagrams_exporter(use_recvmmsg: bool) -> None:
    """Datagrams from three exporter addresses, interleaved and all waiting before the first read (so
    one recvmmsg call returns a mix): each comes back whole, in order, named by the address and
    source port it came from."""
    rng = random.Random(11)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        senders = []
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            senders.append((s, host))
        sent = []
        try:
            # runs of one exporter (the single-exporter path) and single datagrams (the mixed one)
            order = [0] * 70 + [1, 2, 0, 2, 1] * 12 + [2] * 5
            for k in order:
                data = rng.randbytes(rng.choice((1, 24, 1464, 9000, 65_000)))
                senders[k][0].sendto(data, rx.getsockname())
                sent.append((data, senders[k][1], senders[k][0].getsockname()[1]))
        finally:
            for s, _ in senders:
                s.close()
        read = _reader(rx, use_recvmmsg)
        assert isinstance(read, _MmsgReader) is use_recvmmsg
        got: list[tuple[bytes, str, int]] = []

        def read_all() -> bool:
            while True:
                try:
                    datas, hosts, ports = read()
                except BlockingIOError:
                    return len(got) >= len(sent)
                names = [hosts] * len(datas) if isinstance(hosts, str) else hosts
                nums = [ports] * len(datas) if isinstance(ports, int) else ports
                got.extend(zip(datas, names, nums, strict=True))

        wait_for(read_all, what="every datagram")
    assert got == sent


# ---- the command --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_sigterm_loses_nothing(tmp_path: Path, signum: int) -> None:
    """Flows sent just before SIGTERM (or Ctrl-C) are decoded and committed; exit status 0."""
    rng = random.Random(10)
    flows = random_v5_flows(rng, 3000)
    secs = int(time.time())
    dgrams = v5_datagrams(flows, secs=secs)
    store, log = tmp_path / "store", tmp_path / "collect.log"
    proc, port = start_cli_collector(store, log)
    try:
        send_all(dgrams, ("127.0.0.1", port))
    finally:
        rc = stop_process(proc, signum)  # straight after the last sendto: most datagrams are still in the socket
    assert rc == 0, log.read_text()
    assert stored_v5_flows(store) == expected_v5(flows, secs=secs)
    stats = read_stats(store)
    assert stats["final"] and stats["flows_stored"] == 3000 and stats["exporters"]["127.0.0.1"]["malformed"] == 0
    text = log.read_text()
    assert "stopped: 3,000 flows stored" in text and "receive buffer" in text


def test_cli_rejects_bad_listen(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-c",
        "from flowpivot.cli import main; main()",
        "collect",
        "--store",
        str(tmp_path),
        "--listen",
        "127.0.0.1:http",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 2 and "not a listen address" in res.stderr
