"""Every NetFlow v5/v9/IPFIX capture of the shared akvorado set, decoded by flowpivot and by tshark.

tshark is the oracle: for each capture (templates first, as a collector would have received
them) every flow record tshark shows must be a row flowpivot decodes, field by field, and no more.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import need_tool, shared

from flowpivot.decode import FlowDecoder
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap
from flowpivot.schema import to_output

pytestmark = pytest.mark.tools

A = "exports/akvorado/"

# (name, captures in the order a collector received them, UDP port)
CASES = [
    ("nfv5", ["netflow-nfv5.pcap"], 9990),
    ("v9", ["netflow-template.pcap", "netflow-data.pcap"], 2055),
    ("v9-options-sampling", ["netflow-options-template.pcap", "netflow-options-data.pcap", "netflow-template.pcap", "netflow-data.pcap"], 2055),
    ("v9-data+templates", ["netflow-data+templates.pcap"], 2055),
    ("v9-icmp", ["netflow-icmp-template.pcap", "netflow-icmp-data.pcap"], 2100),
    ("v9-samplingrate", ["netflow-samplingrate-template.pcap", "netflow-samplingrate-data.pcap"], 8096),
    (
        "v9-multiplesamplingrates",
        [
            "netflow-multiplesamplingrates-template.pcap",
            "netflow-multiplesamplingrates-options-template.pcap",
            "netflow-multiplesamplingrates-options-data.pcap",
            "netflow-multiplesamplingrates-data.pcap",
        ],
        2055,
    ),
    ("v9-nat", ["netflow-nat.pcap"], 2055),
    ("ipfix-ipfixprobe-biflow", ["netflow-ipfixprobe-templates.pcap", "netflow-ipfixprobe-data.pcap"], 4739),
    ("ipfix-mpls", ["netflow-mpls.pcap"], 2055),
    ("ipfix-physicalinterfaces", ["netflow-physicalinterfaces.pcap"], 2055),
    ("ipfix-datalink", ["netflow-datalink-template.pcap", "netflow-datalink-data.pcap"], 2055),
    # The pseudowires of this capture carry a control word (its name says so); tshark's heuristic
    # misses it on one frame, so tshark is told.
    ("ipfix-eompls", ["netflow-ethernet-over-mpls-with-control-word-template.pcap", "netflow-ethernet-over-mpls-with-control-word-data.pcap"], 2055, ["-d", "mpls.label==0-1048575,pwethcw"]),
    ("ipfix-srv6", ["netflow-ipfix-srv6-template.pcap", "netflow-ipfix-srv6-data.pcap"], 2055),
    ("ipfix-juniper-cpid", ["netflow-juniper-cpid-template.pcap", "netflow-juniper-cpid-data.pcap"], 2055),
]  # fmt: skip

FIELDS = [
    "start", "end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "tcp_flags", "packets", "bytes",
    "sampling_rate", "exporter", "observation_domain", "in_if", "out_if", "src_as", "dst_as", "direction",
    "icmp_type", "icmp_code", "rev_packets", "rev_bytes", "rev_tcp_flags",
]  # fmt: skip


class _Multi(list):
    """Values of a key that tshark's JSON repeats (forward and RFC 5103 reverse elements)."""


def _pairs(kv: list[tuple[str, object]]) -> dict[str, object]:
    d: dict[str, object] = {}
    for k, v in kv:
        if k in d:
            if not isinstance(d[k], _Multi):
                d[k] = _Multi([d[k]])
            d[k].append(v)  # type: ignore[union-attr]
        else:
            d[k] = v
    return d


def _first(v: object) -> object:
    return v[0] if isinstance(v, _Multi) else v


def _second(v: object) -> object:
    return v[1] if isinstance(v, _Multi) and len(v) > 1 else None


def _abs_ms(text: str) -> int:
    # "Oct  5, 2009 06:06:07.492059999 UTC"
    text = " ".join(text.replace(" UTC", "").split())
    stamp, frac = text.rsplit(".", 1)
    d = dt.datetime.strptime(stamp, "%b %d, %Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(d.timestamp()) * 1000 + int(frac.ljust(9, "0")[:3])


def _int(v: object) -> int | None:
    v = _first(v)
    if v is None:
        return None
    s = str(v)
    return int(s, 16) if s.startswith("0x") else int(s)


def tshark_flows(
    pcap: Path, port: int, second_half: bool = False, extra: list[str] | None = None
) -> list[dict[str, object]]:
    """tshark's flow records of a capture, in flowpivot's field names (of its second half of frames if asked)."""
    tshark = need_tool("tshark")
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-d", f"udp.port=={port},cflow", *(extra or []), "-T", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    frames = json.loads(out, object_pairs_hook=_pairs)
    skip_frames = len(frames) // 2 if second_half else 0
    flows: list[dict[str, object]] = []
    rates: dict[object, int] = {}  # from options records: ("s", sampler id) / ("t", template id) / None
    for number, fr in enumerate(frames):
        layers = fr["_source"]["layers"]
        cf = layers.get("cflow")
        if cf is None:
            continue
        exporter = layers["ip"]["ip.src"] if "ip" in layers else layers["ipv6"]["ipv6.src"]
        version = int(cf["cflow.version"])
        if version == 5:
            export_ms = (
                int(cf["cflow.timestamp_tree"]["cflow.unix_secs"]) * 1000
                + int(cf["cflow.timestamp_tree"]["cflow.unix_nsecs"]) // 1_000_000
            )
            sets = [{k: v for k, v in cf.items() if k.startswith("pdu ")}]
            domain = int(cf["cflow.engine_id"])
            header_rate = int(cf["cflow.samplerate"]) or 1
        elif version == 9:
            export_ms = int(cf["cflow.timestamp_tree"]["cflow.unix_secs"]) * 1000
            sets = [v for k, v in cf.items() if k.startswith("FlowSet")]
            domain = int(cf["cflow.source_id"])
            header_rate = None
        else:
            export_ms = int(cf["cflow.timestamp_tree"]["cflow.exporttime"]) * 1000
            sets = [v for k, v in cf.items() if k.startswith("Set")]
            domain = int(cf["cflow.od_id"])
            header_rate = None
        uptime = Decimal(cf["cflow.sysuptime"]) if "cflow.sysuptime" in cf else None
        for s in sets:
            if not isinstance(s, dict):
                continue
            for key, rec in s.items():
                if not (key.startswith("Flow ") or key.startswith("pdu ")) or not isinstance(rec, dict):
                    continue
                tree = rec.get("cflow.data_link_frame_section_tree")
                if isinstance(tree, dict):  # a sampled packet header, which tshark dissects
                    flow = _sampled_flow(rec, tree, exporter, domain, export_ms)
                    if flow is not None and number >= skip_frames:
                        flows.append(flow)
                    continue
                # options records: remember the sampling rate they announce
                if not any(k in rec for k in ("cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6")):
                    rate = None
                    if "cflow.sampling_interval" in rec:
                        rate = _int(rec["cflow.sampling_interval"])
                    elif "cflow.sampler_random_interval" in rec:
                        rate = _int(rec["cflow.sampler_random_interval"])
                    elif "cflow.sampling_packet_interval" in rec:
                        i, sp = (
                            _int(rec["cflow.sampling_packet_interval"]),
                            _int(rec.get("cflow.sampling_packet_space", "0")),
                        )
                        rate = (i + sp) // i if i else None
                    if rate:
                        k = (
                            ("s", _int(rec["cflow.sampler_id"]))
                            if "cflow.sampler_id" in rec
                            else ("t", _int(rec["cflow.template_id"]))
                            if "cflow.template_id" in rec
                            else None
                        )
                        rates[k] = rate
                    continue
                if number >= skip_frames:
                    flows.append(_flow(rec, s, exporter, version, domain, export_ms, uptime, header_rate, rates))
    return flows


def _last(v: object) -> object:
    return v[-1] if isinstance(v, _Multi) else v


def _sampled_flow(rec, tree, exporter, domain, export_ms) -> dict[str, object] | None:
    """One sampled packet as a flow, from tshark's dissection of its header: the innermost IP packet."""
    ips = [k for k in tree if k in ("ip", "ipv6")]
    if not ips:
        return None
    ip = _last(tree[ips[-1]])
    v4 = ips[-1] == "ip"
    r: dict[str, object] = {"exporter": exporter, "observation_domain": domain, "start": export_ms, "end": export_ms}
    r["src_addr"] = ip["ip.src" if v4 else "ipv6.src"]
    r["dst_addr"] = ip["ip.dst" if v4 else "ipv6.dst"]
    r["bytes"] = int(ip["ip.len"]) if v4 else int(ip["ipv6.plen"]) + 40
    r["packets"], r["sampling_rate"] = 1, 1
    l4 = {k: _last(tree[k]) for k in ("tcp", "udp", "icmp", "icmpv6") if k in tree}
    r["protocol"] = (
        6
        if "tcp" in l4
        else 17
        if "udp" in l4
        else 1
        if "icmp" in l4
        else 58
        if "icmpv6" in l4
        else int(ip["ip.proto" if v4 else "ipv6.nxt"])
    )
    r["src_port"] = r["dst_port"] = r["tcp_flags"] = 0
    r["icmp_type"] = r["icmp_code"] = None
    for k in ("tcp", "udp"):
        if k in l4:
            r["src_port"], r["dst_port"] = int(l4[k][f"{k}.srcport"]), int(l4[k][f"{k}.dstport"])
    if "tcp" in l4:
        r["tcp_flags"] = int(l4["tcp"]["tcp.flags"], 16) & 0xFF
    for k in ("icmp", "icmpv6"):
        if k in l4:
            r["icmp_type"], r["icmp_code"] = int(l4[k][f"{k}.type"]), int(l4[k][f"{k}.code"])
    r["in_if"], r["out_if"] = _int(rec.get("cflow.inputint")), _int(rec.get("cflow.outputint"))
    r["direction"] = _int(rec.get("cflow.direction"))
    r["src_as"] = r["dst_as"] = r["rev_packets"] = r["rev_bytes"] = r["rev_tcp_flags"] = None
    return r


def _flow(rec, s, exporter, version, domain, export_ms, uptime, header_rate, rates) -> dict[str, object]:
    r: dict[str, object] = {"exporter": exporter, "observation_domain": domain}
    v4s, v4d = rec.get("cflow.srcaddr"), rec.get("cflow.dstaddr")
    v6s, v6d = rec.get("cflow.srcaddrv6"), rec.get("cflow.dstaddrv6")
    use6 = v6s is not None and (
        v4s is None or rec.get("cflow.ip_version") == "6" or ("cflow.ip_version" not in rec and v4s == "0.0.0.0")
    )
    r["src_addr"], r["dst_addr"] = (v6s, v6d) if use6 else (v4s, v4d)
    r["src_port"], r["dst_port"] = _int(rec.get("cflow.srcport")), _int(rec.get("cflow.dstport"))
    r["protocol"] = _int(rec.get("cflow.protocol"))
    r["tcp_flags"] = _int(rec.get("cflow.tcpflags"))
    r["rev_tcp_flags"] = _int(_second(rec.get("cflow.tcpflags")))
    for name, keys in (
        ("packets", ("cflow.packets", "cflow.packets64")),
        ("bytes", ("cflow.octets", "cflow.octets64")),
    ):
        v = next((rec[k] for k in keys if k in rec), None)
        r[name] = _int(v)
        r["rev_" + name] = _int(_second(v))
    r["in_if"] = _int(rec.get("cflow.inputint", rec.get("cflow.ingress_physical_interface")))
    r["out_if"] = _int(rec.get("cflow.outputint", rec.get("cflow.egress_physical_interface")))
    r["src_as"], r["dst_as"] = _int(rec.get("cflow.srcas")), _int(rec.get("cflow.dstas"))
    r["direction"] = _int(rec.get("cflow.direction"))
    proto = r["protocol"]
    r["icmp_type"] = r["icmp_code"] = None
    if proto in (1, 58):
        tc = rec.get("cflow.icmp_type_code_ipv6" if proto == 58 else "cflow.icmp_type_code_ipv4")
        tc = tc if tc is not None else rec.get("cflow.icmp_type_code_ipv4", rec.get("cflow.icmp_type_code_ipv6"))
        value = _int(tc) if tc is not None else r["dst_port"]
        r["icmp_type"], r["icmp_code"] = value >> 8, value & 0xFF
    td = rec.get("cflow.timedelta_tree", {})
    for name, ab, rel in (
        ("start", "cflow.abstimestart", "cflow.timestart"),
        ("end", "cflow.abstimeend", "cflow.timeend"),
    ):
        if ab in td:
            r[name] = _abs_ms(td[ab])
        elif rel in td:
            r[name] = export_ms - int((uptime - Decimal(td[rel])) * 1000)
        elif "cflow.observation_time_milliseconds" in rec:
            r[name] = _abs_ms(rec["cflow.observation_time_milliseconds"])
        else:
            r[name] = export_ms
    if "cflow.sampling_interval" in rec:
        r["sampling_rate"] = _int(rec["cflow.sampling_interval"])
    elif header_rate is not None:
        r["sampling_rate"] = header_rate
    else:
        sid = _int(rec["cflow.sampler_id"]) if "cflow.sampler_id" in rec else None
        tid = int(s["cflow.flowset_id"])
        r["sampling_rate"] = rates.get(("s", sid)) or rates.get(("t", tid)) or rates.get(None) or 1
    return r


def flowpivot_flows(paths: list[Path]) -> tuple[list[dict[str, object]], FlowDecoder]:
    dec = FlowDecoder()
    batches = []
    for p in paths:
        report = ReadReport(str(p))
        batches += list(read_pcap(p, report, dec))
        assert report.problems == []
    if not batches:
        return [], dec
    rows = to_output(pa.Table.from_batches(batches)).to_pylist()
    for row in rows:
        for k in ("start", "end"):
            row[k] = int(row[k].timestamp() * 1000)
    return [{k: row[k] for k in FIELDS} for row in rows], dec


def _key(r: dict[str, object]) -> tuple:
    return tuple((r[k] is None, str(r[k])) for k in FIELDS)


@pytest.mark.parametrize("name,files,port,extra", [(*c, [])[:4] for c in CASES], ids=[c[0] for c in CASES])
def test_every_record_matches_tshark(name: str, files: list[str], port: int, extra: list[str], tmp_path: Path) -> None:
    mergecap = need_tool("mergecap")
    paths = [shared(A + f) for f in files]
    # flowpivot holds a data set that comes before its template and decodes it when the template
    # arrives (netflow-data+templates.pcap has one); tshark cannot. So tshark reads the captures
    # twice and the second pass, with every template known, is the reference.
    merged = tmp_path / "merged.pcap"
    subprocess.run(
        [mergecap, "-a", "-F", "pcap", "-w", str(merged), *map(str, paths * 2)], check=True, capture_output=True
    )
    expected = tshark_flows(merged, port, second_half=True, extra=extra)
    got, dec = flowpivot_flows(paths)
    assert len(got) == len(expected), f"{name}: flowpivot {len(got)} flows, tshark {len(expected)}"
    for g, e in zip(sorted(got, key=_key), sorted(expected, key=_key), strict=True):
        diff = {k: (g[k], e[k]) for k in FIELDS if g[k] != e[k]}
        assert not diff, f"{name}: flowpivot vs tshark differ {diff}\nflowpivot {g}\ntshark    {e}"
    st = sum(s.malformed for s in dec.stats.values())
    assert st == 0


def test_sampling_rates_per_sampler_match_options_records(tmp_path: Path) -> None:
    """multiplesamplingrates: two samplers (1/2000 and 1/4000) announced in options data; each flow gets its sampler's."""
    files = [
        "netflow-multiplesamplingrates-template.pcap",
        "netflow-multiplesamplingrates-options-template.pcap",
        "netflow-multiplesamplingrates-options-data.pcap",
        "netflow-multiplesamplingrates-data.pcap",
    ]
    merged = tmp_path / "m.pcap"
    subprocess.run(
        [need_tool("mergecap"), "-a", "-F", "pcap", "-w", str(merged), *(str(shared(A + f)) for f in files)], check=True
    )
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(merged), "-d", "udp.port==2055,cflow", "-T", "fields", "-E", "occurrence=a",
         "-e", "cflow.sampler_id", "-e", "cflow.sampler_random_interval", "-e", "cflow.srcaddrv6"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    rate_of: dict[int, int] = {}
    sampler_of_flow: list[int] = []
    for line in out:
        ids, rates, addrs = (line.split("\t") + ["", "", ""])[:3]
        if rates:
            rate_of.update({int(i): int(r) for i, r in zip(ids.split(","), rates.split(","), strict=True)})
        elif addrs:
            sampler_of_flow += [int(i) for i in ids.split(",")]
    assert len(set(rate_of.values())) == 2  # the capture really has two rates
    got, _ = flowpivot_flows([shared(A + f) for f in files])
    assert sorted(r["sampling_rate"] for r in got) == sorted(rate_of[s] for s in sampler_of_flow)
