"""nfdump files through the real nfdump binary, checked against what nfdump itself prints.

The oracle is nfdump's ``-o fmt:`` line output (a different printer from the JSON the reader
uses), parsed here with plain string handling.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
from conftest import need_tool, shared

from flowpivot.ingest import detect_format, ingest_paths
from flowpivot.ingest.base import ReadReport
from flowpivot.ingest.nfdump import read_nfdump, read_nfdump_csv
from flowpivot.schema import to_output
from flowpivot.store import Store, parse_time

NFDUMP_FILE = "stratosphere/test1-malicious.nfdump"
FLAG_LETTERS = "CEUAPRSF"
ORACLE_FMT = "fmt:%ts|%te|%sa|%da|%sp|%dp|%pr|%flg|%pkt|%byt|%ra"


def _env() -> dict[str, str]:
    return {**os.environ, "TZ": "UTC"}


def _flags(text: str) -> int:
    return sum(0x80 >> i for i, ch in enumerate(text.strip()) if ch != ".")


def _ms(text: str) -> int:
    return parse_time(text.strip().replace(" ", "T") + "Z")


def nfdump_oracle(path: Path) -> list[tuple]:
    """Each flow as nfdump's own line printer shows it."""
    res = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-q", "-N", "-6", "-o", ORACLE_FMT],
        capture_output=True,
        env=_env(),
    )  # fmt: skip  (nfdump exits 255 on a corrupt block, after printing what it could read)
    rows = []
    for line in res.stdout.decode().splitlines():
        if "|" not in line:
            continue
        ts, te, sa, da, sp, dp, pr, flg, pkt, byt, ra = (f.strip() for f in line.split("|"))
        rows.append((_ms(ts), _ms(te), sa, da, int(sp), int(dp), int(pr), _flags(flg), int(pkt), int(byt), ra))
    return rows


def _ours(table: pa.Table) -> list[tuple]:
    out = to_output(table)
    return [
        (int(r["start"].timestamp() * 1000 + 0.5), int(r["end"].timestamp() * 1000 + 0.5), r["src_addr"], r["dst_addr"],
         r["src_port"], r["dst_port"], r["protocol"], r["tcp_flags"], r["packets"], r["bytes"], r["exporter"])
        for r in out.to_pylist()
    ]  # fmt: skip


def test_real_nfdump_file_equals_what_nfdump_prints(tmp_path: Path) -> None:
    src = shared(NFDUMP_FILE)
    expected = nfdump_oracle(src)
    assert len(expected) == 4593
    store = Store(tmp_path / "store")
    [rep] = ingest_paths([src], store)
    assert (rep.status, rep.fmt, rep.records, rep.bad) == ("ingested", "nfdump", 4593, 0), rep.problems
    got = _ours(store.query())
    assert Counter(got) == Counter(expected)
    # what nfdump -E says about the exporter: v9 source id 58, no sampler
    t = to_output(store.query())
    assert set(t.column("observation_domain").to_pylist()) == {58}
    assert set(t.column("sampling_rate").to_pylist()) == {1}


def test_ingesting_the_same_file_twice_does_not_duplicate(tmp_path: Path) -> None:
    need_tool("nfdump")
    store = Store(tmp_path / "store")
    first = ingest_paths([shared(NFDUMP_FILE)], store)
    again = ingest_paths([shared(NFDUMP_FILE), shared(NFDUMP_FILE)], store)
    assert [r.status for r in first] == ["ingested"]
    assert [r.status for r in again] == ["already ingested", "already ingested"]
    assert store.stats()["flows"] == 4593


def _multi_block_file(tmp_path: Path, copies: int = 6) -> Path:
    """A real nfdump 1.7 file of several data blocks, written by nfdump from copies of the real file."""
    nfdump = need_tool("nfdump")
    d = tmp_path / "parts"
    d.mkdir()
    data = shared(NFDUMP_FILE).read_bytes()
    for i in range(copies):
        (d / f"nfcapd.20180112150{i}").write_bytes(data)
    out = tmp_path / "merged.nfdump"
    subprocess.run([nfdump, "-R", str(d), "-w", str(out)], check=True, capture_output=True, env=_env())
    return out


def _flows_before(raw: bytes, cut: int) -> int:
    """Flow records (layout 1's type 10, layout 2's type 11) that end at or before byte ``cut``,
    counted by walking the blocks and records by hand."""
    first = 276 if struct.unpack_from("<H", raw, 2)[0] == 1 else 40
    n, off = 0, first
    while off + 12 <= len(raw):
        size = struct.unpack_from("<I", raw, off + 4)[0]
        r = off + 12
        while r + 4 <= min(off + 12 + size, len(raw)):
            rt, rs = struct.unpack_from("<HH", raw, r)
            if rs < 4 or r + rs > cut:
                return n
            n += rt in (10, 11)
            r += rs
        off += 12 + size
    return n


def test_file_cut_short_while_being_written_keeps_every_whole_record(tmp_path: Path) -> None:
    merged = _multi_block_file(tmp_path)
    # nfcapd writes the appendix (and its offset in the header) only when it closes a file; a
    # writer that died leaves neither, and the last block short. nfdump itself reads the complete
    # blocks only; the reader keeps the whole records of the cut block too.
    raw = bytearray(merged.read_bytes())
    struct.pack_into("<HIQ", raw, 18, 0, 0, 0)
    cut = len(raw) * 2 // 3
    crashed = tmp_path / "nfcapd.201801121500"
    crashed.write_bytes(raw[:cut])
    keep = _flows_before(bytes(raw), cut)
    expected = nfdump_oracle(merged)[:keep]  # nfdump prints in file order
    assert len(nfdump_oracle(crashed)) < keep < 6 * 4593
    rep = ReadReport(str(crashed))
    got = _ours(pa.Table.from_batches(list(read_nfdump(crashed, rep))))
    assert Counter(got) == Counter(expected)
    assert rep.records == keep
    assert rep.problems[0].where == f"byte {cut:,}" and "cut short" in rep.problems[0].reason
    block1 = 40 + 12 + struct.unpack_from("<I", raw, 44)[0]
    assert block1 < cut < block1 + 12 + struct.unpack_from("<I", raw, block1 + 4)[0]  # the cut is in block 1
    declared = struct.unpack_from("<I", raw, block1)[0]
    lost = declared - (keep - _flows_before(bytes(raw), block1))
    assert rep.bad == rep.counters["records lost where the file is cut short"] == lost > 0


def test_truncated_file_nfdump_refuses_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    need_tool("nfdump")
    data = shared(NFDUMP_FILE).read_bytes()
    cut = tmp_path / "cut.nfdump"
    cut.write_bytes(data[: len(data) // 2])
    # nfdump refuses it whole ("Short read": its single data block ends past the end)
    assert nfdump_oracle(cut) == []
    keep = _flows_before(data, len(data) // 2)
    store = Store(tmp_path / "store")
    reps = ingest_paths([cut], store)
    assert reps[0].status == "ingested" and reps[0].records == keep > 0
    assert store.stats()["flows"] == keep
    assert "cut short at byte" in reps[0].problems[0].reason
    rep = ReadReport(str(cut))
    got = _ours(pa.Table.from_batches(list(read_nfdump(cut, rep))))
    assert Counter(got) == Counter(nfdump_oracle(shared(NFDUMP_FILE))[:keep])


def _damaged_span(raw: bytes, at: int) -> tuple[int, int]:
    """(flows before the record holding byte ``at``, flows up to the end of its block), counted by
    walking a layout-2 file's blocks and records by hand."""
    n, off = 0, 40
    while off + 12 <= len(raw):
        size = struct.unpack_from("<I", raw, off + 4)[0]
        r, end = off + 12, off + 12 + size
        if off <= at < end:
            before = n
            while r < end:
                rt, rs = struct.unpack_from("<HH", raw, r)
                if r + rs <= at:
                    before += rt == 11
                n += rt == 11
                r += rs
            return before, n
        while r < end:
            rt, rs = struct.unpack_from("<HH", raw, r)
            n += rt == 11
            r += rs
        off = end
    raise AssertionError("byte not in a block")


def test_corrupt_block_keeps_the_flows_before_it_and_the_blocks_after(tmp_path: Path) -> None:
    merged = _multi_block_file(tmp_path, copies=4)
    raw = bytearray(merged.read_bytes())
    mid = len(raw) // 2
    a, b = _damaged_span(bytes(raw), mid)
    raw[mid : mid + 2000] = b"\xff" * 2000
    bad = tmp_path / "corrupt.nfdump"
    bad.write_bytes(raw)
    clean = nfdump_oracle(merged)
    assert len(nfdump_oracle(bad)) <= a  # nfdump stops at the damage
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    # the records from the damaged one to the end of its block are lost (0xFFFF is no record
    # size: the next record cannot be found); every block after it is read
    assert b < len(clean)
    assert Counter(got) == Counter(clean[:a] + clean[b:])
    assert rep.problems[0].reason.startswith("nfdump:")
    assert any("rest of the block cannot be walked" in p.reason for p in rep.problems)


def test_nfdump_csv_saved_by_a_user(tmp_path: Path) -> None:
    nfdump = need_tool("nfdump")
    src = shared(NFDUMP_FILE)
    saved = tmp_path / "flows.csv"
    with open(saved, "wb") as fh:  # without -q: nfdump appends its summary block
        subprocess.run([nfdump, "-r", str(src), "-o", "csv"], stdout=fh, check=True, env=_env())
    assert detect_format(saved) == "nfdump-csv"
    rep = ReadReport(str(saved))
    got = to_output(pa.Table.from_batches(list(read_nfdump_csv(saved, rep))))
    assert (rep.records, rep.bad) == (4593, 0), rep.problems[:3]
    # nfdump's CSV has whole seconds; everything else matches the binary file's own printout
    expected = Counter(
        (ts // 1000, te // 1000, sa, da, sp, dp, pr, fl, pk, by)
        for ts, te, sa, da, sp, dp, pr, fl, pk, by, _ in nfdump_oracle(src)
    )
    ours = Counter(
        (int(r["start"].timestamp()), int(r["end"].timestamp()), r["src_addr"], r["dst_addr"], r["src_port"],
         r["dst_port"], r["protocol"], r["tcp_flags"], r["packets"], r["bytes"])
        for r in got.to_pylist()
    )  # fmt: skip
    assert ours == expected
    assert set(got.column("exporter").to_pylist()) == {"147.32.82.62"}


def test_nfdump_csv_with_garbage_lines(tmp_path: Path) -> None:
    nfdump = need_tool("nfdump")
    res = subprocess.run(
        [nfdump, "-r", str(shared(NFDUMP_FILE)), "-q", "-o", "csv"], capture_output=True, check=True, env=_env()
    )
    # with -q nfdump prints no header line: the reader knows nfdump 1.7's columns
    rows = res.stdout.decode().splitlines()
    assert not rows[0].startswith("ts,")
    broken = (
        rows[:10] + ["this is not a flow"] + rows[10:20] + [rows[20].replace(",147.32.", ",147.32.999.", 1)] + rows[21:]
    )
    path = tmp_path / "x.csv"
    path.write_text("\n".join(broken) + "\n")
    assert detect_format(path) == "nfdump-csv"
    rep = ReadReport(str(path))
    n = sum(b.num_rows for b in read_nfdump_csv(path, rep))
    assert rep.bad == 2
    assert [p.where for p in rep.problems] == ["line 11", "line 22"]
    assert n == len(rows) - 1


def _summary_flows(path: Path) -> int:
    """nfdump's own file summary (``-I``): the flow count nfcapd wrote when it closed the file."""
    res = subprocess.run([need_tool("nfdump"), "-r", str(path), "-I"], capture_output=True, env=_env(), check=True)
    [line] = [ln for ln in res.stdout.decode().splitlines() if ln.startswith("Flows:")]
    return int(line.split(":")[1])


def _csv_flows(path: Path) -> int:
    """How many flows ``nfdump -q -o csv`` prints (a second oracle, another printer than the reader's)."""
    res = subprocess.run([need_tool("nfdump"), "-r", str(path), "-q", "-o", "csv"], capture_output=True, env=_env())
    return sum(1 for ln in res.stdout.decode().splitlines() if ln.count(",") > 10)


def test_damaged_block_header_is_compared_with_the_files_summary(tmp_path: Path) -> None:
    """A block header whose record count lies: nfdump prints a few flows and says nothing on stderr."""
    data = bytearray(shared(NFDUMP_FILE).read_bytes())
    # layout 1 (nfdump's nffileV1.h): file header 140 bytes, stat record 136, then the first data
    # block header: NumRecords (uint32), size (uint32), id (uint16), flags (uint16)
    magic, version = struct.unpack_from("<HH", data, 0)
    assert (magic, version) == (0xA50C, 1)
    records, size, _, _ = struct.unpack_from("<IIHH", data, 276)
    assert records >= 4593 and 276 + 12 + size <= len(data)
    struct.pack_into("<I", data, 276, 10)
    damaged = tmp_path / "damaged.nfdump"
    damaged.write_bytes(data)
    in_summary, printed = _summary_flows(damaged), _csv_flows(damaged)
    assert in_summary == 4593 and 0 < printed < 10
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([damaged], store)
    assert (rep.status, rep.records) == ("ingested", printed)
    assert rep.records + rep.bad == in_summary
    [p] = rep.problems
    assert p.where == "whole file"
    assert f"counts {in_summary:,}" in p.reason and f"read {printed:,}" in p.reason
    assert store.stats()["flows"] == printed
    # the undamaged file: no such problem, and the two oracles agree with the reader
    [ok] = ingest_paths([shared(NFDUMP_FILE)], Store(tmp_path / "t"))
    assert (ok.records, ok.bad) == (_summary_flows(shared(NFDUMP_FILE)), 0) == (_csv_flows(shared(NFDUMP_FILE)), 0)


def test_an_nfdump_file_without_flows_says_so(tmp_path: Path) -> None:
    """nfdump itself writes a file of no flows (a filter that matches none): 0 flows, and why."""
    empty = tmp_path / "nfcapd.empty"
    subprocess.run(
        [need_tool("nfdump"), "-r", str(shared(NFDUMP_FILE)), "-w", str(empty), "proto icmp"],
        check=True, capture_output=True, env=_env(),
    )  # fmt: skip
    assert _summary_flows(empty) == 0
    [rep] = ingest_paths([empty], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", 0, 0)
    assert [(p.where, p.reason) for p in rep.problems] == [("whole file", "no flows: the file holds no flow records")]


def test_a_record_of_unknown_type_is_skipped_and_counted_once(tmp_path: Path) -> None:
    """nfdump skips a record whose type is damaged, says so on stderr, and reads on."""
    data = bytearray(shared(NFDUMP_FILE).read_bytes())
    # the first block's records start after its 12-byte header (offset 276 + 12): type, size (uint16)
    off, flows = 288, 0
    while flows < 100:
        rtype, size = struct.unpack_from("<HH", data, off)
        assert size > 0
        flows += rtype == 10  # nfdump 1.7's flow record (V3)
        off += size if flows < 100 else 0
    struct.pack_into("<H", data, off, 0x4D0A)
    damaged = tmp_path / "record.nfdump"
    damaged.write_bytes(data)
    in_summary, printed = _summary_flows(damaged), _csv_flows(damaged)
    assert (in_summary, printed) == (4593, 4592)
    [rep] = ingest_paths([damaged], Store(tmp_path / "s"))
    assert (rep.status, rep.records, rep.bad) == ("ingested", printed, in_summary - printed), rep.problems
    assert "unknown record type" in rep.problems[0].reason and rep.problems[1].where == "whole file"


def _small_file(tmp_path: Path, *extra: str) -> Path:
    """The first 300 flows of the real file, rewritten by nfdump 1.7 (layout 2, with an appendix)."""
    out = tmp_path / ("small" + "".join(extra) + ".nfcapd")
    nfdump = need_tool("nfdump")
    subprocess.run([nfdump, "-r", str(shared(NFDUMP_FILE)), "-c", "300", *extra, "-w", str(out)], check=True)
    return out


def _v3_record(raw: bytes | bytearray, nth: int) -> int:
    """Byte offset of the nth (1-based) V3 flow record of a layout-2 file's first block."""
    r, k = 40 + 12, 0
    while True:
        rt, rs = struct.unpack_from("<HH", raw, r)
        if rt == 11:
            k += 1
            if k == nth:
                return r
        r += rs


def test_a_record_whose_time_nfdump_does_not_print_is_dropped_with_its_number(tmp_path: Path) -> None:
    clean = _small_file(tmp_path)
    raw = bytearray(clean.read_bytes())
    # the 7th flow record's first element is EXgenericFlow (type 1: msecFirst, msecLast, ...); an
    # unknown type makes nfdump skip it ("Unknown extension") and print the record without times
    r = _v3_record(raw, 7)
    assert struct.unpack_from("<H", raw, r + 12)[0] == 1
    struct.pack_into("<H", raw, r + 12, 2049)
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    expected = nfdump_oracle(clean)
    del expected[6]
    assert Counter(got) == Counter(expected)
    assert [p.where for p in rep.problems if "missing" in p.reason] == ["record 7"]
    assert any("Unknown extension '2049'" in p.reason for p in rep.problems)


def test_a_damaged_appendix_nfdump_refuses_is_left_out(tmp_path: Path) -> None:
    clean = _small_file(tmp_path)
    raw = bytearray(clean.read_bytes())
    appendix = struct.unpack_from("<q", raw, 24)[0]
    struct.pack_into("<H", raw, appendix + 12 + 2, 0xFFFF)  # the ident record's size
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    assert nfdump_oracle(bad) == []  # nfdump refuses the whole file
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    assert Counter(got) == Counter(nfdump_oracle(clean))
    assert rep.problems[-1].where == f"byte {appendix:,}" and "without its appendix" in rep.problems[-1].reason


def test_a_block_count_that_makes_nfdump_loop_is_bounded(tmp_path: Path) -> None:
    import time

    clean = _small_file(tmp_path, "-y")  # LZ4
    raw = bytearray(clean.read_bytes())
    appendix = struct.unpack_from("<q", raw, 24)[0]
    struct.pack_into("<I", raw, appendix, 0xFFFFFFFF)  # the appendix block claims 2^32-1 records
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    # nfdump prints "Error process appendix record type" for ever (checked for 1 s here)
    with subprocess.Popen(
        [need_tool("nfdump"), "-r", str(bad), "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        time.sleep(1)
        assert proc.poll() is None
        proc.kill()
    t0 = time.monotonic()
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    assert time.monotonic() - t0 < 30
    assert Counter(got) == Counter(nfdump_oracle(clean))
    assert any(
        "without its appendix" in p.reason and "MiB of messages and was stopped" in p.reason for p in rep.problems
    )


def test_a_damaged_element_length_nfdump_stops_at_loses_that_record_only(tmp_path: Path) -> None:
    clean = _small_file(tmp_path)
    raw = bytearray(clean.read_bytes())
    r = _v3_record(raw, 7)
    e = r + 12 + struct.unpack_from("<H", raw, r + 12 + 2)[0]  # the record's second element
    struct.pack_into("<H", raw, e + 2, 0xFFFF)
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    assert len(nfdump_oracle(bad)) < 7  # nfdump stops there ("elementHeader > eor")
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    expected = nfdump_oracle(clean)
    del expected[6]
    assert Counter(got) == Counter(expected)
    damaged = [p for p in rep.problems if p.where.startswith("byte ")]
    assert [p.where for p in damaged] == [f"byte {r:,}"] and "flow record 7 is damaged" in damaged[0].reason
    assert rep.counters["damaged records left out"] == 1


def test_a_damaged_record_size_loses_the_rest_of_its_block(tmp_path: Path) -> None:
    clean = _small_file(tmp_path)
    raw = bytearray(clean.read_bytes())
    r = _v3_record(raw, 7)
    struct.pack_into("<H", raw, r + 2, 4)  # nfdump aborts: "ExpandRecord_v3() Unexpected size"
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    assert nfdump_oracle(bad) == []
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    assert Counter(got) == Counter(nfdump_oracle(clean)[:6])  # the next record cannot be found
    assert any(p.where == f"byte {r:,}" and "rest of the block" in p.reason for p in rep.problems)


def test_a_damaged_element_count_nfdump_stops_at_loses_that_record_only(tmp_path: Path) -> None:
    clean = _small_file(tmp_path)
    raw = bytearray(clean.read_bytes())
    r = _v3_record(raw, 2)
    raw[r + 5] ^= 0x04  # the high byte of the u16 numElements: 1024 elements more than the record holds
    bad = tmp_path / "bad.nfcapd"
    bad.write_bytes(raw)
    res = subprocess.run([need_tool("nfdump"), "-r", str(bad), "-q", "-o", "csv"], capture_output=True, env=_env())
    assert b"elementHeader > eor" in res.stderr  # nfdump stops there
    assert len(nfdump_oracle(bad)) < 2
    rep = ReadReport(str(bad))
    got = _ours(pa.Table.from_batches(list(read_nfdump(bad, rep))))
    expected = nfdump_oracle(clean)
    del expected[1]
    assert Counter(got) == Counter(expected)
    assert any(p.where == f"byte {r:,}" and "flow record 2 is damaged" in p.reason for p in rep.problems)
