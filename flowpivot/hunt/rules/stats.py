"""The per-pair table the seed pass produces, typed: what the rules read of a (seed, peer) pair."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PairStats"]


@dataclass(frozen=True)
class PairStats:
    """One (anchor, peer) pair over the window. ``a_*`` is the anchor's direction, ``p_*`` the peer's.

    ``flows`` are the exported records; ``packets`` are sampled packets as exported (multiply by
    the sampling rate for the estimate); ``conns`` the distinct (protocol, ports) connections seen.
    """

    anchor: str
    peer: str
    established: bool = False
    session: str = "one-way"
    initiator: str = "unknown"
    flows: int = 0
    a_flows: int = 0
    p_flows: int = 0
    a_packets: int = 0
    p_packets: int = 0
    a_bytes: int = 0
    p_bytes: int = 0
    conns: int = 0
    tcp_flows: int = 0
    max_sampling_rate: int = 1
    rejected_flows: int = 0
    attempt_flows: int = 0
    first_ms: int = 0
    last_ms: int = 0
    active_days: int = 0
    biflow: bool = False
    u_flows: int = 0  # of the records, those exported unsampled (1:1), their packets and connections
    u_packets: int = 0
    u_conns: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PairStats:
        names = _field_names(cls)
        kw = {k: v for k, v in row.items() if k in names and v is not None}
        if row.get("z_est") or row.get("z_rej") or row.get("z_att"):
            kw["biflow"] = True
        return cls(**kw)


_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    """The dataclass's field names, computed once per class (``fields`` is slow, and the
    expansion builds a PairStats per session row)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names
