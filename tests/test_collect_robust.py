"""The collector under bad input and failures (issue 12, A2/A3): a spoofed flow time, a flow that ends
before it starts, a window the store cannot write, a decoder that raises. Real sockets, the real
decoder and store; what is stored is compared with what scapy's NetFlow v5 encoder was given."""

from __future__ import annotations

import random
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from test_collect import (
    expected_v5,
    random_v5_flows,
    read_stats,
    read_stats_lines,
    send_all,
    start_cli_collector,
    stop_process,
    stored_v5_flows,
    v5_datagrams,
    wait_for,
)

from flowpivot.collect import Collector, CollectorConfig
from flowpivot.decode import FlowDecoder
from flowpivot.store import Store
from flowpivot.timerange import TimeRange

SPOOF_START = 1 << 62  # ms since 1970: no calendar holds it


def ipfix_datagram(start_ms: int, domain: int = 1, export_s: int | None = None) -> bytes:
    """A 56-byte IPFIX message (RFC 7011 section 3): a template set (id 256: sourceIPv4Address,
    destinationIPv4Address, flowStartMilliseconds) and one data record of it."""
    fields = struct.pack(">HHHHHH", 8, 4, 12, 4, 152, 8)  # (element id, length) x 3
    tset = struct.pack(">HHHH", 2, 8 + len(fields), 256, 3) + fields  # set id 2: templates
    record = struct.pack(">IIQ", 0xC0A80001, 0xC0A80002, start_ms)
    dset = struct.pack(">HH", 256, 4 + len(record)) + record
    body = tset + dset
    export_s = int(time.time()) if export_s is None else export_s
    out = struct.pack(">HHIII", 10, 16 + len(body), export_s, 0, domain) + body
    assert len(out) == 56
    return out


def udp_payloads(pcap: Path) -> list[bytes]:
    """The UDP payloads of a classic pcap of Ethernet or Linux cooked frames carrying IPv4 (what
    tshark shows as udp.payload; read here with struct to keep the test fast)."""
    raw = pcap.read_bytes()
    magic, linktype = struct.unpack_from("<I", raw)[0], struct.unpack_from("<I", raw, 20)[0]
    assert magic == 0xA1B2C3D4 and linktype in (1, 113), (hex(magic), linktype)
    link = 14 if linktype == 1 else 16
    out, off = [], 24
    while off + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, off + 8)[0]
        frame = raw[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = frame[link:]
        if ip[0] >> 4 == 4 and ip[9] == 17:
            udp = ip[(ip[0] & 15) * 4 :]
            out.append(udp[8 : struct.unpack_from(">H", udp, 4)[0]])
    return out


def send_from(datagrams: list[bytes], addr: tuple[str, int], host: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        for d in datagrams:
            s.sendto(d, addr)


def test_cli_spoofed_flow_time_is_left_out_and_the_rest_stored(tmp_path: Path) -> None:
    """The issue's case: one spoofed IPFIX datagram (start 2^62) among normal traffic to a live
    collector. Every normal flow is stored; the spoofed record is counted and reported with its
    exporter and reason, in stats.json and in the window's stats.jsonl line; exit status 0."""
    rng = random.Random(21)
    secs = int(time.time())
    flows = random_v5_flows(rng, 1500)
    good = v5_datagrams(flows, secs=secs)
    store, log = tmp_path / "store", tmp_path / "collect.log"
    proc, port = start_cli_collector(store, log)
    try:
        send_all(good[:20], ("127.0.0.1", port))
        send_from([ipfix_datagram(SPOOF_START)], ("127.0.0.1", port), "127.0.0.2")
        send_all(good[20:], ("127.0.0.1", port))
    finally:
        rc = stop_process(proc)
    assert rc == 0, log.read_text()
    assert stored_v5_flows(store) == expected_v5(flows, secs=secs)
    stats = read_stats(store)
    assert stats["flows_stored"] == 1500 and stats["out_of_time_range"] == 1 and stats["problems"] == 1
    assert stats["loss"]["out_of_time_range"] == 1 and stats["write_failures"] == 0
    assert stats["exporters"]["127.0.0.2"]["out_of_time_range"] == 1
    assert stats["exporters"]["127.0.0.1"]["out_of_time_range"] == 0
    (p,) = stats["recent_problems"]
    assert (
        p["source"] == "127.0.0.2" and "outside the plausible range" in p["reason"] and str(SPOOF_START) in p["reason"]
    )
    (line,) = read_stats_lines(store)
    assert line["problems"] == 1 and line["recent_problems"] == [p] and line["loss"]["out_of_time_range"] == 1
    assert line["exporters"]["127.0.0.2"]["out_of_time_range"] == 1


def test_time_range_is_the_arrival_plus_a_configurable_slack(tmp_path: Path) -> None:
    """Bounds: 1970 .. arrival + slack. A record 1 h ahead of the clock is stored under the default
    day of slack and left out under 30 min of slack; one 2 h before the clock is stored."""
    now = int(time.time() * 1000)
    times = [now + 3_600_000, now - 7_200_000]
    for slack, expect_stored in ((86_400_000, 2), (1_800_000, 1)):
        store = tmp_path / f"s{slack}"
        cfg = CollectorConfig(listen=(("127.0.0.1", 0),), time_range=TimeRange(slack_ms=slack))
        with Collector(Store(store), config=cfg, decoder=FlowDecoder()) as c:
            assert c.address is not None
            send_all([ipfix_datagram(t) for t in times], c.address)
            wait_for(lambda: c.datagrams_received == 2, what="both datagrams")  # noqa: B023
        stats = read_stats(store)
        assert (stats["flows_stored"], stats["out_of_time_range"]) == (expect_stored, 2 - expect_stored)
        starts = sorted(int(x.timestamp() * 1000) for x in Store(store).query().column("start").to_pylist())
        assert starts == sorted(times)[:expect_stored]


def test_a_frozen_clock_is_the_arrival_time(tmp_path: Path) -> None:
    """The collector's clock stamps the arrivals and bounds the time check: with it frozen in 2027,
    flows of 2027 are stored and flows of now (more than a day before it) too, one of 2027 + 2 days is not."""
    frozen = 1_800_000_000_000
    now = int(time.time() * 1000)
    times = [frozen - 60_000, now, frozen + 2 * 86_400_000]
    store = tmp_path / "s"
    with Collector(Store(store), ("127.0.0.1", 0), decoder=FlowDecoder(), clock_ms=lambda: frozen) as c:
        assert c.address is not None
        send_all([ipfix_datagram(t, export_s=frozen // 1000) for t in times], c.address)
        wait_for(lambda: c.datagrams_received == 3, what="the datagrams")
    starts = sorted(int(x.timestamp() * 1000) for x in Store(store).query().column("start").to_pylist())
    assert starts == sorted(times[:2]) and read_stats(store)["out_of_time_range"] == 1


def test_end_before_start_is_repaired_and_counted(tmp_path: Path) -> None:
    """v5 records whose last-packet uptime is before the first: stored with end := start, counted."""
    rng = random.Random(22)
    secs = int(time.time())
    flows = random_v5_flows(rng, 90)
    swapped = set(rng.sample(range(90), 7))
    for i in swapped:
        f = flows[i]
        f["first"], f["last"] = f["first"] + 5_000, f["first"]  # ends 5 s before it starts
    with Collector(Store(tmp_path / "s"), ("127.0.0.1", 0), decoder=FlowDecoder()) as c:
        assert c.address is not None
        send_all(v5_datagrams(flows, secs=secs), c.address)
    fixed = [dict(f, last=f["first"]) if i in swapped else f for i, f in enumerate(flows)]
    assert stored_v5_flows(tmp_path / "s") == expected_v5(fixed, secs=secs)
    stats = read_stats(tmp_path / "s")
    assert stats["end_before_start_repaired"] == 7 and stats["out_of_time_range"] == 0
    assert stats["exporters"]["127.0.0.1"]["end_before_start_repaired"] == 7 and stats["problems"] == 0


def test_a_window_that_cannot_be_written_never_stops_later_windows(tmp_path: Path) -> None:
    """With the time check opened wide (latest 2^63 ms), the spoofed record reaches the store, whose
    commit of that window fails (no day partition holds it). That window's flows are counted as not
    stored, nothing of it is left on disk, and the next window is stored in full."""
    now = [1_800_000_000_000]
    rng = random.Random(23)
    first, second = random_v5_flows(rng, 120), random_v5_flows(rng, 90)
    store = tmp_path / "store"
    cfg = CollectorConfig(rotate_ms=60_000, time_range=TimeRange(latest_ms=(1 << 63) - 1))
    c = Collector(Store(store), ("127.0.0.1", 0), config=cfg, decoder=FlowDecoder(), clock_ms=lambda: now[0])
    addr = c.start()
    try:
        send_all(v5_datagrams(first, secs=1_800_000_000), addr)
        send_from([ipfix_datagram(SPOOF_START, export_s=1_800_000_000)], addr, "127.0.0.2")
        wait_for(lambda: c.flows_decoded == 121, what="the first window's flows")
        now[0] += 60_000
        wait_for(lambda: read_stats_lines(store), what="the first window's commit")
        assert c.alive()
        send_all(v5_datagrams(second, seq0=120, secs=1_800_000_060), addr)
        wait_for(lambda: c.flows_decoded == 211, what="the second window's flows")
    finally:
        c.stop()  # no error: a failed window is counted, not fatal
    assert stored_v5_flows(store) == expected_v5(second, secs=1_800_000_060)
    assert not list(store.rglob("*.partial")) and sum(pq.read_metadata(f).num_rows for f in Store(store).files()) == 90
    stats = read_stats(store)
    assert (stats["write_failures"], stats["flows_write_failed"], stats["flows_stored"]) == (1, 121, 90)
    assert stats["loss"]["flows_write_failed"] == 121
    assert any("writing the window failed, 121 flows not stored" in p["reason"] for p in stats["recent_problems"])
    lines = read_stats_lines(store)
    assert [(x["flows_stored"], x["problems"], x["loss"]["flows_write_failed"]) for x in lines] == [
        (0, 1, 121),
        (90, 0, 0),
    ]


class FailingDecoder(FlowDecoder):
    """The real decoder, raising on any list holding a datagram that starts with b"BOOM" (fault injection)."""

    def decode_many(self, datagrams, where=None):  # type: ignore[no-untyped-def]
        if any(bytes(d[0][:4]) == b"BOOM" for d in datagrams):
            raise RuntimeError("injected decoder fault")
        return super().decode_many(datagrams, where)


def test_a_decoder_that_raises_loses_its_list_only(tmp_path: Path) -> None:
    rng = random.Random(24)
    secs = int(time.time())
    before, after = random_v5_flows(rng, 60), random_v5_flows(rng, 60)
    store = tmp_path / "store"
    with Collector(Store(store), ("127.0.0.1", 0), decoder=FailingDecoder()) as c:
        assert c.address is not None
        send_all(v5_datagrams(before, secs=secs), c.address)
        wait_for(lambda: c.flows_decoded == 60, what="the first flows")
        send_all([b"BOOM" + bytes(40)], c.address)
        wait_for(lambda: c.counts["decode_failures"] == 1, what="the fault")
        send_all(v5_datagrams(after, seq0=60, secs=secs), c.address)
        wait_for(lambda: c.flows_decoded == 120, what="the flows after the fault")
        assert c.alive()
    assert stored_v5_flows(store) == expected_v5(before + after, secs=secs)
    stats = read_stats(store)
    assert (stats["decode_failures"], stats["datagrams_decode_failed"], stats["problems"]) == (1, 1, 1)
    assert "injected decoder fault" in stats["recent_problems"][0]["reason"]


class PortRecordingDecoder(FlowDecoder):
    """The real decoder, noting the tuples it is given (a decoder that takes source ports)."""

    ACCEPTS_SOURCE_PORT = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, ...]] = []

    def decode_many(self, datagrams, where=None):  # type: ignore[no-untyped-def]
        self.seen.extend(d[1:] for d in datagrams)
        return super().decode_many([d[:3] for d in datagrams], where)


def test_two_sockets_and_the_source_port(tmp_path: Path) -> None:
    """Two listen sockets feed one decoder; a decoder that says it takes source ports gets each
    datagram's (exporter, received_ms, port) as the kernel reported them."""
    rng = random.Random(25)
    secs = int(time.time())
    a, b = random_v5_flows(rng, 60), random_v5_flows(rng, 30)
    store = tmp_path / "store"
    dec = PortRecordingDecoder()
    with Collector(Store(store), [("127.0.0.1", 0), ("127.0.0.1", 0)], decoder=dec) as c:
        (_, p1), (_, p2) = c.addresses
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s1,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2,
        ):
            s1.bind(("127.0.0.1", 0))
            s2.bind(("127.0.0.3", 0))
            for d in v5_datagrams(a, secs=secs):
                s1.sendto(d, ("127.0.0.1", p1))
            for d in v5_datagrams(b, secs=secs):
                s2.sendto(d, ("127.0.0.1", p2))
            ports = {"127.0.0.1": s1.getsockname()[1], "127.0.0.3": s2.getsockname()[1]}
        wait_for(lambda: c.flows_decoded == 90, what="both sockets' flows")
    assert stored_v5_flows(store) == expected_v5(a + b, secs=secs)
    assert len(dec.seen) == 3 and all(ports[host] == port for host, _ms, port in dec.seen)
    stats = read_stats(store)
    assert [s["listen"] for s in stats["sockets"]] == [f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"]
    assert stats["listen"] == f"127.0.0.1:{p1}, 127.0.0.1:{p2}"
    assert {k: v["flows"] for k, v in stats["exporters"].items()} == {"127.0.0.1": 60, "127.0.0.3": 30}


def test_without_the_flag_the_decoder_gets_three_tuples(tmp_path: Path) -> None:
    seen: list[int] = []

    class Plain(FlowDecoder):
        ACCEPTS_SOURCE_PORT = False

        def decode_many(self, datagrams, where=None):  # type: ignore[no-untyped-def]
            seen.extend(len(d) for d in datagrams)
            return super().decode_many(datagrams, where)

    with Collector(Store(tmp_path / "s"), ("127.0.0.1", 0), decoder=Plain()) as c:
        assert c.address is not None
        send_all(v5_datagrams(random_v5_flows(random.Random(3), 30)), c.address)
        wait_for(lambda: c.flows_decoded == 30, what="the flows")
    assert seen == [3]


def test_cli_listens_on_every_listen_option(tmp_path: Path) -> None:
    rng = random.Random(26)
    secs = int(time.time())
    a, b = random_v5_flows(rng, 30), random_v5_flows(rng, 60)
    store, log = tmp_path / "store", tmp_path / "collect.log"
    proc, port = start_cli_collector(store, log, "--listen", "127.0.0.1:0")
    try:
        ports = wait_for(
            lambda: [int(x.split()[2].rsplit(":", 1)[1]) for x in log.read_text().splitlines() if x.startswith("listening on ")][1:] or None,
            what="the second socket",
        )  # fmt: skip
        send_all(v5_datagrams(a, secs=secs), ("127.0.0.1", port))
        send_from(v5_datagrams(b, secs=secs), ("127.0.0.1", ports[0]), "127.0.0.4")
    finally:
        rc = stop_process(proc)
    assert rc == 0, log.read_text()
    assert len(ports) == 1 and ports[0] != port
    assert stored_v5_flows(store) == expected_v5(a + b, secs=secs)
    assert len(read_stats(store)["sockets"]) == 2


def test_config_and_keywords(tmp_path: Path) -> None:
    """One config object; the old keyword arguments still work and win over it."""
    cfg = CollectorConfig(rotate_ms=60_000, writers=2)
    c = Collector(Store(tmp_path / "s"), ("127.0.0.1", 9), config=cfg, rotate_ms=30_000)
    assert (c.config.rotate_ms, c.config.writers, c.config.listen) == (30_000, 2, (("127.0.0.1", 9),))
    assert cfg.rotate_ms == 60_000
    for bad in ({"rotate_ms": 0}, {"writers": 0}):
        try:
            CollectorConfig(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
    try:
        Collector(Store(tmp_path / "s"), no_such_setting=1)
    except TypeError:
        pass
    else:
        raise AssertionError("accepted an unknown setting")


def test_cli_future_slack_and_not_before(tmp_path: Path) -> None:
    """--future-slack 1h: a record 2 h ahead of the clock is left out; --not-before: so is one before it."""
    now = int(time.time() * 1000)
    times = {"ahead": now + 7_200_000, "before": now - 10 * 86_400_000, "ok": now - 3_600_000}
    store, log = tmp_path / "store", tmp_path / "collect.log"
    not_before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - 86_400_000) / 1000))
    proc, port = start_cli_collector(store, log, "--future-slack", "1h", "--not-before", not_before)
    try:
        send_all([ipfix_datagram(t) for t in times.values()], ("127.0.0.1", port))
    finally:
        rc = stop_process(proc)
    assert rc == 0, log.read_text()
    starts = [int(x.timestamp() * 1000) for x in Store(store).query().column("start").to_pylist()]
    assert starts == [times["ok"]]
    stats = read_stats(store)
    assert stats["out_of_time_range"] == 2
    reasons = sorted(p["reason"] for p in stats["recent_problems"])
    assert "plus 1 h" in reasons[0] + reasons[1] and all("outside the plausible range" in r for r in reasons)


def test_sflow_on_a_second_socket(tmp_path: Path, shared_data: Path) -> None:
    """Real sFlow v5 (pmacct's sfprobe, shared realworld/exporters/pm-sflow.pcap) sent to a second
    listen socket, NetFlow v5 to the first: both arrive at the one decoder and are counted per
    exporter. Whether the sFlow samples become flows is the decoder's: without sFlow support every
    datagram is counted unsupported; with it the samples are stored and nothing is malformed."""
    sflow = udp_payloads(shared_data / "realworld/exporters/pm-sflow.pcap")
    assert sflow and all(d[:4] == b"\x00\x00\x00\x05" for d in sflow)  # sFlow version 5
    rng = random.Random(27)
    secs = int(time.time())
    flows = random_v5_flows(rng, 60)
    store = tmp_path / "store"
    with Collector(Store(store), [("127.0.0.1", 0), ("127.0.0.1", 0)], decoder=FlowDecoder()) as c:
        (_, p1), (_, p2) = c.addresses
        send_all(v5_datagrams(flows, secs=secs), ("127.0.0.1", p1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.5", 0))
            for d in sflow:
                s.sendto(d, ("127.0.0.1", p2))
        wait_for(lambda: c.datagrams_received == 2 + len(sflow), what="every datagram")
    stats = read_stats(store)
    e = stats["exporters"]["127.0.0.5"]
    assert e["datagrams"] == len(sflow)
    if e["unsupported"]:
        assert e["unsupported"] == len(sflow) and e["flows"] == 0
    else:
        assert e["flows"] > 0 and e["malformed"] == 0
    got = stored_v5_flows(store)
    assert not expected_v5(flows, secs=secs) - got  # the NetFlow flows are all there
    assert sum(got.values()) == 60 + e["flows"] - e["out_of_time_range"]


def test_counters_that_cannot_be_written_never_stop_storing(tmp_path: Path) -> None:
    """stats.json cannot be replaced (a directory holds its name): each window is still stored, its
    stats.jsonl line written, and the failure counted as a problem; stop() does not fail."""
    now = [1_800_000_000_000]
    rng = random.Random(28)
    first, second = random_v5_flows(rng, 60), random_v5_flows(rng, 30)
    store = tmp_path / "store"
    (store / "collector" / "stats.json").mkdir(parents=True)
    (store / "collector" / "stats.json" / "keep").write_text("x")
    c = Collector(Store(store), ("127.0.0.1", 0), rotate_ms=60_000, decoder=FlowDecoder(), clock_ms=lambda: now[0])
    addr = c.start()
    try:
        send_all(v5_datagrams(first, secs=1_800_000_000), addr)
        wait_for(lambda: c.flows_decoded == 60, what="the first window's flows")
        now[0] += 60_000
        wait_for(lambda: c.problems_total == 1, what="the failed counters")
        send_all(v5_datagrams(second, seq0=60, secs=1_800_000_060), addr)
        wait_for(lambda: c.flows_decoded == 90, what="the second window's flows")
        assert c.alive()
    finally:
        c.stop()
    expected = expected_v5(first, secs=1_800_000_000) + expected_v5(second, secs=1_800_000_060)
    assert stored_v5_flows(store) == expected and c.flows_stored == 90
    assert [x["flows_stored"] for x in read_stats_lines(store)] == [60, 30]
    assert c.problems_total == 2 and all("writing stats.json failed" in p.reason for p in c.recent_problems)
    assert not list((store / "collector").glob(".tmp-stats-*"))
