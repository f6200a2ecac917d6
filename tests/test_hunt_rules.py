"""The hunt's rules on hand-made tables, no store: each rule against an independent oracle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flowpivot.hunt.rules import (
    HostStats,
    PairStats,
    Population,
    SeedActivity,
    Series,
    classify_series,
    components,
    holm,
    hypergeom_sf,
    noise_verdict,
    per_record_mean,
    seed_enrichment,
    seed_status,
    small_client,
    substance,
)

# ----- enrichment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "population", "targets", "draws"), [(2, 10, 3, 3), (0, 8, 2, 5), (3, 40, 6, 9), (5, 30, 5, 5)]
)
def test_hypergeometric_tail_equals_counting(k: int, population: int, targets: int, draws: int) -> None:
    want = sum(
        math.comb(targets, i) * math.comb(population - targets, draws - i) for i in range(k, min(targets, draws) + 1)
    ) / math.comb(population, draws)
    assert hypergeom_sf(k, population, targets, draws) == pytest.approx(want, rel=1e-9)


def test_hypergeometric_tail_of_large_draws_equals_counting() -> None:
    """Thousands of draws: the sum stops where the terms underflow; oracle: exact integers."""
    from fractions import Fraction

    for k, n, t, d in ((2, 6000, 400, 3000), (7, 20000, 900, 5000), (40, 8000, 600, 4000)):
        exact = sum(Fraction(math.comb(t, i) * math.comb(n - t, d - i)) for i in range(k, min(t, d) + 1))
        assert hypergeom_sf(k, n, t, d) == pytest.approx(float(exact / math.comb(n, d)), rel=1e-9)


def test_hypergeometric_tail_against_sampling() -> None:
    rng = np.random.default_rng(3)
    pop = np.zeros(2_000, bool)
    pop[:25] = True
    hits = np.array([pop[rng.choice(2_000, 300, replace=False)].sum() for _ in range(20_000)])
    assert hypergeom_sf(7, 2_000, 25, 300) == pytest.approx(float(np.mean(hits >= 7)), abs=0.01)


def test_an_operator_is_enriched_and_a_sweeper_is_not() -> None:
    # six seeds among 60 peers of a million hosts, eight addresses touched in the seeds' /24s
    op = seed_enrichment(6, 60, 1_000_000, 25, (768, 25, 8))
    assert op.p < 1e-6
    # a scanner sweeping the same three /24s touches every address of them: no better than chance
    sweep = seed_enrichment(25, 100_000, 1_000_000, 25, (768, 25, 768))
    assert sweep.p_local == pytest.approx(1.0) and sweep.p == pytest.approx(1.0)
    # a host reaching a third of everyone reaches a third of the seeds by chance
    crawler = seed_enrichment(9, 330_000, 1_000_000, 25)
    assert crawler.p > 0.3


def test_holm_adjusts_like_the_textbook() -> None:
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone
    assert adj == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06})


def _holm_by_hand(p: dict[str, float]) -> dict[str, float]:
    """Holm's adjusted p-values from the definition: the largest of min(1, (m - j) p_(j)) over
    the hosts ranked up to each (ties by name, as the engine ranks them)."""
    order = sorted(p, key=lambda k: (p[k], k))
    m = len(order)
    return {k: max(min(1.0, (m - j) * p[order[j]]) for j in range(i + 1)) for i, k in enumerate(order)}


def test_holm_on_bounds_decides_only_what_every_true_value_decides() -> None:
    """Oracle: Holm's adjustment by hand of true p-values drawn anywhere above the bounds."""
    from flowpivot.hunt.rules.enrichment import holm_bounded

    rng = np.random.default_rng(7)
    level = 0.01
    seen = {"undecided": 0, "settled": 0, "loose": 0, "unsettled": 0}
    for _ in range(600):
        m = int(rng.integers(2, 12))
        raw = {f"h{i}": float(10 ** rng.uniform(-5, 0)) for i in range(m)}
        low_keys = {k for k in raw if rng.random() < 0.4}
        exact = {k: v for k, v in raw.items() if k not in low_keys}
        lower = {k: raw[k] for k in low_keys}
        decided, adjusted, loose = holm_bounded(exact, lower, level)
        assert decided <= low_keys and loose <= set(exact)
        for _ in range(5):  # true p-values anywhere in [bound, 1]
            true = {**exact, **{k: float(rng.uniform(v, 1.0)) for k, v in lower.items()}}
            want = _holm_by_hand(true)
            assert all(want[k] > level for k in decided)
            if adjusted is not None:
                for k in exact:  # the same verdict, and the exact adjustment unless loose
                    assert (adjusted[k] <= level) == (want[k] <= level)
                    if k in loose:
                        assert adjusted[k] <= want[k] + 1e-12
                    else:
                        assert adjusted[k] == pytest.approx(want[k])
                assert all(adjusted[k] <= want[k] + 1e-12 for k in decided)
        if decided != low_keys:
            seen["undecided"] += 1
            assert adjusted is None
        elif adjusted is None:
            seen["unsettled"] += 1
        elif decided:
            seen["loose" if loose else "settled"] += 1
    # the draws exercise every branch; an exact host's verdict never depends on the decided hosts
    # (a member ranks before every decided host, whose adjusted bound already exceeds the level)
    assert seen["undecided"] and seen["settled"] and seen["loose"] and not seen["unsettled"], seen


def test_enrichment_tail_grows_with_the_draws_so_a_lower_bound_of_them_bounds_p() -> None:
    """The managed-draws bound (reach.managed_bounds) gives a lower bound of p only if the tail
    grows with the draws at fixed hits; oracle: the tail by counting (math.comb)."""
    from flowpivot.hunt.rules.enrichment import managed_lower_bound

    def tail(k: int, n: int, t: int, d: int) -> float:
        return sum(math.comb(t, i) * math.comb(n - t, d - i) for i in range(k, min(t, d) + 1)) / math.comb(n, d)

    for hits, pop, seeds in ((2, 400, 12), (3, 900, 40), (1, 260, 5)):
        ps = [seed_enrichment(hits, d, pop, seeds).p_global for d in range(1, 200)]
        assert ps == sorted(ps)
        for d in (hits, 50, 199):
            assert ps[d - 1] == pytest.approx(tail(hits, pop, seeds, d), rel=1e-9)
    assert managed_lower_bound(120, 30) == 90 and managed_lower_bound(10, 30) == 0


# ----- substance ----------------------------------------------------------------------------------


def test_per_record_mean_matches_simulated_sampling() -> None:
    rng = np.random.default_rng(1)
    for n, rate in ((10, 100), (100, 100), (1000, 100), (20, 10)):
        k = rng.binomial(n, 1 / rate, 200_000)
        assert per_record_mean(n, rate) == pytest.approx(float(k[k > 0].mean()), rel=0.02)
    assert per_record_mean(37, 1) == 37


def _pair(**kw: object) -> PairStats:
    base: dict[str, object] = dict(anchor="s", peer="p", established=True, session="established", initiator="peer")
    base.update(kw)
    return PairStats(**base)  # type: ignore[arg-type]


def test_substance_unsampled_sampled_and_mixed() -> None:
    # unsampled: a banner grab of 7 packets per connection is a check, a 400-packet shell is not
    assert substance(_pair(a_flows=3, p_flows=3, a_packets=12, p_packets=9, conns=3), 20).kind == "small"
    assert substance(_pair(a_flows=1, p_flows=1, a_packets=250, p_packets=150, conns=1), 20).kind == "substantial"
    # 1:100: single-packet records cannot size a connection below 100 packets
    assert (
        substance(_pair(a_flows=5, p_flows=5, a_packets=5, p_packets=5, conns=5, max_sampling_rate=100), 20).kind
        == "unresolved"
    )
    # 1:100: 3 sampled packets per record is more than a 100-packet connection leaves (1.58)
    big = substance(_pair(a_flows=4, p_flows=4, a_packets=12, p_packets=12, conns=2, max_sampling_rate=100), 20)
    assert big.kind == "substantial"
    # 1:100: one record of two sampled packets is what 4.4 % of a 10-packet check's records hold
    rng = np.random.default_rng(2)
    k = rng.binomial(10, 0.01, 2_000_000)
    assert float(np.mean(k[k > 0] >= 2)) == pytest.approx(0.044, abs=0.004)
    one = substance(_pair(a_flows=0, p_flows=1, a_packets=0, p_packets=2, conns=1, max_sampling_rate=100), 20)
    assert one.kind == "unresolved"
    # 1:1000: one connection seen in six records outlasted the exporter's timeouts
    long = substance(_pair(a_flows=6, p_flows=5, a_packets=6, p_packets=5, conns=1, max_sampling_rate=1000), 20)
    assert long.kind == "substantial" and "records per connection" in long.why
    # 1:10 resolves 20-packet connections: one sampled packet per record is a check
    assert (
        substance(_pair(a_flows=4, p_flows=4, a_packets=4, p_packets=4, conns=4, max_sampling_rate=10), 20).kind
        == "small"
    )
    # one unsampled exporter and one at 1:100: the unsampled records are not read as sampled ones
    mixed = _pair(a_flows=4, p_flows=2, a_packets=30, p_packets=2, conns=3, max_sampling_rate=100,
                  u_flows=4, u_packets=30, u_conns=2)  # fmt: skip
    assert substance(mixed, 20).kind == "unresolved"
    assert substance(_pair(established=False, a_flows=3, a_packets=3), 20).kind == "none"


def test_small_client_rule_needs_sampling_and_a_client() -> None:
    thin = [_pair(a_flows=3, p_flows=3, a_packets=3, p_packets=3, conns=3, max_sampling_rate=1000)]
    assert small_client(thin, 2) is not None
    assert small_client([_pair(a_flows=3, p_flows=3, a_packets=3, p_packets=3, conns=3)], 2) is None  # unsampled
    assert small_client([_pair(a_flows=3, a_packets=3, conns=3, max_sampling_rate=1000, initiator="anchor")], 2) is None
    assert small_client(thin * 3, 2) is None  # three seeds: more than a victim reaches


# ----- noise ----------------------------------------------------------------------------------------


POP = Population(hosts=50_000, seeds=30, yardstick=20, level=0.01, min_specificity=0.5, min_seeds=2)


def test_operator_with_ordinary_traffic_is_not_noise() -> None:
    # manages 5 seeds in substantial sessions and browses 300 sites; its seeds' ranges hold little else it touched
    h = HostStats(degree=305, known=5, fan_out=305, fan_in=0, seeds=5, substantial=5, local=(1024, 30, 6))
    assert noise_verdict(h, POP) is None


def test_scanner_service_and_weak_evidence_are_noise() -> None:
    # reaches seeds at their share of everyone it reaches, and sweeps their ranges
    scan = HostStats(degree=20_000, known=12, fan_out=20_000, fan_in=0, seeds=12, substantial=0, local=(1024, 30, 1000))
    v = noise_verdict(scan, POP)
    assert v is not None and v.reason == "scanner" and "not above chance" in v.detail
    # an update server: the seeds open every session with it, and most of its clients are strangers
    svc = HostStats(degree=400, known=6, fan_out=0, fan_in=400, seeds=6, seed_clients=True, substantial=6, known_in=6)
    v = noise_verdict(svc, POP)
    assert v is not None and v.reason == "shared-service" and "a service others use too" in v.detail
    # the same host, but the seeds' panel: its clients are the seeds and the actor's hosts
    panel = HostStats(degree=9, known=8, fan_out=0, fan_in=9, seeds=6, seed_clients=True, substantial=6, known_in=8)
    assert noise_verdict(panel, POP) is None
    # unresolved sessions only and a broad, foreign reach: a research scanner at 1:100
    weak = HostStats(degree=900, known=10, fan_out=900, fan_in=0, seeds=10, substantial=0, local=(1024, 30, 12))
    v = noise_verdict(weak, POP)
    assert v is not None and v.reason == "scanner"
    assert noise_verdict(weak, POP, enrichment=False) is not None  # the weak rule needs no enrichment


def test_bound_verdicts_hold_for_the_full_count() -> None:
    # on a lower bound of the reach the tails only grow with the full count
    for lb, full in ((2_000, 9_000), (500, 40_000)):
        lo = noise_verdict(HostStats(degree=lb, known=3, fan_out=lb, fan_in=0, seeds=3, substantial=0, bound="x"), POP)
        hi = noise_verdict(HostStats(degree=full, known=3, fan_out=full, fan_in=0, seeds=3, substantial=0), POP)
        assert lo is not None and hi is not None and lo.reason == hi.reason


# ----- clusters -------------------------------------------------------------------------------------


def test_rotation_is_one_cluster_and_strangers_stay_apart() -> None:
    seeds = [f"s{i}" for i in range(12)]
    managed = {"m1": set(seeds[0:6]), "m2": set(seeds[3:9]), "m3": set(seeds[6:12]), "x1": {"t1", "t2"}, "x2": {"t2"}}
    provider = {"m1": 1, "m2": 1, "m3": 1, "x1": 1, "x2": 1}
    groups = sorted(sorted(m) for m, _ in components(managed, provider))
    assert groups == [["m1", "m2", "m3"], ["x1", "x2"]]
    # m1 and m3 share nothing; they are one operation only through m2
    [(ms, links)] = [c for c in components(managed, provider) if "m1" in c[0]]
    assert {ln.members for ln in links} == {("m1", "m2"), ("m2", "m3")}
    # a shared new host links, another provider never does
    hosts = {"x2": {"h"}, "m3": {"h"}}
    assert sorted(sorted(m) for m, _ in components(managed, provider, hosts)) == [["m1", "m2", "m3", "x1", "x2"]]
    provider["x1"] = provider["x2"] = 2
    assert sorted(sorted(m) for m, _ in components(managed, provider, hosts)) == [["m1", "m2", "m3"], ["x1", "x2"]]


# ----- victims and probes ---------------------------------------------------------------------------


def _series(starts_s: np.ndarray, state: str = "rejected") -> Series:
    return Series("p", "s", 6, 443, (np.asarray(starts_s) * 1000).astype(np.int64), state)


def test_a_burst_is_a_probe_and_a_retrying_implant_a_victim() -> None:
    # 2,305 attempts 14 ms apart (test1-malicious.nfdump's shape)
    probe, beacon = classify_series(_series(np.arange(2305) * 0.0143), 10, 60.0, 6)
    assert probe is not None and beacon is None and probe.kind == "retry-storm" and probe.attempts == 2305
    # a reconnect loop every 0.5-1 s for 8 minutes (the RemcosRAT log's shape)
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.choice([0.52, 0.53, 1.02], 718))
    probe, beacon = classify_series(_series(t), 10, 60.0, 6)
    assert probe is None and beacon is not None
    # a flood at 200 a second for five minutes, unanswered
    probe, _ = classify_series(_series(np.arange(60_000) * 0.005, "unanswered"), 10, 60.0, 6)
    assert probe is not None and probe.kind == "syn-flood"
    # a beacon every 10 minutes with jitter, and a burst now and then: still a victim
    t = np.arange(200) * 600.0 + rng.uniform(-30, 30, 200)
    t = np.sort(np.concatenate([t, 5000 + np.arange(40) * 0.1]))
    probe, beacon = classify_series(_series(t, "established"), 10, 60.0, 6)
    assert probe is None and beacon is not None and 540 <= beacon.interval_s <= 660


# ----- seed status ----------------------------------------------------------------------------------

H = 3_600_000


def test_dark_from_silence_or_unanswered_knocks() -> None:
    until = 1000 * H
    # answered every hour for 10 days, then silent 3 days: dark
    a = SeedActivity(flows=500, first_ms=0, last_ms=240 * H, answered_flows=240, first_answer_ms=0,
                     last_answer_ms=240 * H, answer_hours=240, any_hours=240, hours_before=240)  # fmt: skip
    assert seed_status(a, 240 * H + 72 * H)["status"] == "dark"
    assert seed_status(a, 240 * H + 2 * H)["status"] == "active"
    # thinly answered (1 hour in 20), then 30 hours of scanners knocking unanswered: dark though
    # its silence alone would not prove it
    thin = SeedActivity(flows=90, first_ms=0, last_ms=until, answered_flows=12, first_answer_ms=0,
                        last_answer_ms=until - 40 * H, answer_hours=12, any_hours=120, hours_before=40,
                        unanswered_after=60, unanswered_hours_after=30)  # fmt: skip
    s = seed_status(thin, until)
    assert s["status"] == "dark" and s["dark_chance"] < 0.01
    # only ever resets and attempts: never answered
    assert seed_status(SeedActivity(flows=700, first_ms=0, last_ms=H), until)["status"] == "unanswered"
    assert seed_status(SeedActivity(flows=0, first_ms=None, last_ms=None), until)["status"] == "unseen"


# ----- the population's sketches -------------------------------------------------------------------


def test_day_sketches_count_hosts_and_pairs_like_exact_counting(tmp_path: Path) -> None:
    """Oracle: Python sets over the same flows; HyperLogLog at 2^12 registers is within a few %."""
    import datetime as dt

    import pyarrow.parquet as pq

    from flowpivot.store.sketch import file_sketch, population

    rng = np.random.default_rng(5)
    day = 86_400_000
    n = 60_000
    src = rng.integers(0, 40_000, n).astype(np.uint32)
    dst = rng.integers(0, 9_000, n).astype(np.uint32) + 50_000
    start = (19_000 * day + rng.integers(0, 2 * day, n)).astype("datetime64[ms]")
    v6 = pa.nulls(n, pa.binary(16))
    t = pa.table({"start": pa.array(start, pa.timestamp("ms", "UTC")), "src_addr_v4": src, "src_addr_v6": v6,
                  "dst_addr_v4": dst, "dst_addr_v6": v6})  # fmt: skip
    f = tmp_path / "flows" / f"day={dt.date(2022, 1, 8)}" / "a.parquet"
    f.parent.mkdir(parents=True)
    pq.write_table(t, f)
    hosts, pairs = population(tmp_path, [f], 19_000, 19_001, day)
    assert hosts == pytest.approx(len(set(src.tolist()) | set(dst.tolist())), rel=0.05)
    assert pairs == pytest.approx(len(set(zip(src.tolist(), dst.tolist(), strict=True))), rel=0.05)
    # one day alone, and the cache gives the same answer without reading the file
    first = start.astype(np.int64) < 19_001 * day
    one, _ = population(tmp_path, [f], 19_000, 19_000, day)
    assert one == pytest.approx(len(set(src[first].tolist()) | set(dst[first].tolist())), rel=0.05)
    assert (tmp_path / "sketches").exists()
    assert file_sketch(tmp_path, f, day).hosts.keys() == {19_000, 19_001}
