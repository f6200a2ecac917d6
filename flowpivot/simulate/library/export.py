"""What the collectors see of a draw's sessions: each vantage (a router exporting NetFlow v9 or IPFIX at its
own sampling rate and algorithm, or a Zeek sensor) gets a share of the sessions, samples them and
writes its files; the records it exported are kept for the truth.

A session goes to the vantage that carries its responder's network (``by: responder``, as a border
router in front of a hosting provider would), its initiator's, or any (``by: session``, load
balanced links). A session of an operator whose route is asymmetric is seen in one direction only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from .. import traffic as T
from ..netflow9 import Exporter, V9Writer
from .world import DAY, SEC, World

__all__ = ["export", "Exported"]

INACTIVE_TIMEOUT_MS = 15 * SEC

Exported = dict[str, np.ndarray]  # session (global index), dir, flags, start, src, dst, vantage


def _vantage_of(s: T.Sessions, spec: list[dict[str, Any]], by: str, rng: np.random.Generator) -> np.ndarray:
    share = np.array([float(v.get("share", 1.0)) for v in spec])
    cdf = np.cumsum(share / share.sum())
    if by == "session":
        u = rng.random(len(s["a"]))
    else:
        host = s["b"] if by == "responder" else s["a"]
        u = ((host * 2654435761) % 1_000_003) / 1_000_003.0
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(spec) - 1)


def _zeek(w: World, path: Path, s: T.Sessions, fmt: str) -> int:
    from .. import zeeklog

    def text(ix: np.ndarray) -> list[str]:
        return cast(list[str], w.book.text(ix))

    return int(zeeklog.write_conn_log(s, text, path, fmt=fmt))


def export(
    w: World, out: Path, spec: dict[str, Any], s: T.Sessions, oneway: np.ndarray
) -> tuple[Exported, list[Path], list[dict[str, Any]]]:
    """Write every vantage's files under ``out``; return the exported records, the files and a summary."""
    rng = w.rng
    vantages = spec["vantages"]
    where = _vantage_of(s, vantages, spec.get("by", "responder"), rng)
    timeout = int(spec.get("active_timeout_s", 300)) * SEC
    kept: list[Exported] = []
    files: list[Path] = []
    summary: list[dict[str, Any]] = []
    for vi, v in enumerate(vantages):
        ix = np.flatnonzero(where == vi)
        sub = T.take(s, ix)
        name, fmt = v.get("name", f"vantage-{vi}"), v.get("format", "v9")
        rate = int(v.get("sampling", 1)) if fmt != "zeek" else 1
        mode = v.get("mode", "random")
        d = out / "exports" / name
        d.mkdir(parents=True, exist_ok=True)
        if fmt in ("zeek", "zeek-json"):
            # a Zeek sensor logs every session once, both directions, unsampled; on an asymmetric
            # path it sees the initiator's packets only
            for c in T.CLASSES:
                sub[f"{c}1"] = np.where(oneway[ix], 0, sub[f"{c}1"])
            path = d / ("conn.log" if fmt == "zeek" else "conn.json.log")
            n = _zeek(w, path, sub, "tsv" if fmt == "zeek" else "json")
            f = T.to_flows(sub, 1, max(timeout, int(w.t_end - w.t0) + DAY), rng)
            files.append(path)
            summary.append({"name": name, "format": fmt, "sampling": 1, "records": n, "sessions": len(ix)})
        else:
            f = T.to_flows(sub, rate, timeout, rng, mode=mode)
            drop = oneway[ix][f["session"]] & (f["dir"] == 1)  # the answers take another path
            f = T.take(f, np.flatnonzero(~drop))
            n, paths = _write_flows(w, d, f, fmt, rate, mode, vi)
            files.extend(paths)
            summary.append(
                {"name": name, "format": fmt, "sampling": rate, "mode": mode, "records": n, "sessions": len(ix)}
            )
        kept.append({
            "session": ix[f["session"]], "dir": f["dir"], "flags": f["flags"], "start": f["start"],
            "src": f["src"], "dst": f["dst"], "vantage": np.full(len(f["dir"]), vi, np.int8),
        })  # fmt: skip
    return T.concat(kept), files, summary


def _write_flows(
    w: World, d: Path, f: dict[str, np.ndarray], fmt: str, rate: int, mode: str, vi: int
) -> tuple[int, list[Path]]:
    """One pcap of export datagrams per UTC day of export time."""
    rng = w.rng
    f["exporter"] = np.zeros(len(f["dir"]), np.int64)
    f["in_if"] = np.where(f["dir"] == 0, 1, 2).astype(np.uint16)
    f["out_if"] = np.where(f["dir"] == 0, 2, 1).astype(np.uint16)
    f["export"] = f["end"] + INACTIVE_TIMEOUT_MS + rng.integers(0, SEC, len(f["dir"]))
    order = np.argsort(f["export"], kind="stable")
    f = T.take(f, order)
    exporter = Exporter(f"192.0.2.{vi + 1}", source_id=vi + 1, boot_ms=w.t0 - int(rng.integers(DAY, 3 * DAY)))
    writer: Any
    if fmt == "ipfix":
        from ..ipfix import IpfixWriter

        writer = IpfixWriter([exporter], rate, algorithm=mode)
    elif fmt == "v9":
        writer = V9Writer([exporter], rate)
    else:
        raise ValueError(f"unknown export format {fmt!r}; use v9, ipfix, zeek or zeek-json")
    v4, v6 = w.book.v4, w.book.v6
    day = (f["export"] - w.t0) // DAY
    edges = np.searchsorted(day, np.arange(int(day.max()) + 2)) if len(day) else np.zeros(1, np.int64)
    paths, total = [], 0
    for k in range(len(edges) - 1):
        part = T.take(f, np.arange(edges[k], edges[k + 1]))
        if len(part["dir"]) == 0:
            continue
        path = d / f"day-{k + 1:02d}.pcap"
        total += writer.write(path, part, v4, v6)["records"]
        paths.append(path)
    return total, paths
