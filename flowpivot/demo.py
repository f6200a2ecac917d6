"""The whole job on built-in data: simulate the FIN7 scenario, ingest it, hunt, write every report.

``flowpivot demo`` (and ``make demo``) is a thin layer over :func:`run`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoRun", "run"]


@dataclass
class DemoRun:
    out_dir: Path
    result: dict[str, Any]
    result_path: Path
    reports: dict[str, Path]
    flows: int
    bad_inputs: int
    truth: dict[str, Any] = field(default_factory=dict)
    already: int = 0  # capture files already in the store (a second run over the same folder)


def run(
    out_dir: str | Path,
    *,
    flows: int | None = None,
    sampling: int = 100,
    seed: int = 1,
    actor: str = "FIN7",
    tlp: str = "amber",
    now: dt.datetime | None = None,
    step: Callable[[str], None] | None = None,
) -> DemoRun:
    """Simulate, ingest, hunt and report into ``out_dir`` (scenario/, store/, result.json, reports)."""
    from .hunt import hunt
    from .ingest import ingest_paths
    from .report import write_reports
    from .simulate import Scenario, simulate
    from .store import Store

    say = step or (lambda _msg: None)
    out = Path(out_dir)
    scen_dir = out / "scenario"
    kwargs: dict[str, Any] = {"sampling": sampling, "seed": seed}
    if flows is not None:
        kwargs["flows"] = flows
    say(f"1/4 simulate fin7 -> {scen_dir}")
    simulate(Scenario(**kwargs), scen_dir)
    store = Store(out / "store")
    say(f"2/4 ingest -> {store.root}")
    ingested = ingest_paths(sorted((scen_dir / "exports").glob("*.pcap")), store)
    say("3/4 hunt")
    result = hunt(store, [scen_dir / "seeds.txt"], asn_dbs=[scen_dir / "asn.tsv"])
    result_path = out / "result.json"
    result_path.write_text(json.dumps(result, indent=2))
    result = json.loads(result_path.read_text())  # exactly what `flowpivot report` would read
    say("4/4 report")
    reports = write_reports(
        result,
        html=out / "report.html",
        md=out / "report.md",
        stix=out / "stix.json",
        misp=out / "misp.json",
        abuse_dir=out / "abuse",
        tlp=tlp,
        actor=actor,
        now=now,
    )
    return DemoRun(
        out_dir=out,
        result=result,
        result_path=result_path,
        reports=reports,
        flows=sum(r.records for r in ingested),
        bad_inputs=sum(r.bad for r in ingested),
        already=sum(1 for r in ingested if r.status == "already ingested"),
        truth=json.loads((scen_dir / "truth.json").read_text()),
    )
