"""A small, fixed run of ``bench.fuzz`` over every format: real inputs, mutated, ingested end to end.

Every mutation kind is run: none may give a traceback or a timeout, and for the kinds that keep
every good record (all but some nfdump damage, see docs/reliability.md), the rows stored must
reach the good records around the damage, measured on the clean seed (and, for export datagrams,
on the seed without the damaged packet).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED, need_tool

from bench.fuzz import KINDS, expected, make_case
from bench.fuzz_seeds import FORMATS, Seed, build_seeds, run_bytes

SEED = 12
CASES = 30

# every mutation kind: none gave a traceback or a timeout in the 10,000-case run after the fixes of
# issue 12 (docs/reliability.md)
NO_TRACEBACK = {fmt: {k for k, _w in KINDS[fmt]} for fmt in FORMATS}
# of those, the kinds that kept every good record around the damage in that run; nfdump's bit
# flips kept 99.998 % (docs/reliability.md)
KEEPS_ALL = {
    "datagram": NO_TRACEBACK["datagram"],
    "nfdump": NO_TRACEBACK["nfdump"] - {"bitflip"},
    "zeek": NO_TRACEBACK["zeek"],
    "csv": NO_TRACEBACK["csv"],
    "parquet": NO_TRACEBACK["parquet"],
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Seed]]:
    need_tool("nfdump")
    if not SHARED.exists():
        pytest.fail(f"shared data not found at {SHARED}; set FLOWPIVOT_SHARED")
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


def test_every_seed_is_a_real_input_that_ingests(seeds: dict[str, list[Seed]]) -> None:
    assert set(seeds) == set(FORMATS)
    for fmt, group in seeds.items():
        # each format has a seed the code reads today, or "good records kept" would measure nothing
        assert any(s.stored > 0 for s in group), fmt
        assert all(s.status in ("ingested", "unreadable") for s in group), [(s.name, s.status) for s in group]


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_inputs_give_no_traceback(fmt: str, seeds: dict[str, list[Seed]], tmp_path: Path) -> None:
    changed = measured = 0
    kinds = sorted(NO_TRACEBACK[fmt])
    for i in range(CASES):
        kind = kinds[i % len(kinds)]  # every kind, two or three times
        seed, case = make_case(seeds, fmt, SEED, i, only={kind})
        changed += case.data != seed.data
        out = run_bytes(case.data, seed.suffix, tmp_path)
        where = f"{fmt} case {i} (seed {seed.name}, {case.kind}: {case.detail})"
        assert out.status not in ("traceback", "timeout"), f"{where}: {out.error} {out.frames}"
        if case.kind in KEEPS_ALL[fmt]:
            exp = expected(seed, case.expect, tmp_path)
            if exp:
                measured += 1
                assert out.stored >= exp, f"{where}: {out.stored} rows stored, {exp} good records around the damage"
    assert changed >= CASES * 2 // 3  # the mutations do change the input (a few set a field to its value)
    assert measured > 0


def test_a_reader_that_raises_is_counted_as_a_traceback(
    seeds: dict[str, list[Seed]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classification itself: an exception inside a reader, which ingest turns into status
    ``failed``, is reported as a traceback with its type and the frame it came from."""
    import flowpivot.ingest as ingest

    def broken(path: Path, report: object) -> object:
        raise ZeroDivisionError("injected")

    monkeypatch.setitem(ingest.READERS, "csv", broken)
    seed = seeds["csv"][0]
    out = run_bytes(seed.data, seed.suffix, tmp_path)
    assert out.status == "traceback" and out.exc_type == "ZeroDivisionError"
    assert out.frames[-1][1] == "broken"


# The first case of each distinct failure of the 10,000-case run before the fixes of issue 12
# (seed 1; docs/reliability.md kept them as reproducers), by format.
BEFORE_THE_FIXES = {
    "datagram": [317],  # OverflowError in Store._day_name
    "nfdump": [2, 16, 128, 42, 395, 3244, 177, 1486, 2944, 5907],  # cut short, loop, NaN start, ArrowInvalid, ...
    "zeek": [108, 31, 1200, 6618],  # unraisable UnicodeDecodeError, CR LF, OverflowError, header
    "csv": [14, 635],  # unraisable UnicodeDecodeError, a header line csv cannot split
    "parquet": [34, 153, 86, 113, 8, 1558, 3740],  # OverflowError, bad page, wide int, Arrow errors
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_failures_found_before_the_fixes_are_gone(fmt: str, seeds: dict[str, list[Seed]], tmp_path: Path) -> None:
    for i in BEFORE_THE_FIXES[fmt]:
        seed, case = make_case(seeds, fmt, 1, i)
        out = run_bytes(case.data, seed.suffix, tmp_path)
        where = f"{fmt} case {i} (seed {seed.name}, {case.kind}: {case.detail})"
        assert out.status not in ("traceback", "timeout"), f"{where}: {out.error} {out.frames}"
        exp = expected(seed, case.expect, tmp_path)
        if exp and case.kind in KEEPS_ALL[fmt]:
            assert out.stored >= exp, f"{where}: {out.stored} rows stored, {exp} good records around the damage"
        elif exp:
            assert out.status == "ingested" and out.stored > 0, f"{where}: {out.status} {out.error}"
