"""The scenario simulator: its pcaps decode with tshark to exactly the flows it generated, its truth.json
matches the traffic, sampling behaves as 1:N packet sampling implies, and the same seed gives the same bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from flowpivot.simulate import NoiseSpec, Scenario, simulate
from flowpivot.simulate import traffic as T
from tests.conftest import need_tool

SMALL_NOISE = NoiseSpec(
    victims=8, research_targets=1500, syn_scan_targets=1500, clients=1500, web_servers=300, seed_provider_web_servers=40
)
SMALL = Scenario(flows=30_000, days=4, dark_day=4, post_days=1, noise=SMALL_NOISE, seed=11)

FIELDS = (
    "frame.number", "cflow.source_id", "cflow.sequence", "cflow.count", "cflow.sysuptime", "cflow.unix_secs",
    "cflow.flowset_id", "cflow.srcaddr", "cflow.srcaddrv6", "cflow.dstaddr", "cflow.dstaddrv6", "cflow.srcport",
    "cflow.dstport", "cflow.protocol", "cflow.tcpflags", "cflow.packets", "cflow.octets", "cflow.timestart",
    "cflow.timeend", "cflow.sampling_interval", "cflow.sampler_random_interval", "ip.checksum.status",
)  # fmt: skip


def tshark_rows(pcap: Path) -> list[dict[str, list[str]]]:
    """One dict per datagram, each field a list of its values (one per record), as tshark decodes them."""
    tshark = need_tool("tshark")
    args = [tshark, "-r", str(pcap), "-n", "-d", "udp.port==2055,cflow", "-o", "ip.check_checksum:TRUE", "-T", "fields"]
    for f in FIELDS:
        args += ["-e", f]
    res = subprocess.run(args, capture_output=True, text=True, check=True)
    rows = []
    for line in res.stdout.splitlines():
        cols = line.split("\t")
        rows.append({f: (c.split(",") if c else []) for f, c in zip(FIELDS, cols, strict=True)})
    return rows


def decoded_records(pcap: Path) -> list[tuple]:
    """(src, dst, sport, dport, proto, flags, packets, bytes, start_ms, end_ms) of every data record, via tshark."""
    out = []
    for r in tshark_rows(pcap):
        if r["cflow.flowset_id"] not in (["256"], ["257"]):
            continue
        up = round(float(r["cflow.sysuptime"][0]) * 1000)
        secs = int(r["cflow.unix_secs"][0])
        v6 = r["cflow.flowset_id"] == ["257"]
        src = r["cflow.srcaddrv6" if v6 else "cflow.srcaddr"]
        dst = r["cflow.dstaddrv6" if v6 else "cflow.dstaddr"]
        n = int(r["cflow.count"][0])
        assert len(src) == n == len(r["cflow.packets"])
        for i in range(n):
            first = round(float(r["cflow.timestart"][i]) * 1000)
            last = round(float(r["cflow.timeend"][i]) * 1000)
            out.append((
                str(ipaddress.ip_address(src[i])), str(ipaddress.ip_address(dst[i])),
                int(r["cflow.srcport"][i]), int(r["cflow.dstport"][i]), int(r["cflow.protocol"][i]),
                int(r["cflow.tcpflags"][i], 16), int(r["cflow.packets"][i]), int(r["cflow.octets"][i]),
                secs * 1000 - up + first, secs * 1000 - up + last,
            ))  # fmt: skip
    return out


def expected_records(truth, day: int) -> list[tuple]:
    f = truth.flows
    ix = np.flatnonzero(f["day"] == day)
    src = truth.book.text(f["src"][ix])
    dst = truth.book.text(f["dst"][ix])
    cols = [f[k][ix].tolist() for k in ("sport", "dport", "proto", "flags", "packets", "bytes", "start", "end")]
    return [(s, d, *rest) for s, d, *rest in zip(src, dst, *cols, strict=True)]


@pytest.fixture(scope="module")
def world1(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim1")
    return out, simulate(dataclasses.replace(SMALL, sampling=1), out, keep_flows=True)


@pytest.fixture(scope="module")
def world100(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim100")
    return out, simulate(dataclasses.replace(SMALL, sampling=100), out, keep_flows=True)


@pytest.fixture(scope="module")
def world_v6(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("simv6")
    return out, simulate(dataclasses.replace(SMALL, sampling=10, ipv6_seeds=True), out, keep_flows=True)


# ----- tshark is the oracle for the wire format ----------------------------------------------------


@pytest.mark.tools
@pytest.mark.parametrize("world", ["world1", "world100", "world_v6"])
def test_tshark_decodes_exactly_the_generated_flows(world: str, request: pytest.FixtureRequest) -> None:
    out, truth = request.getfixturevalue(world)
    days = truth.data["flows"]["per_day"]
    for d in (days[0], days[-1]):
        got = decoded_records(out / d["file"])
        want = expected_records(truth, d["day"])
        assert len(got) == d["records"] == len(want) > 0
        assert sorted(got) == sorted(want)


@pytest.mark.tools
def test_headers_checksums_sequence_and_sampling_options(world100) -> None:
    out, truth = world100
    seq: dict[str, list[int]] = {}
    n_data = n_tmpl = 0
    for d in truth.data["flows"]["per_day"]:
        rows = tshark_rows(out / d["file"])
        assert rows and rows[0]["cflow.flowset_id"][:2] == ["0", "1"]  # each file opens with the templates
        for r in rows:
            assert r["ip.checksum.status"] == ["1"]  # tshark verified the IPv4 header checksum
            seq.setdefault(r["cflow.source_id"][0], []).append(int(r["cflow.sequence"][0]))
            if r["cflow.flowset_id"] == ["0", "1", "258"]:
                n_tmpl += 1
                assert r["cflow.sampling_interval"] == ["100"] and r["cflow.sampler_random_interval"] == ["100"]
            else:
                n_data += 1
    assert set(seq) == {"1", "2"}
    for s in seq.values():  # sequence numbers count export packets per source id, across the daily files
        assert s == list(range(s[0], s[0] + len(s)))
    assert n_tmpl >= n_data / 19


@pytest.mark.tools
def test_ipv6_seeds_are_ipv6_in_the_exports(world_v6) -> None:
    out, truth = world_v6
    seeds = [s["address"] for s in truth.data["seeds"]]
    assert all(":" in s for s in seeds)
    assert all(":" in m for c in truth.data["clusters"] for m in c["members"])
    got = decoded_records(out / truth.data["flows"]["per_day"][1]["file"])
    touching = [r for r in got if r[0] in seeds or r[1] in seeds]
    assert touching and all(":" in r[0] and ":" in r[1] for r in touching)


# ----- truth.json says what the traffic shows ------------------------------------------------------


def _asn_table(path: Path) -> tuple[list[tuple[int, int, int, str]], list[tuple[int, int, int, str]]]:
    v4, v6 = [], []
    for line in path.read_text().splitlines():
        a, b, asn, _cc, name = line.split("\t")
        lo, hi = ipaddress.ip_address(a), ipaddress.ip_address(b)
        (v6 if lo.version == 6 else v4).append((int(lo), int(hi), int(asn), name))
    return sorted(v4), sorted(v6)


def _lookup(table: list[tuple[int, int, int, str]], ip: str) -> int | None:
    import bisect

    x = int(ipaddress.ip_address(ip))
    i = bisect.bisect_right([r[0] for r in table], x) - 1
    return table[i][2] if i >= 0 and table[i][0] <= x <= table[i][1] else None


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_truth_matches_the_generated_traffic(world1) -> None:
    out, truth = world1
    t, f = truth.data, truth.flows
    src = np.array(truth.book.text(f["src"]))
    dst = np.array(truth.book.text(f["dst"]))
    flags = f["flags"]
    seeds = [s["address"] for s in t["seeds"]]
    assert (out / "seeds.txt").read_text().split("\n", 1)[1].split() == seeds
    assert len(seeds) == len(set(seeds)) == 25
    # FIN7 as specified: 4 Post Ltd controllers with 15 seeds, 3 SmartApe with 16, 12 shared, 5 new hosts
    shape = [(c["provider"]["asn"], len(c["members"]), len(c["seeds"])) for c in t["clusters"]]
    assert shape == [(12494, 4, 15), (62212, 3, 16)]
    assert t["overlap"]["count"] == 12 == len(set(t["clusters"][0]["seeds"]) & set(t["clusters"][1]["seeds"]))
    assert len(t["new_infrastructure"]) == 5

    def established(a: set[str], b: set[str]) -> set[tuple[str, str]]:
        """(a, b) pairs with a completed handshake (SYN seen both ways, unsampled) and data both ways."""
        fwd = np.isin(src, list(a)) & np.isin(dst, list(b))
        rev = np.isin(src, list(b)) & np.isin(dst, list(a))
        syn = {(s, d) for s, d in zip(src[fwd & (flags & 0x02 > 0)], dst[fwd & (flags & 0x02 > 0)], strict=True)}
        synack = {
            (d, s) for s, d in zip(src[rev & (flags & 0x12 == 0x12)], dst[rev & (flags & 0x12 == 0x12)], strict=True)
        }
        data = {(s, d) for s, d in zip(src[fwd & (flags & 0x08 > 0)], dst[fwd & (flags & 0x08 > 0)], strict=True)}
        back = {(d, s) for s, d in zip(src[rev & (flags & 0x08 > 0)], dst[rev & (flags & 0x08 > 0)], strict=True)}
        return syn & synack & data & back

    seedset = set(seeds)
    for c in t["clusters"]:
        pairs = established(set(c["members"]), seedset)
        assert {s for _, s in pairs} == set(c["seeds"])
        assert {m for m, _ in pairs} == set(c["members"])
        assert pairs == {(m, s) for m, ss in c["member_seeds"].items() for s in ss}
    members = {m for c in t["clusters"] for m in c["members"]}
    new = {n["address"] for n in t["new_infrastructure"]}
    assert not new & seedset
    managed = established(members, new)
    assert {h for _, h in managed} == new
    # nothing touches a seed after it went dark; the new hosts are still managed after the suspension
    v4, v6 = _asn_table(out / "asn.tsv")
    for s in t["seeds"]:
        touching = (src == s["address"]) | (dst == s["address"])
        assert touching.any() and f["end"][touching].max() < _ms(s["dark_at"]) <= _ms(
            t["acceptance"]["every_seed_dark_after"]
        )
        assert _lookup(v6 if ":" in s["address"] else v4, s["address"]) == 44477
    susp = _ms(t["period"]["suspension"])
    assert all(((np.isin(src, list(members)) & (dst == h)) & (f["start"] > susp)).any() for h in new)
    assert all(_lookup(v4, h) == 44477 for h in new)
    # noise behaves as labelled
    noise = t["noise"]
    assert not (set().union(*map(set, noise.values())) & (members | new | seedset))
    decoy = np.isin(src, noise["decoys"])
    assert decoy.any() and set(flags[decoy].tolist()) == {0x02}
    assert set(dst[decoy]) == set(t["decoy"]["seeds"]) and len(t["decoy"]["seeds"]) == 10
    for r in noise["research_scanners"]:
        assert established({r}, seedset) == {(r, s) for s in seeds}  # full handshakes with every seed
    research = np.isin(src, noise["research_scanners"])
    assert len(set(dst[research]) - seedset) == t["noise_sizes"]["research_targets"]
    for r in noise["syn_scanners"]:
        assert set(dst[(src == r) & (flags & 0x12 == 0x02)]) >= seedset  # SYN (and RST), never an ACK
    for v in t["victims"]:
        beacon = (src == v["address"]) & np.isin(dst, seeds) & (f["dport"] == 443)
        assert set(dst[beacon]) == set(v["seeds"])
        for seed in v["seeds"]:  # a regular interval with jitter, per seed
            gaps = np.diff(np.sort(f["start"][beacon & (dst == seed) & (flags & 0x02 > 0)])) / 1000
            assert np.median(gaps) == pytest.approx(v["beacon_interval_s"], rel=0.1)
            assert gaps.min() >= 0.75 * v["beacon_interval_s"] and gaps.max() <= 1.25 * v["beacon_interval_s"]
    # every simulated address is in the ASN table
    for a in set(src.tolist()) | set(dst.tolist()):
        assert _lookup(v6 if ":" in a else v4, a) is not None, a
    assert json.loads((out / "truth.json").read_text()) == json.loads(json.dumps(t))


# ----- sampling -------------------------------------------------------------------------------------


def test_sampling_follows_the_binomial_law() -> None:
    """1:1000 packet sampling of known sessions: counts, flags and bytes against the arithmetic of sampling."""
    rng = np.random.default_rng(5)
    n, N, p = 40_000, 1000, 1 / 1000
    long = T.tcp_established(rng, n, np.full(n, 3000), np.full(n, 3000), 500.0, 1400.0)
    s = T.new_sessions(n, t0=np.arange(n) * 1000, dur=600_000, a=np.arange(n), b=n + np.arange(n), dport=443, **long)
    f = T.to_flows(s, N, 1_800_000, rng)
    fwd = f["dir"] == 0
    total = 1 + 3000 + (1 + 1500 + 1) + 1  # SYN, data, ACKs (handshake, one per two received, FIN), FIN
    assert total == 1 + long["ack0"][0] + long["data0"][0] + 1
    p_seen = 1 - (1 - p) ** total
    assert abs(fwd.sum() - n * p_seen) < 5 * np.sqrt(n * p_seen * (1 - p_seen))
    assert f["packets"][fwd].mean() == pytest.approx(total * p / p_seen, rel=0.03)
    syn = (f["flags"][fwd] & 0x02) > 0
    assert abs(syn.sum() - n * p) < 5 * np.sqrt(n * p) + 1  # a long session rarely shows its SYN
    assert (f["flags"][fwd] & 0x18 == 0x18).mean() > 0.9
    # bytes: the sum of the sampled packets' sizes
    per_pkt = f["bytes"][fwd] / f["packets"][fwd]
    assert 52 <= per_pkt.min() and per_pkt.max() <= 500
    # short sessions mostly vanish
    short = T.tcp_established(rng, n, np.full(n, 2), np.full(n, 2), 200.0, 600.0)
    s2 = T.new_sessions(n, t0=0, dur=500, a=np.arange(n), b=n + np.arange(n), dport=443, **short)
    f2 = T.to_flows(s2, N, 1_800_000, rng)
    per_dir = 1 + 1 + 2 + 1 + 1  # SYN, ACKs, 2 data, FIN
    expected = 2 * n * (1 - (1 - p) ** per_dir)
    assert abs(len(f2["packets"]) - expected) < 5 * np.sqrt(expected) + 1
    # unsampled: every packet and flag
    f3 = T.to_flows(s2, 1, 1_800_000, rng)
    assert len(f3["packets"]) == 2 * n and set(f3["flags"].tolist()) == {0x1B}


def test_active_timeout_splits_long_sessions() -> None:
    rng = np.random.default_rng(1)
    c = T.tcp_established(rng, 1, np.array([900]), np.array([9000]), 300.0, 1400.0)
    s = T.new_sessions(1, t0=0, dur=95 * 60_000, a=0, b=1, dport=22, **c)
    f = T.to_flows(s, 1, 30 * 60_000, rng)
    assert len(f["packets"]) == 8  # 4 records per direction
    fwd = np.flatnonzero(f["dir"] == 0)
    fwd = fwd[np.argsort(f["start"][fwd])]
    assert f["packets"][fwd].sum() == c["syn0"][0] + c["ack0"][0] + c["data0"][0] + c["fin0"][0]
    assert [int(x) & 0x03 for x in f["flags"][fwd]] == [0x02, 0, 0, 0x01]  # SYN first, FIN last
    assert f["start"][fwd].tolist() == [0, 1_800_000, 3_600_000, 5_400_000]


@pytest.mark.tools
def test_sampling_1000_exports_few_syns_from_long_sessions(tmp_path: Path) -> None:
    truth = simulate(dataclasses.replace(SMALL, sampling=1000, flows=10_000), tmp_path, keep_flows=True)
    f = truth.flows
    ctrl = f["tag"] == T.TAGS["controller_seed"]
    assert ctrl.sum() > 100
    assert ((f["flags"][ctrl] & 0x02) > 0).mean() < 0.01
    assert truth.data["sampling_rate"] == 1000
    rows = tshark_rows(tmp_path / "exports" / "day-01.pcap")
    assert rows[0]["cflow.sampling_interval"] == ["1000"]


# ----- determinism and the command line -------------------------------------------------------------


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    sc = dataclasses.replace(SMALL, flows=8_000, days=2, dark_day=2, post_days=1, seed=3)
    simulate(sc, tmp_path / "a")
    simulate(sc, tmp_path / "b")
    simulate(dataclasses.replace(sc, seed=4), tmp_path / "c")
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert a == b and len(a) == 6  # 3 daily pcaps, seeds.txt, asn.tsv, truth.json
    assert a["day-01.pcap"] != c["day-01.pcap"]


def test_cli_writes_a_scenario(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowpivot.cli import app

    cfg = tmp_path / "variant.json"
    cfg.write_text(json.dumps({
        "seeds": 10, "shared_seeds": 2, "new_infrastructure": 1,
        "clusters": [{"provider": "hetzner", "members": 2, "seeds": 5}, {"provider": {"asn": 64500, "name": "EXAMPLE",
                      "country": "NL", "prefixes": ["198.51.100.0/24"]}, "members": 3, "seeds": 4}],
        "noise": {"victims": 3, "decoys": 2, "decoy_seeds": 3, "clients": 500, "web_servers": 100},
    }))  # fmt: skip
    res = CliRunner().invoke(app, ["simulate", "fin7", "--out", str(tmp_path / "o"), "--config", str(cfg), "--flows", "5000",
                                   "--days", "3", "--sampling", "1000", "--seed", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    t = json.loads((tmp_path / "o" / "truth.json").read_text())
    assert t["sampling_rate"] == 1000 and t["scenario"]["seed"] == 2 and t["period"]["modelled_days"] == 3
    assert [(c["provider"]["asn"], len(c["members"]), len(c["seeds"])) for c in t["clusters"]] == [
        (24940, 2, 5),
        (64500, 3, 4),
    ]
    assert t["overlap"]["count"] == 2 and len(t["new_infrastructure"]) == 1
    assert all(m.startswith("198.51.100.") for m in t["clusters"][1]["members"])
    assert sorted(p.name for p in (tmp_path / "o" / "exports").iterdir()) == [f"day-0{i}.pcap" for i in range(1, 7)]
    bad = CliRunner().invoke(app, ["simulate", "nosuch", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown scenario" in bad.output


# ----- the pipeline reads what the simulator writes --------------------------------------------------


def test_ingest_stores_exactly_the_exported_flows(world_v6, tmp_path: Path) -> None:
    """`flowpivot ingest DIR/exports/*.pcap --store S` keeps every exported record, IPv4 and IPv6, at 1:N."""
    from typer.testing import CliRunner

    from flowpivot.cli import app
    from flowpivot.store import Store

    out, truth = world_v6
    pcaps = sorted(str(p) for p in (out / "exports").glob("*.pcap"))
    res = CliRunner().invoke(app, ["ingest", *pcaps, "--store", str(tmp_path / "store"), "--quiet"])
    assert res.exit_code == 0, res.output
    t = Store(tmp_path / "store").query()
    f = truth.flows
    assert t.num_rows == truth.data["flows"]["exported"] == len(f["start"])
    assert set(t.column("sampling_rate").to_pylist()) == {10}

    def key(v4: object, v6: object) -> str:
        return str(ipaddress.ip_address(v6)) if v6 is not None else str(ipaddress.ip_address(v4))  # type: ignore[arg-type]

    cols = t.to_pydict()
    stored = sorted(
        (
            int(s.timestamp() * 1000),
            int(e.timestamp() * 1000),
            key(a4, a6),
            key(b4, b6),
            sp,
            dp,
            pr,
            fl,
            pk,
            by,
            ex,
            od,
        )  # fmt: skip
        for s, e, a4, a6, b4, b6, sp, dp, pr, fl, pk, by, ex, od in zip(
            cols["start"],
            cols["end"],
            cols["src_addr_v4"],
            cols["src_addr_v6"],
            cols["dst_addr_v4"],
            cols["dst_addr_v6"],
            cols["src_port"],
            cols["dst_port"],
            cols["protocol"],
            cols["tcp_flags"],
            cols["packets"],
            cols["bytes"],
            cols["exporter"],
            cols["observation_domain"],
            strict=True,
        )  # fmt: skip
    )
    exporters = truth.data["exporters"]
    want = sorted(
        zip(
            f["start"].tolist(),
            f["end"].tolist(),
            truth.book.text(f["src"]),
            truth.book.text(f["dst"]),
            f["sport"].tolist(),
            f["dport"].tolist(),
            f["proto"].tolist(),
            f["flags"].tolist(),
            f["packets"].tolist(),
            f["bytes"].tolist(),
            [exporters[e]["address"] for e in f["exporter"].tolist()],
            [exporters[e]["source_id"] for e in f["exporter"].tolist()],
            strict=True,
        )  # fmt: skip
    )
    assert stored == want
    assert any(":" in r[2] for r in want) and any("." in r[2] for r in want)


def test_actor_is_the_same_at_any_sampling_and_size(world1, world100) -> None:
    """Only the volume and the sampler change with --flows and --sampling; the actor and noise hosts do not."""
    t1, t100 = world1[1].data, world100[1].data
    for k in ("seeds", "new_infrastructure", "noise", "victims", "decoy", "overlap"):
        if k == "new_infrastructure":
            strip = lambda xs: [{a: b for a, b in x.items() if a != "exported_flows"} for x in xs]  # noqa: E731
            assert strip(t1[k]) == strip(t100[k])
        else:
            assert t1[k] == t100[k], k
    assert [c["member_seeds"] for c in t1["clusters"]] == [c["member_seeds"] for c in t100["clusters"]]


def test_truth_counts_what_the_exports_show(world100) -> None:
    """truth.json's exported_flows per managed pair equals the flows the pcaps carry for that pair."""
    _, truth = world100
    f = truth.flows
    src = np.array(truth.book.text(f["src"]))
    dst = np.array(truth.book.text(f["dst"]))
    for c in truth.data["clusters"]:
        for member, per_seed in c["exported_flows"].items():
            for seed, n in per_seed.items():
                both = ((src == member) & (dst == seed)) | ((src == seed) & (dst == member))
                assert both.sum() == n > 0


def test_bad_scenarios_are_refused_with_the_reason(tmp_path: Path) -> None:
    from flowpivot.simulate import scenario_from_dict

    with pytest.raises(ValueError, match="unknown scenario field"):
        scenario_from_dict({"seeds": 25, "sead": 1})
    with pytest.raises(ValueError, match="unknown noise field"):
        scenario_from_dict({"noise": {"victim": 3}})
    with pytest.raises(ValueError, match="need 29 distinct seeds"):
        scenario_from_dict({"shared_seeds": 2})
    with pytest.raises(ValueError, match="has no IPv6 prefix"):
        simulate(
            scenario_from_dict(
                {
                    "ipv6_seeds": True,
                    "clusters": [
                        {
                            "provider": {"asn": 64500, "name": "X", "country": "NL", "prefixes": ["198.51.100.0/24"]},
                            "members": 2,
                            "seeds": 12,
                        }
                    ],
                }
            ),
            tmp_path,
        )
    bad = tmp_path / "bad.json"
    bad.write_text('{"seeds": 25,}')
    from typer.testing import CliRunner

    from flowpivot.cli import app

    res = CliRunner().invoke(app, ["simulate", "fin7", "--out", str(tmp_path / "o"), "--config", str(bad)])
    assert res.exit_code == 2 and "bad.json: line 1 column 14" in " ".join(res.output.split())
