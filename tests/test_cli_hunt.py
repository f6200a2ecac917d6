"""`flowpivot hunt`: every HuntParams field is an option, NAME=FILE seeds reach the library, and the
summary reads any result, with or without the keys added later (probes, near misses, victims' state).

The library is replaced by a stand-in that records how it was called; the hunt itself is tested in
tests/test_hunt*.py.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

import flowpivot.hunt
from flowpivot.cli import app
from flowpivot.cli.hunt import print_summary, summary_lines
from flowpivot.hunt.params import PARAM_HELP, HuntParams

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "hunt_result.json"


def load() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def without_new_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """The fixture as a hunt from before the result additions wrote it."""
    old = copy.deepcopy(doc)
    for k in ("probes", "near_misses", "near_misses_total", "seed_input"):
        old.pop(k, None)
    for v in old["victims"]:
        for k in ("state", "connections", "established_flows", "rejected_flows", "unanswered_flows"):
            v.pop(k, None)
    for s in old["seeds"]:
        if s["status"] == "unanswered":
            s["status"] = "dark"
        for k in ("sets", "last_answered", "answered_flows", "unanswered_after", "last_attempt"):
            s.pop(k, None)
    for c in old["clusters"] + old["expansion"]:
        c.pop("confidence", None)
    return old


def _options() -> dict[str, Any]:
    cmd = get_command(app).commands["hunt"]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params}


def test_every_hunt_parameter_is_an_option_with_its_help() -> None:
    opts = _options()
    for f in dataclasses.fields(HuntParams):
        if f.name == "extra":
            continue
        p = opts[f.name]
        flag = "--" + f.name.replace("_", "-")
        if f.name == "use_index":
            assert p.opts == ["--use-index"] and p.secondary_opts == ["--no-index"]
        else:
            assert flag in p.opts, (f.name, p.opts)
        assert p.help and p.help.startswith(PARAM_HELP[f.name]), f.name
        assert p.default == f.default, f.name
    # the flags from before the parameters were one dataclass are all still there
    for name, flags in {
        "store": ["--store", "-s"],
        "seeds": ["--seeds"],
        "asn_db": ["--asn-db"],
        "whois": ["--whois"],
        "allowlist": ["--allowlist"],
        "output": ["--output", "-o"],
        "days": ["--days"],
        "since": ["--since"],
        "until": ["--until"],
        "hops": ["--hops"],
        "min_seeds": ["--min-seeds"],
    }.items():
        assert opts[name].opts == flags, name
    assert opts["more_seeds"].nargs == -1  # extra positional seed files
    res = CliRunner().invoke(app, ["hunt", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--probe-min-attempts" in res.output and "--no-index" in res.output


class FakeHunt:
    """Stands in for flowpivot.hunt.hunt: records its arguments, returns a fixed result."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append((args, kw))
        return copy.deepcopy(self.result)


def _new_engine(store: Any, seeds: Any, *, asn_dbs: Any = (), whois: Any = None, allowlist: Any = None,
                params: HuntParams | None = None, progress: Any = None, **kw: Any) -> dict[str, Any]:  # fmt: skip
    raise AssertionError("replaced")


def _old_engine(store: Any, seeds: Any, *, asn_dbs: Any = (), whois: Any = None, allowlist: Any = None,
                days: float = 30, since: Any = None, until: Any = None, hops: int = 1, min_seeds: int = 2,
                use_index: bool = True, progress: Any = None) -> dict[str, Any]:  # fmt: skip
    raise AssertionError("replaced")


def _patch(monkeypatch: pytest.MonkeyPatch, fake: FakeHunt, signature_of: Any) -> None:
    fake.__signature__ = inspect.signature(signature_of)  # type: ignore[attr-defined]
    monkeypatch.setattr(flowpivot.hunt, "hunt", fake)


def test_flags_become_hunt_params_and_named_seed_sets_reach_the_library(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeHunt(load())
    _patch(monkeypatch, fake, _new_engine)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("192.0.2.1\n")
    b.write_text("192.0.2.2\n")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        ["hunt", "-s", str(tmp_path), "--seeds", f"fin7={a}", "--seeds", str(b), f"other={b}",
         "--min-seeds", "3", "--alpha", "0.001", "--probe-min-attempts", "25", "--burst-span-s", "30",
         "--memory-limit", "none", "--no-index", "--since", "2024-04-01", "--threads", "2", "-o", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    [(args, kw)] = fake.calls
    assert args[1] == [f"fin7={a}", str(b), f"other={b}"]
    p = kw["params"]
    assert isinstance(p, HuntParams)
    assert (p.min_seeds, p.alpha, p.probe_min_attempts, p.burst_span_s) == (3, 0.001, 25, 30.0)
    assert p.memory_limit is None and p.use_index is False and p.since == "2024-04-01" and p.threads == 2
    assert p.hops == HuntParams().hops and p.max_near_misses == HuntParams().max_near_misses
    assert json.loads(out.read_text())["format"] == "flowpivot-hunt/1"
    assert "probes: 3" in res.output and "near misses: 41" in res.output


def test_an_engine_without_params_gets_keywords_and_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeHunt(without_new_keys(load()))
    _patch(monkeypatch, fake, _old_engine)
    seeds = tmp_path / "s.txt"
    seeds.write_text("192.0.2.1\n")
    res = CliRunner().invoke(
        app, ["hunt", "-s", str(tmp_path), "--seeds", str(seeds), "--hops", "2", "--alpha", "0.05", "--use-index"]
    )
    assert res.exit_code == 0, res.output
    [(_, kw)] = fake.calls
    assert "params" not in kw and kw["hops"] == 2 and kw["use_index"] is True and "alpha" not in kw
    assert "does not take --alpha" in " ".join(res.output.split())


def _printed(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    print_summary(doc, Console(file=buf, width=200), Path("r.json"))
    return buf.getvalue()


def test_summary_with_the_new_keys() -> None:
    doc = load()
    lines = summary_lines(doc)
    assert lines[0].startswith("window 2024-04-01T00:00:00Z .. 2024-05-01T00:00:00Z: 27 seeds")
    assert "(0 active, 24 dark, 1 unanswered, 2 unseen)" in lines[0]
    assert "seed sets: fin7-stark (21), partner (4), maltrail-fin7 (3)" in lines
    assert "victims: 4" in lines
    assert "  198.51.100.23 -> 86.104.74.100,86.104.74.106:443 established, 8,640 connections, every 300s" in lines
    assert "  203.0.113.180 -> 86.104.74.54:443 unanswered, 719 connections, every 60s" in lines
    assert "probes: 3 (1 burst, 1 syn-flood, 1 retry-storm)" in lines
    # the most attempts first
    probes = lines[lines.index("probes: 3 (1 burst, 1 syn-flood, 1 retry-storm)") + 1 :][:3]
    assert probes[0] == "  193.32.162.10 -> 86.104.73.28:3389/tcp syn-flood, unanswered, 1,800 attempts in 55 s"
    assert "near misses: 41, 3 listed (1 below-min-seeds, 1 little-evidence, 1 noise)" in lines
    assert "  5.133.78.2 below-min-seeds: established sessions with 1 seed (min_seeds 3)" in lines
    text = _printed(doc)
    assert "confidence" in text and "C1" in text and "result: r.json" in text
    # printed, the victims are a table: one row each, with its columns
    row = next(ln for ln in text.splitlines() if "203.0.113.180" in ln)
    cells = [c.strip() for c in row.split("│")]
    assert cells[:5] == ["203.0.113.180", "86.104.74.54:443", "unanswered", "719", "60 s"]
    assert "victim" in text and "connections" in text


def test_summary_without_the_new_keys() -> None:
    old = without_new_keys(load())
    lines = summary_lines(old)
    assert "(0 active, 25 dark, 0 unanswered, 2 unseen)" in lines[0]
    assert "  198.51.100.23 -> 86.104.74.100,86.104.74.106:443 every 300s" in lines
    assert not any(ln.startswith(("probes", "near misses", "seed sets")) for ln in lines)
    text = _printed(old)
    assert "C1" in text and "confidence" not in text
    # and a result that lost most of its keys still prints
    assert summary_lines({"format": "flowpivot-hunt/1"})[0].startswith("window ? .. ?: 0 seeds")
    _printed({"format": "flowpivot-hunt/1", "clusters": [{"id": "C9"}], "victims": [{"ip": "192.0.2.1"}]})


def test_summary_values_are_not_markup() -> None:
    doc = load()
    doc["clusters"][0]["as_name"] = "[bold red]X[/]"
    doc["probes"][0]["kind"] = "[link=http://x]y[/link]"
    text = _printed(doc)
    assert "[bold red]X[/]" in text and "[link=http://x]y[/link]" in text
