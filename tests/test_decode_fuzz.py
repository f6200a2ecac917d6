"""Hostile input for the decoders and the pcap reader: random bytes, and mutations of real datagrams.

Properties: nothing raises; every batch has the store schema; every problem reported is counted
(malformed or pending_lost) for its exporter; a cut datagram never gives more flows than whole.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from flowpivot.decode import FlowDecoder
from flowpivot.decode.sflow import is_sflow_v5
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.pcap import read_pcap
from flowpivot.schema import STORE_SCHEMA

AKV = shared("exports/akvorado")
NETFLOW = sorted(p.name for p in AKV.glob("netflow-*.pcap"))
SFLOW = sorted(p.name for p in AKV.glob("sflow-*.pcap"))


def _payloads(names: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for n in names:
        for p in rdpcap(str(AKV / n)):
            out.append((n, bytes(p[UDP].payload)))
    return out


CORPUS = _payloads(NETFLOW + SFLOW)
TEMPLATES = [d for n, d in CORPUS if "template" in n]
DATA = [d for n, d in CORPUS if d[:2] in (b"\x00\x05", b"\x00\x09", b"\x00\x0a")]

EXAMPLES = 600
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def primed() -> FlowDecoder:
    """A decoder that has seen every template of the corpus, so mutated data meets real templates."""
    dec = FlowDecoder()
    for d in TEMPLATES:
        dec.decode(d, "192.0.2.1", 0)
    return dec


def check(dec: FlowDecoder, data: bytes) -> int:
    """Decode one datagram; check the invariants; return the flows."""
    before = dec.stats.get("192.0.2.1")
    counted = (before.malformed + before.pending_lost) if before else 0
    res = dec.decode(data, "192.0.2.1", 1)
    after = dec.stats["192.0.2.1"]
    assert len(res.problems) == after.malformed + after.pending_lost - counted
    assert not [p for p in res.problems if p.reason.startswith("undecodable")], res.problems  # a decoder bug
    if res.batch is None:
        return 0
    assert res.batch.schema.equals(STORE_SCHEMA)
    res.batch.validate(full=True)
    return res.batch.num_rows


VERSION_PREFIX = st.sampled_from([b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"])


@FUZZ
@given(prefix=VERSION_PREFIX, body=st.binary(max_size=1500))
def test_random_bytes(prefix: bytes, body: bytes) -> None:
    check(primed(), prefix + body)


@FUZZ
@given(
    version=st.sampled_from([9, 10]),
    domain=st.sampled_from([0, 1, 65536, 16777216, 17170432, 369099009]),
    sets=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 256, 257, 258, 260, 384, 1024, 1507, 2510, 65535]), st.binary(max_size=300)
        ),
        max_size=6,
    ),
)
def test_random_sets_under_valid_headers(version: int, domain: int, sets: list[tuple[int, bytes]]) -> None:
    """Well-formed headers and set framing around random set bodies: reaches template and data parsing."""
    body = b"".join(struct.pack(">HH", sid, 4 + len(b)) + b for sid, b in sets)
    if version == 9:
        data = struct.pack(">HHIIII", 9, len(sets), 1000, 1_700_000_000, 1, domain) + body
    else:
        data = struct.pack(">HHIII", 10, 16 + len(body), 1_700_000_000, 1, domain) + body
    check(primed(), data)


@FUZZ
@given(
    index=st.integers(0, len(DATA) - 1),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_real_datagrams(index: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(DATA[index])
    for pos, value in flips:
        data[pos % len(data)] = value
    check(primed(), bytes(data))


@FUZZ
@given(index=st.integers(0, len(DATA) - 1), cut=st.integers(0, 1500))
def test_truncated_real_datagrams(index: int, cut: int) -> None:
    whole = DATA[index]
    cut = cut % len(whole)
    full = check(primed(), whole)
    dec = primed()
    part = check(dec, whole[:cut])
    assert part <= full
    version = whole[1] if whole[0] == 0 else None
    if version == 10 and cut >= 4 or version == 5 and cut < 24 + 48 * struct.unpack_from(">H", whole, 2)[0]:
        assert dec.stats["192.0.2.1"].malformed >= 1


@FUZZ
@given(
    name=st.sampled_from(
        ["netflow-nfv5.pcap", "netflow-physicalinterfaces.pcap", "netflow-mpls.pcap", "sflow-data-qinq.pcap"]
    ),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 1 << 16)),
)
def test_mutated_pcap_files(
    name: str, flips: list[tuple[int, int]], cut: int | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    raw = bytearray((AKV / name).read_bytes())
    for pos, value in flips:
        raw[pos % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    path: Path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(bytes(raw))
    report = ReadReport(str(path))
    for batch in read_pcap(path, report, FlowDecoder()):
        assert batch.schema.equals(STORE_SCHEMA)


def test_corpus_is_what_the_fuzzers_think() -> None:
    assert len(NETFLOW) == 27 and len(SFLOW) == 11
    assert len(TEMPLATES) >= 10 and len(DATA) >= 20
    dec = FlowDecoder()
    for _, d in CORPUS:
        dec.decode(d, "192.0.2.1", 0)
    assert sum(is_sflow_v5(d) for _, d in CORPUS) == len(SFLOW)  # decoded since: tests/test_decode_sflow.py
    assert dec.stats["192.0.2.1"].unsupported == 0


def _both_ways(datagrams: list[tuple[bytes, str]]) -> tuple[list, list, dict, dict]:
    """Decode the same datagrams with decode_many (per-datagram walk) and decode_buffer (vectorised headers)."""
    import pyarrow as pa

    walk = primed()
    res = walk.decode_many([(d, e, 0) for d, e in datagrams])
    fast = primed()
    buf = b"".join(d for d, _ in datagrams)
    ends = np.cumsum([len(d) for d, _ in datagrams])
    names = sorted({e for _, e in datagrams})
    batches, _ = fast.decode_buffer(
        buf,
        ends - [len(d) for d, _ in datagrams],
        ends,
        np.array([names.index(e) for _, e in datagrams]),
        names,
        [0] * len(datagrams),
    )
    a = res.batch.to_pylist() if res.batch is not None else []
    b = pa.Table.from_batches(batches).to_pylist() if batches else []
    key = lambda r: str(sorted(r.items()))  # noqa: E731
    return (
        sorted(a, key=key),
        sorted(b, key=key),
        {k: v.as_dict() for k, v in walk.stats.items()},
        {k: v.as_dict() for k, v in fast.stats.items()},
    )


@settings(
    max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    picks=st.lists(
        st.tuples(st.integers(0, len(DATA) - 1), st.sampled_from(["192.0.2.1", "192.0.2.2"]), st.integers(0, 3)),
        max_size=30,
    )
)
def test_buffer_path_equals_walk(picks: list[tuple[int, str, int]]) -> None:
    """decode_buffer's NumPy header path and the per-datagram walk give the same flows and counters."""
    chosen = []
    for i, exporter, cut in picks:
        d = DATA[i]
        chosen.append((d[: len(d) - cut * 7] if cut == 3 else d, exporter))  # some cut, to mix in odd datagrams
    a, b, sa, sb = _both_ways(chosen)
    assert a == b
    assert sa == sb
