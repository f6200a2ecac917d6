"""A run over many inputs: one decoder for all pcaps, templates carried across runs, atomicity."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared

from flowpivot.ingest import expand_paths, ingest_paths
from flowpivot.schema import to_output
from flowpivot.store import Store

A = "exports/akvorado/"


def _rows(store: Store) -> list:
    return sorted(map(repr, to_output(store.query()).to_pylist()))


def test_templates_of_an_already_ingested_capture_still_decode_the_next_one(tmp_path: Path) -> None:
    template, data = shared(A + "netflow-samplingrate-template.pcap"), shared(A + "netflow-samplingrate-data.pcap")
    together = Store(tmp_path / "together")
    reps = ingest_paths([template, data], together)
    assert [r.status for r in reps] == ["ingested", "ingested"] and reps[1].records > 0

    alone = Store(tmp_path / "alone")
    [rep] = ingest_paths([data], alone)
    assert rep.records == 0 and any("wait for a template" in p.reason for p in rep.problems)

    split = Store(tmp_path / "split")
    ingest_paths([template], split)
    again = ingest_paths([template, data], split)
    assert [r.status for r in again] == ["already ingested", "ingested"]
    assert _rows(split) == _rows(together)


def test_directories_expand_recursively_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "c").mkdir(parents=True)
    for p in ("b/2", "a/c/1", "a/0", ".hidden", "a/nfcapd.current.1234", "a/nfcapd.202401010000"):
        (tmp_path / p).write_text("x")
    got = [
        (p.relative_to(tmp_path).as_posix(), explicit) for p, explicit in expand_paths([tmp_path, tmp_path / "b" / "2"])
    ]
    assert got == [("a/0", False), ("a/c/1", False), ("a/nfcapd.202401010000", False), ("b/2", False), ("b/2", True)]


def test_a_reader_failing_half_way_leaves_nothing_in_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flowpivot.ingest as ingest

    conn = shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled")
    real = ingest.READERS["zeek"]

    def breaks_after_one_batch(path, report):  # type: ignore[no-untyped-def]
        for batch in real(path, report):
            yield batch
            raise OSError("disk went away")

    monkeypatch.setitem(ingest.READERS, "zeek", breaks_after_one_batch)
    store = Store(tmp_path / "s")
    [rep] = ingest_paths([conn], store)
    assert rep.status == "failed" and "disk went away" in rep.error
    assert store.stats()["flows"] == 0 and not store.has_source(rep.key)
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file()]

    monkeypatch.setitem(ingest.READERS, "zeek", real)
    [rep] = ingest_paths([conn], store)
    assert rep.status == "ingested" and store.stats()["flows"] == 766


def test_progress_counts_every_byte_once(tmp_path: Path) -> None:
    inputs = [
        shared("stratosphere/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled"),
        shared(A + "netflow-icmp-template.pcap"),
        shared(A + "netflow-icmp-data.pcap"),
    ]
    seen: list[int] = []
    started: list[str] = []

    class Bar:
        def start_file(self, path: Path, size: int) -> None:
            started.append(path.name)

        def advance(self, n: int) -> None:
            seen.append(n)

    store = Store(tmp_path / "s")
    ingest_paths(inputs, store, progress=Bar())
    flows = store.stats()["flows"]
    assert sum(seen) == sum(p.stat().st_size for p in inputs)
    assert started == [p.name for p in inputs]
    again: list[int] = []
    ingest_paths(inputs, store, progress=again.append)
    assert sum(again) == sum(p.stat().st_size for p in inputs)
    assert store.stats()["flows"] == flows  # all three were already in the store
