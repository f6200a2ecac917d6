"""Session evidence per (seed, peer): what the flags, sizes, sampling and Zeek's conn_state allow us to say."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hunt_world import ACK, FIN, PSH, RST, SYN, World, day

from flowpivot.hunt.context import HuntContext
from flowpivot.hunt.keys import ip_of, key_of, load_anchors
from flowpivot.hunt.pivot import create_pairs, ipkey_macro

SEED = "86.104.72.16"
SEED6 = "2a06:1280:ae01::10"


def pairs_of(tmp_path: Path, w: World, seeds: list[str]) -> dict[str, dict]:
    store = w.write(tmp_path / "store")
    with HuntContext(store) as con:
        ipkey_macro(con)
        load_anchors(con, "seeds", [key_of(s) for s in seeds])
        create_pairs(con, "seeds", "sp", day(-1), day(40), keep_flows=True)
        rows = con.sql("SELECT * EXCLUDE (peer_v4, peer_v6) FROM sp").to_arrow_table().to_pylist()
    return {ip_of(r["peer"]): r for r in rows}


def test_rejected_attempts_and_scans(tmp_path: Path) -> None:
    w = World()
    for i in range(3):
        w.rejected("192.0.2.10", SEED, 5888, day(1) + i * 1000)
    w.syn("192.0.2.11", SEED, 22, day(1))
    w.syn("192.0.2.11", SEED, 22, day(1) + 3000)
    p = pairs_of(tmp_path, w, [SEED])
    rej, att = p["192.0.2.10"], p["192.0.2.11"]
    assert (rej["session"], rej["established"], rej["rejected_flows"], rej["attempt_flows"]) == (
        "rejected",
        False,
        3,
        3,
    )
    assert rej["initiator"] == "peer"
    assert (att["session"], att["established"], att["attempt_flows"]) == ("attempt", False, 2)
    assert att["initiator"] == "peer"


def test_sampled_mid_session_packets_are_established(tmp_path: Path) -> None:
    """At 1:1000 a session shows as one ACK|PSH packet: payload, hence established; volumes scaled."""
    w = World(sampling=1000)
    w.row(day(1), "192.0.2.20", SEED, 51000, 443, 6, ACK | PSH, 1, 1400)
    w.row(day(1), "192.0.2.21", SEED, 51001, 443, 6, ACK, 2, 2 * 1200)  # no PSH, but 1,200 bytes a packet
    w.row(day(1), "192.0.2.22", SEED, 51002, 443, 6, ACK, 1, 52)  # a bare ACK: nothing proves payload
    p = pairs_of(tmp_path, w, [SEED])
    a, b, c = p["192.0.2.20"], p["192.0.2.21"], p["192.0.2.22"]
    assert a["established"] and b["established"] and not c["established"]
    assert c["session"] == "one-way"
    assert (a["p_packets"], a["p_packets_est"], a["p_bytes_est"]) == (1, 1000, 1_400_000)
    assert a["initiator"] == "peer"  # no SYN: the seed holds the lower (service) port


def test_ack_both_ways_without_payload_is_established(tmp_path: Path) -> None:
    w = World()
    w.row(day(1), "192.0.2.30", SEED, 50000, 22, 6, ACK, 1, 52)
    w.row(day(1), SEED, "192.0.2.30", 22, 50000, 6, ACK, 1, 52)
    # a rejection is traffic both ways too, but the answer is an RST alone
    w.rejected("192.0.2.31", SEED, 22, day(1))
    p = pairs_of(tmp_path, w, [SEED])
    assert p["192.0.2.30"]["established"]
    assert not p["192.0.2.31"]["established"]


def test_bare_segment_limit_depends_on_the_family(tmp_path: Path) -> None:
    """90 bytes a packet is payload over IPv4 (limit 80) but may be a bare segment over IPv6 (100)."""
    w = World()
    w.row(day(1), "192.0.2.40", SEED, 50000, 443, 6, ACK, 2, 180)
    w.row(day(1), "2001:db8::40", SEED6, 50000, 443, 6, ACK, 2, 180)
    w.row(day(1), "2001:db8::41", SEED6, 50000, 443, 6, ACK, 2, 2 * 101)
    p = pairs_of(tmp_path, w, [SEED, SEED6])
    assert p["192.0.2.40"]["established"]
    assert not p["2001:db8::40"]["established"]
    assert p["2001:db8::41"]["established"]


def test_full_unsampled_session_and_initiator_from_ports(tmp_path: Path) -> None:
    w = World()
    w.session(SEED, "198.51.100.7", 8443, day(1))  # the seed connects out
    w.session(SEED, "198.51.100.7", 8443, day(2))
    p = pairs_of(tmp_path, w, [SEED])["198.51.100.7"]
    assert p["established"] and p["initiator"] == "anchor"
    assert p["a_flags"] == SYN | ACK | PSH | FIN and p["active_days"] == 2


def test_syn_without_ack_decides_the_initiator_against_the_ports(tmp_path: Path) -> None:
    # the seed opens from port 80 to the peer's 40000: ports would say the peer initiated
    w = World()
    w.row(day(1), SEED, "198.51.100.8", 80, 40000, 6, SYN, 1, 60)
    p = pairs_of(tmp_path, w, [SEED])["198.51.100.8"]
    assert p["initiator"] == "anchor"


@pytest.mark.parametrize(
    ("state", "history", "session"),
    [
        ("REJ", "Sr", "rejected"),
        ("S0", "S", "attempt"),
        ("SF", "ShADadFf", "established"),
        ("OTH", "Dd", "established"),
        ("RSTRH", "Hr", "attempt"),
    ],
)
def test_zeek_conn_state(tmp_path: Path, state: str, history: str, session: str) -> None:
    w = World()
    flags = {"REJ": SYN, "S0": SYN, "SF": SYN | ACK | PSH | FIN, "OTH": ACK | PSH, "RSTRH": 0}[state]
    rev = {"REJ": RST | ACK, "S0": 0, "SF": SYN | ACK | PSH | FIN, "OTH": ACK | PSH, "RSTRH": SYN | ACK | RST}[state]
    w.row(
        day(1),
        "192.168.1.107",
        SEED,
        65164,
        5888,
        6,
        flags,
        2,
        104,
        conn_state=state,
        history=history,
        rev_packets=2,
        rev_bytes=80,
        rev_tcp_flags=rev,
    )
    p = pairs_of(tmp_path, w, [SEED])["192.168.1.107"]
    assert p["session"] == session
    assert p["initiator"] == "peer"  # Zeek's originator
    if state == "REJ":
        assert p["rejected_flows"] == 1


def test_udp_both_ways_is_not_a_tcp_session(tmp_path: Path) -> None:
    w = World()
    w.udp(SEED, "9.9.9.9", 53, day(1))
    p = pairs_of(tmp_path, w, [SEED])["9.9.9.9"]
    assert p["session"] == "bidirectional" and not p["established"]
