"""What real exporters mean, decoded from their own captures (issue 12: C, A1 for captures, D's v7).

Each test reads a real capture of the shared set with flowpivot and compares with an independent
decoder of the same bytes: tshark (its JSON dissection), nfdump (the capture replayed over
loopback to a real nfcapd) or pmacct (nfacctd's recorded output). Where a test edits a real
capture (a time made impossible, an address made IPv4-mapped, two exporters put on one address),
tshark first confirms that the edit says what the test means.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import need_tool, shared
from test_decode_tshark import _abs_ms, _int, _pairs

from flowpivot.decode import FlowDecoder
from flowpivot.ingest import ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap
from flowpivot.schema import to_output
from flowpivot.store import Store

pytestmark = pytest.mark.tools

LS = "realworld/logstash-codec-netflow/"
EX = "realworld/exporters/"
PMACCT = "realworld/pmacct/104-IPFIXv10-IPv6-CISCO-sampling_option/"


# ----- helpers -------------------------------------------------------------------------------------


def decode(paths: list[Path], dec: FlowDecoder | None = None) -> tuple[list[dict], list[ReadReport], FlowDecoder]:
    """flowpivot's rows (times as ms) of captures read in order with one decoder, and the read reports."""
    dec = dec or FlowDecoder()
    rows: list[dict] = []
    reports = []
    for p in paths:
        rep = ReadReport(str(p))
        batches = list(read_pcap(p, rep, dec))
        reports.append(rep)
        if batches:
            rows += to_output(pa.Table.from_batches(batches)).to_pylist()
    for r in rows:
        for k in ("start", "end"):
            r[k] = round(r[k].timestamp() * 1000)
    return rows, reports, dec


def tshark_frames(pcap: Path, port: int) -> list[dict]:
    """tshark's JSON dissection (cflow layer) of each frame, repeated keys kept as lists."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(pcap), "-d", f"udp.port=={port},cflow", "-T", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [f["_source"]["layers"] for f in json.loads(out, object_pairs_hook=_pairs)]


def tshark_records(pcap: Path, port: int) -> list[tuple[dict, dict, dict]]:
    """(frame layers, cflow header, record) of every data record tshark dissects."""
    found = []
    for layers in tshark_frames(pcap, port):
        cf = layers.get("cflow")
        if not isinstance(cf, dict):
            continue
        for key, s in cf.items():
            if not (key.startswith("Set") or key.startswith("FlowSet") or key.startswith("pdu")):
                continue
            recs = [s] if key.startswith("pdu") else [v for k, v in s.items() if k.startswith("Flow ")]
            found += [(layers, cf, r) for r in recs if isinstance(r, dict)]
    return found


def _uptime_ms(td: dict, which: str) -> int:
    """A sysUpTime-relative time as tshark shows it: seconds, or 1970 + the value when it is 0."""
    rel = td.get(f"cflow.time{which}")
    if rel is not None:
        return int(Decimal(rel) * 1000)
    return _abs_ms(td[f"cflow.abstime{which}"])


def _udp_payloads(pcap: Path) -> list[bytes]:
    from scapy.all import UDP, rdpcap  # type: ignore[import-untyped]

    return [bytes(p[UDP].payload) for p in rdpcap(str(pcap)) if UDP in p]


def nfdump_flows(pcap: Path, tmp: Path) -> tuple[list[dict], str]:
    """The capture replayed over loopback to a real nfcapd; nfdump's flows and nfcapd's log."""
    nfcapd = need_tool("nfcapd")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flows, log = tmp / "flows", tmp / "nfcapd.log"
    flows.mkdir()
    env = {**os.environ, "TZ": "UTC"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [nfcapd, "-w", str(flows), "-b", "127.0.0.1", "-p", str(port), "-t", "3600"],
            stdout=fh, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while b"Startup" not in log.read_bytes():
            assert time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in _udp_payloads(pcap):
                s.sendto(payload, ("127.0.0.1", port))
                time.sleep(0.002)
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    [path] = [p for p in flows.iterdir() if p.name.startswith("nfcapd.") and ".current." not in p.name]
    fmt = "fmt:%ts|%te|%sa|%da|%sp|%dp|%pr|%pkt|%byt"
    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-q", "-N", "-6", "-o", fmt], capture_output=True, env=env, check=True
    )
    out = []
    for line in res.stdout.decode().splitlines():
        ts, te, sa, da, sp, dp, pr, pkt, byt = (f.strip() for f in line.split("|"))
        proto = int(pr)
        if proto in (1, 58):  # nfdump prints an ICMP destination port as type.code
            t, c = (int(x) for x in dp.split("."))
            dport = t * 256 + c
        else:
            dport = int(dp)
        out.append({"start": ts, "end": te, "src_addr": sa, "dst_addr": da, "src_port": int(sp),
                    "dst_port": dport, "protocol": proto, "packets": int(pkt), "bytes": int(byt)})  # fmt: skip
    return out, log.read_text()


def _nfdump_key(r: dict) -> tuple:
    def fmt(ms: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"

    start, end = (r[k] if isinstance(r[k], str) else fmt(r[k]) for k in ("start", "end"))
    return (start, end, r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"], r["packets"],
            r["bytes"])  # fmt: skip


# ----- C: times ------------------------------------------------------------------------------------


def test_ipfix_system_init_time_from_an_options_record_of_the_same_message() -> None:
    """11-ipfix.pcap: one message holds the templates, an options record with
    systemInitTimeMilliseconds, then six flows timed by flowStart/EndSysUpTime. Each flow's
    times are the init time plus its uptimes, not the export second."""
    pcap = shared(LS + "11-ipfix.pcap")
    init = None
    expected = []
    for _layers, _cf, rec in tshark_records(pcap, 2055):
        if "cflow.sys_init_time" in rec:
            init = _abs_ms(rec["cflow.sys_init_time"])
        elif "cflow.srcaddr" in rec:
            assert init is not None, "the options record comes first in the message"
            td = rec["cflow.timedelta_tree"]
            expected.append((rec["cflow.srcaddr"], _int(rec["cflow.srcport"]), init + _uptime_ms(td, "start"),
                             init + _uptime_ms(td, "end")))  # fmt: skip
    assert len(expected) == 6
    rows, reports, _ = decode([pcap])
    assert reports[0].problems == []
    assert sorted((r["src_addr"], r["src_port"], r["start"], r["end"]) for r in rows) == sorted(expected)


def test_start_only_records_end_when_they_start() -> None:
    """24-...nokia_bras...pcap: the Nokia BRAS record carries flowStartMilliseconds and no end."""
    pcap = shared(LS + "24-ipfix_test_nokia_bras_data256.pcap")
    expected = [
        (rec["cflow.srcaddr"], _abs_ms(rec.get("cflow.timedelta_tree", rec)["cflow.abstimestart"]))
        for _l, _c, rec in tshark_records(pcap, 2055)
        if "cflow.srcaddr" in rec
    ]
    assert len(expected) == 1
    rows, reports, _ = decode([pcap])
    assert reports[0].problems == []
    assert [(r["src_addr"], r["start"], r["end"]) for r in rows] == [(a, t, t) for a, t in expected]


def test_psamp_packet_reports_are_timed_by_their_observation_time() -> None:
    """sf-psamp-a.pcap: softflowd's PSAMP reports (one sampled frame each) carry
    observationTimeMicroseconds; each report's start and end is that time, as tshark reads it."""
    pcap = shared(EX + "sf-psamp-a.pcap")
    times = [
        _abs_ms(rec["cflow.observation_time_microseconds"])
        for _l, _c, rec in tshark_records(pcap, 41160)
        if "cflow.observation_time_microseconds" in rec
    ]
    rows, reports, dec = decode([pcap])
    assert reports[0].problems == []
    [st] = dec.stats.values()
    assert len(rows) + st.other_records == len(times) > 3000  # frames without an IP packet are no flow
    assert all(r["start"] == r["end"] for r in rows)
    assert not Counter(r["start"] for r in rows) - Counter(times)  # each flow's time is its report's


# ----- C: field values -----------------------------------------------------------------------------


def test_v9_template_with_a_variable_length_field_is_decoded() -> None:
    """20-...h3c_netstream_varstring...pcap: the H3C template ends with a VRF name of length
    65535 (variable, IPFIX's encoding). Logstash decodes 1 flow; tshark stops at the field after
    the forwarding status (it reads the router shortcut badly) but gives everything before it."""
    pcap = shared(LS + "20-netflow9_test_h3c_netstream_varstring_data3281.pcap")
    recs = [(cf, rec) for _l, cf, rec in tshark_records(pcap, 2055) if "cflow.srcaddr" in rec]
    assert len(recs) == 1
    cf, rec = recs[0]
    export_ms = int(cf["cflow.timestamp_tree"]["cflow.unix_secs"]) * 1000
    uptime = int(Decimal(cf["cflow.sysuptime"]) * 1000)
    td = rec["cflow.timedelta_tree"]
    rows, reports, dec = decode([pcap])
    assert reports[0].problems == [] and dec.stats["10.99.20.1"].malformed == 0
    [r] = rows
    got = {k: r[k] for k in ("src_addr", "dst_addr", "src_port", "dst_port", "protocol", "packets", "bytes", "in_if",
                             "start", "end")}  # fmt: skip
    assert got == {
        "src_addr": rec["cflow.srcaddr"], "dst_addr": rec["cflow.dstaddr"], "src_port": _int(rec["cflow.srcport"]),
        "dst_port": _int(rec["cflow.dstport"]), "protocol": _int(rec["cflow.protocol"]),
        "packets": _int(rec["cflow.packets"]), "bytes": _int(rec["cflow.octets"]), "in_if": _int(rec["cflow.inputint"]),
        "start": export_ms - (uptime - _uptime_ms(td, "start")), "end": export_ms - (uptime - _uptime_ms(td, "end")),
    }  # fmt: skip


def test_v5_icmp_type_in_fprobe_source_port_reads_as_nfdump_reads_it(tmp_path: Path) -> None:
    """fprobe-v5.pcap: fprobe puts an ICMP echo request's type in the source port. nfdump moves
    it to the destination port (type 8, code 0); flowpivot stores what nfdump stores, every flow."""
    pcap = shared(EX + "fprobe-v5.pcap")
    expected, log = nfdump_flows(pcap, tmp_path)
    assert "Flows: 297" in log and len(expected) == 297
    rows, reports, _ = decode([pcap])
    assert reports[0].problems == []
    assert Counter(map(_nfdump_key, rows)) == Counter(map(_nfdump_key, expected))
    icmp = [r for r in rows if r["protocol"] == 1]
    assert all((r["icmp_type"], r["icmp_code"]) == (r["dst_port"] >> 8, r["dst_port"] & 255) for r in icmp)
    assert {r["icmp_type"] for r in icmp} == {0, 8}  # echo replies and requests


def test_netflow_v7_reads_as_nfdump_reads_it(tmp_path: Path) -> None:
    """fprobe-v7.pcap: NetFlow v7 (52-byte records); nfdump reads 220 flows, so must flowpivot."""
    pcap = shared(EX + "fprobe-v7.pcap")
    expected, log = nfdump_flows(pcap, tmp_path)
    assert "Flows: 220" in log and len(expected) == 220
    rows, reports, dec = decode([pcap])
    assert reports[0].problems == []
    assert Counter(map(_nfdump_key, rows)) == Counter(map(_nfdump_key, expected))
    [st] = dec.stats.values()
    assert (st.unsupported, st.malformed, st.lost_seq) == (0, 0, 0)


def test_ipv4_mapped_ipv6_addresses_are_stored_as_ipv4(tmp_path: Path) -> None:
    """The IOS-XR IPFIX capture with one flow's IPv6 source rewritten to ::ffff:10.0.0.4 (tshark
    confirms): the flow is stored with source 10.0.0.4 and ``--ip 10.0.0.4`` finds it."""
    pcap = shared(PMACCT + "traffic-00.pcap")
    data = bytearray(pcap.read_bytes())
    srcs = [r["cflow.srcaddrv6"] for _l, _c, r in tshark_records(pcap, 9992) if "cflow.srcaddrv6" in r]
    victim = socket.inet_pton(socket.AF_INET6, srcs[0])
    at = data.index(victim)
    data[at : at + 16] = socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.4")
    patched = tmp_path / "mapped.pcap"
    patched.write_bytes(bytes(data))
    now = [r["cflow.srcaddrv6"] for _l, _c, r in tshark_records(patched, 9992) if "cflow.srcaddrv6" in r]
    assert now.count("::ffff:10.0.0.4") == 1 and len(now) == len(srcs)
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([patched], store)
    assert rep.bad == 0
    found = to_output(store.query(ip="10.0.0.4")).to_pylist()
    assert [r["src_addr"] for r in found] == ["10.0.0.4"]
    assert len(to_output(store.query()).to_pylist()) == len(srcs)


# ----- C: template scope ---------------------------------------------------------------------------


def test_two_exporting_processes_on_one_address_keep_their_templates_apart(tmp_path: Path) -> None:
    """softflowd's IPFIX (sf-v10b-a.pcap, 127.0.0.1, domain 0) defines template 1024; so does the
    exporter of 11-ipfix.pcap (domain 0, another layout). Put on one address, from two source
    ports, 11-ipfix's message lands between softflowd's templates and its data: every flow of
    both must still read as tshark reads each capture alone."""
    from scapy.all import IP, UDP, rdpcap, wrpcap  # type: ignore[import-untyped]

    sf, other = shared(EX + "sf-v10b-a.pcap"), shared(LS + "11-ipfix.pcap")
    sf_pkts, other_pkts = list(rdpcap(str(sf))), list(rdpcap(str(other)))
    assert sf_pkts[0][IP].src == "127.0.0.1" and other_pkts[0][UDP].sport != sf_pkts[0][UDP].sport
    for p in other_pkts:
        p[IP].src, p[IP].dst, p[UDP].dport = "127.0.0.1", "127.0.0.1", sf_pkts[0][UDP].dport
        del p[IP].chksum, p[UDP].chksum
    merged = tmp_path / "merged.pcap"
    wrpcap(str(merged), [sf_pkts[0], *other_pkts, *sf_pkts[1:]])

    def keys(pcap: Path, port: int) -> Counter:
        out: Counter = Counter()
        for _l, _c, r in tshark_records(pcap, port):
            src = r.get("cflow.srcaddr", r.get("cflow.srcaddrv6"))
            if src is None:
                continue
            pk, by = r.get("cflow.packets", r.get("cflow.packets64")), r.get("cflow.octets", r.get("cflow.octets64"))
            pks, bys = (sorted(map(_int, v if isinstance(v, list) else [v, 0])) for v in (pk, by))
            dst = r.get("cflow.dstaddr", r.get("cflow.dstaddrv6"))
            out[(*sorted([src, dst]), _int(r["cflow.protocol"]), *pks, *bys)] += 1  # either side first (biflows)
        return out

    expected = keys(sf, 41040) + keys(other, 2055)
    assert sum(expected.values()) == 715 + 6
    rows, reports, dec = decode([merged])
    assert reports[0].problems == [] and dec.stats["127.0.0.1"].malformed == 0
    got = Counter(
        (*sorted([r["src_addr"], r["dst_addr"]]), r["protocol"], *sorted([r["packets"], r["rev_packets"] or 0]),
         *sorted([r["bytes"], r["rev_bytes"] or 0]))
        for r in rows
    )  # fmt: skip
    assert got == expected


# ----- A1 ------------------------------------------------------------------------------------------


def test_an_impossible_time_is_a_counted_problem_with_its_packet_and_the_rest_is_stored(tmp_path: Path) -> None:
    """The Nokia capture with a second copy of its data packet whose flowStartMilliseconds is 2^62
    (tshark confirms): that record is one problem naming packet 3 and its record; the original
    record is stored; ingesting the file does not fail (it used to raise OverflowError)."""
    from scapy.all import Ether, rdpcap, wrpcap  # type: ignore[import-untyped]

    pcap = shared(LS + "24-ipfix_test_nokia_bras_data256.pcap")
    [(_l, _c, rec)] = [t for t in tshark_records(pcap, 2055) if "cflow.srcaddr" in t[2]]
    start = _abs_ms(rec.get("cflow.timedelta_tree", rec)["cflow.abstimestart"])
    pkts = list(rdpcap(str(pcap)))
    frame = bytes(pkts[1])
    at = frame.index(struct.pack(">Q", start))
    bad = Ether(frame[:at] + struct.pack(">Q", 1 << 62) + frame[at + 8 :])  # the UDP checksum is 0 (none)
    bad.time = pkts[1].time
    patched = tmp_path / "impossible.pcap"
    wrpcap(str(patched), [pkts[0], pkts[1], bad])
    raw = [t[2] for t in tshark_records(patched, 2055) if "cflow.srcaddr" in t[2]]
    assert len(raw) == 2  # tshark reads the edited record too (its own way), so the edit is where meant

    store = Store(tmp_path / "store")
    [rep] = ingest_paths([patched], store)
    assert rep.status == "ingested" and rep.bad == 1, rep.problems
    [p] = rep.problems
    assert p.where.startswith("packet 3 (file offset") and "record 1" in p.where
    assert "outside the plausible range" in p.reason
    rows = to_output(store.query()).to_pylist()
    assert [(r["src_addr"], round(r["start"].timestamp() * 1000)) for r in rows] == [(rec["cflow.srcaddr"], start)]


# ----- sampling ------------------------------------------------------------------------------------


def test_iosxr_random_sampling_per_flow_matches_pmacct(tmp_path: Path) -> None:
    """IOS-XR's random 1-out-of-256 sampling: flowpivot's counts times its rate, summed over
    pmacct's aggregation key (addresses, ports, protocol, interfaces), equal nfacctd's output."""
    oracle = [json.loads(x) for x in shared(PMACCT + "output-flow-00.json").read_text().splitlines() if x.strip()]
    proto = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "vrrp": 112}
    expected: Counter = Counter()
    for o in oracle:
        k = (
            o["ip_src"],
            o["ip_dst"],
            o["port_src"],
            o["port_dst"],
            proto[o["ip_proto"]],
            o["iface_in"],
            o["iface_out"],
        )
        expected[k + ("packets",)] += o["packets"]
        expected[k + ("bytes",)] += o["bytes"]
    rows, reports, _ = decode([shared(PMACCT + "traffic-00.pcap")])
    assert reports[0].problems == []
    got: Counter = Counter()
    for r in rows:
        assert r["sampling_rate"] == 256
        k = (r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["protocol"], r["in_if"], r["out_if"])
        got[k + ("packets",)] += r["packets"] * r["sampling_rate"]
        got[k + ("bytes",)] += r["bytes"] * r["sampling_rate"]
    assert got == expected


# ----- sequence numbers ----------------------------------------------------------------------------


def test_softflowd_ipfix_sequence_numbers_count_no_loss_where_none_happened() -> None:
    """softflowd numbers an IPFIX message with the records sent *including* its own (RFC 7011
    says: before it). nfcapd flags a sequence error at every message whose record count differs
    from the previous one's; no message is missing from the loopback capture (tshark's record
    count is the flows decoded). flowpivot learns the numbering and counts no loss; a message
    taken out is counted as its records lost."""
    pcap = shared(EX + "sf-v10b-a.pcap")
    n = sum(1 for _l, _c, r in tshark_records(pcap, 41040) if "cflow.srcaddr" in r or "cflow.srcaddrv6" in r)
    rows, _, dec = decode([pcap])
    assert len(rows) == n == 715
    assert dec.stats["127.0.0.1"].lost_seq == 0

    payloads = _udp_payloads(pcap)
    whole = FlowDecoder()
    counts = []
    for d in payloads:
        before = whole.stats["e"].flows if "e" in whole.stats else 0
        whole.decode(d, "e", 0)
        counts.append(whole.stats["e"].flows - before)
    assert whole.stats["e"].lost_seq == 0
    cut = FlowDecoder()
    for i, d in enumerate(payloads):
        if i != 10:
            cut.decode(d, "e", 0)
    assert cut.stats["e"].lost_seq == counts[10] > 0


# ----- sampling elements no capture here carries (RFC 5477 / RFC 7014), built by hand -------------


def _ipfix_with(selector_fields: list, selector_values: bytes) -> list[bytes]:
    """An options template (scope selectorId 302) announcing selector 7's sampling, its record,
    then a flow template naming selector 7 and one flow."""
    from test_decode_units import BASIC, basic_record, data_set, ipfix, options_template_set, template_set

    opts = options_template_set(300, [(302, 4)], selector_fields)
    flow_t = template_set(256, [*BASIC, (302, 4)])
    flow = data_set(256, [basic_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 3, 300) + struct.pack(">I", 7)])
    return [ipfix([opts, data_set(300, [struct.pack(">I", 7) + selector_values]), flow_t, flow])]


@pytest.mark.parametrize(
    "fields,values,rate",
    [
        # samplingProbability 0.01 (float64): 1 in 100
        ([(311, 8)], struct.pack(">d", 0.01), 100),
        # reduced-size float32 0.25: 1 in 4
        ([(311, 4)], struct.pack(">f", 0.25), 4),
        # selectorIdTotalPktsObserved 51200, Selected 200: 1 in 256 achieved
        ([(318, 8), (319, 8)], struct.pack(">QQ", 51200, 200), 256),
        # samplerRandomInterval 512 (RFC 7270's deprecated form, v9's FLOW_SAMPLER_RANDOM_INTERVAL)
        ([(50, 4)], struct.pack(">I", 512), 512),
        # systematic count-based: samplingPacketInterval 1, samplingPacketSpace 99
        ([(305, 4), (306, 4)], struct.pack(">II", 1, 99), 100),
        # random n-out-of-N: samplingSize 2, samplingPopulation 1000
        ([(309, 4), (310, 4)], struct.pack(">II", 2, 1000), 500),
    ],
    ids=["probability64", "probability32", "observed-selected", "random-interval", "packet-space", "n-of-N"],
)
def test_sampling_elements_announced_per_selector(fields: list, values: bytes, rate: int) -> None:
    dec = FlowDecoder()
    res = dec.decode_many([(d, "192.0.2.1", 0) for d in _ipfix_with(fields, values)])
    assert res.problems == []
    assert res.batch is not None and res.batch.column("sampling_rate").to_pylist() == [rate]


def test_source_port_scopes_templates_and_sampling_in_decode_many() -> None:
    """The collector's contract: (data, exporter, received_ms, source_port). Two processes on one
    address announce different rates for the same selector; each flow gets its own process's."""
    dec = FlowDecoder()
    a = _ipfix_with([(311, 8)], struct.pack(">d", 0.5))[0]
    b = _ipfix_with([(311, 8)], struct.pack(">d", 0.1))[0]
    res = dec.decode_many([(a, "192.0.2.1", 0, 4000), (b, "192.0.2.1", 0, 4001)])
    assert res.problems == [] and res.batch is not None
    assert sorted(res.batch.column("sampling_rate").to_pylist()) == [2, 10]
    assert set(res.batch.column("exporter").to_pylist()) == {"192.0.2.1"}


# ----- biflows -------------------------------------------------------------------------------------


def test_softflowd_biflows_are_turned_round_when_the_reverse_side_opened() -> None:
    """sf-v10b-a.pcap: softflowd -b puts the lower address first, whoever opened. Where tshark shows
    the reverse side's flags as SYN without ACK and the forward side's not (a scan answered by a
    RST, or unanswered), the record is stored turned round: src is the initiator, and the counts
    and flags follow their side. Other records (established: both sides sent SYN and ACK, nothing
    in the record says who opened) are stored as exported."""
    pcap = shared(EX + "sf-v10b-a.pcap")
    expected: Counter = Counter()
    turned = 0
    for _l, _c, r in tshark_records(pcap, 41040):
        if _int(r.get("cflow.protocol")) != 6:
            continue
        src, dst = r.get("cflow.srcaddr", r.get("cflow.srcaddrv6")), r.get("cflow.dstaddr", r.get("cflow.dstaddrv6"))
        f, rf = (_int(x) for x in r["cflow.tcpflags"])
        p, rp = (_int(x) for x in r["cflow.packets"])
        b, rb = (_int(x) for x in r["cflow.octets"])
        fwd = (src, _int(r["cflow.srcport"]), f, p, b)
        rev = (dst, _int(r["cflow.dstport"]), rf, rp, rb)
        if rf & 0x12 == 0x02 and f & 0x12 != 0x02:
            fwd, rev = rev, fwd
            turned += 1
        expected[fwd + rev] += 1
    assert turned > 100  # the capture holds softflowd's host scanning others
    rows, _, _ = decode([pcap])
    got = Counter(
        (r["src_addr"], r["src_port"], r["tcp_flags"], r["packets"], r["bytes"],
         r["dst_addr"], r["dst_port"], r["rev_tcp_flags"], r["rev_packets"], r["rev_bytes"])
        for r in rows if r["protocol"] == 6
    )  # fmt: skip
    assert got == expected


def test_an_impossible_time_in_seconds_does_not_wrap_into_a_plausible_one() -> None:
    """flowStartSeconds/EndSeconds (8 bytes) so large that, times 1000, they wrap a 64-bit integer
    to 2023-11-14: the record is rejected and reported, not stored at the wrapped date."""
    from test_decode_units import data_set, ip4, ipfix, template_set

    from flowpivot.timerange import TimeRange

    wrapped = 1_700_000_000_384  # 2^64 + this is a multiple of 1000
    huge = ((1 << 64) + wrapped) // 1000
    assert (huge * 1000) % (1 << 64) == wrapped
    t = template_set(256, [(8, 4), (12, 4), (150, 8), (151, 8)])
    rec = ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack(">QQ", huge, huge)
    dec = FlowDecoder(time_range=TimeRange())
    res = dec.decode_many([(ipfix([t, data_set(256, [rec])]), "192.0.2.1", 0)])
    assert res.batch is None and len(res.problems) == 1 and dec.stats["192.0.2.1"].bad_time == 1
