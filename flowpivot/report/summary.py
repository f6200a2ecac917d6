"""The words every format shares: the threat-report summary, evidence facts and TCP flags."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .attribution import Attribution
from .model import Cluster, Expansion, Report, Seed
from .text import clean, fmt_day, fmt_time, human_bytes, human_count

__all__ = [
    "summary_paragraphs",
    "evidence_facts",
    "tcp_flags",
    "flags_text",
    "service_text",
    "plural",
    "provider_label",
    "host_provider_label",
    "flat_items",
    "answering",
    "seed_state_text",
    "actors_text",
    "member_evidence",
    "MemberEvidence",
    "ANSWERED_RECENTLY",
]

#: A host answered "recently" when its last answer is at most this far from the window's end: the hunt
#: calls a seed dark only after at least 24 silent hours (docs/hunt.md, section 9), so a seed that
#: answered within them is still up as far as the flows can tell.
ANSWERED_RECENTLY = timedelta(hours=24)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _days(report: Report) -> str:
    d = report.days
    if d is None:
        return ""
    return f" over {plural(round(d), 'day')}" if abs(d - round(d)) < 0.05 else f" over {d:.1f} days"


def provider_label(asn: int | None, name: str | None, country: str | None) -> str:
    inner = ", ".join(x for x in (f"AS{asn}" if asn is not None else None, country) if x)
    base = name or ("unknown provider" if asn is None else f"AS{asn}")
    return f"{base} ({inner})" if inner and inner != base else base


def host_provider_label(report: Report, host: Seed | Expansion) -> str:
    """A seed's or new host's provider as people read it: the name a cluster in its AS goes by, else its
    AS name; with the AS and country."""
    return provider_label(host.asn, report.provider_name(host.asn, host.as_name), host.country)


def answering(s: Seed, window_end: datetime | None) -> bool:
    """Whether the result says the seed still answered at the end of the window: its status is
    ``active``, or (a status this module does not know) its last answer is recent. ``dark``,
    ``unanswered`` and ``unseen`` never are, whatever else the entry says."""
    if s.status == "active":
        return True
    if s.status in ("dark", "unanswered", "unseen") or s.last_answered is None or window_end is None:
        return False
    return window_end - s.last_answered <= ANSWERED_RECENTLY


def seed_state_text(s: Seed, window_end: datetime | None) -> str:
    """What the flows say about a seed's state, in words that claim no more than the result does."""
    after = s.unanswered_after or 0
    if s.status == "dark":
        if s.last_answered is None:
            return f"went dark: no flow after {fmt_time(s.last_seen)}"
        tail = f", then {plural(after, 'unanswered attempt')}" if after else ""
        return f"stopped answering at {fmt_time(s.last_answered)}{tail}"
    if s.status == "unanswered":
        tried = f" ({plural(after, 'attempt')} seen, none answered)" if after else ""
        return f"never answered in the window{tried}"
    if s.status == "unseen":
        return "not seen in the flows"
    if answering(s, window_end):
        t = s.last_answered or s.last_seen
        return "active: still answering at the end of the window" + (f" (last answer {fmt_time(t)})" if t else "")
    answer = f"; last answer {fmt_time(s.last_answered)}" if s.last_answered else ""
    return f"status {clean(s.status, 40)}{answer}; last seen {fmt_time(s.last_seen)}"


@dataclass
class MemberEvidence:
    """What one cluster member's place rests on: its established pairs with the cluster's seeds."""

    established_seeds: int | None  # None: the hunt listed none of its pairs
    flows: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    substantial_seeds: int | None
    confidence: float | None

    def text(self) -> str:
        bits = []
        if self.established_seeds is not None:
            flows = f" ({plural(self.flows, 'flow')})" if self.flows is not None else ""
            bits.append(f"established sessions with {plural(self.established_seeds, 'server')}{flows}")
        elif self.substantial_seeds is not None:
            bits.append(f"substantial sessions with {plural(self.substantial_seeds, 'server')}")
        if self.first_seen or self.last_seen:
            bits.append(f"first seen {fmt_time(self.first_seen)}, last seen {fmt_time(self.last_seen)}")
        if self.confidence is not None:
            bits.append(f"confidence {self.confidence:.2f}")
        return "; ".join(bits)


def member_evidence(report: Report, c: Cluster, ip: str) -> MemberEvidence:
    seeds = set(c.seeds)
    pairs = [p for p in report.pairs_of(ip) if p.established and p.seed in seeds]
    ev = c.member_evidence.get(ip, {})
    sub = ev.get("substantial_seeds")
    conf = ev.get("confidence")
    firsts = [p.first_seen for p in pairs if p.first_seen]
    lasts = [p.last_seen for p in pairs if p.last_seen]
    return MemberEvidence(
        established_seeds=len({p.seed for p in pairs}) if pairs else None,
        flows=sum(p.flows or 0 for p in pairs) if pairs else None,
        first_seen=min(firsts) if firsts else c.first_seen,
        last_seen=max(lasts) if lasts else c.last_seen,
        substantial_seeds=sub if isinstance(sub, int) and not isinstance(sub, bool) else None,
        confidence=float(conf) if isinstance(conf, int | float) and not isinstance(conf, bool) else None,
    )


def actors_text(names: Sequence[str]) -> str:
    return _join([clean(n, 200) or "" for n in names])


def _attribution_paragraphs(report: Report, actors: Sequence[Attribution]) -> list[str]:
    """One sentence per actor that covers only part of the hunt: which sets, clusters and new hosts."""
    out = []
    for a in actors:
        if a.complete:
            continue
        parts = [plural(len(a.seeds), "seed host")]
        clusters = [c for c in report.clusters if a.covers_cluster(c)]
        if clusters:
            parts.append(
                plural(len(clusters), "cluster") + " (" + ", ".join(f"{c.id} at {c.label}" for c in clusters) + ")"
            )
        if a.expansion:
            parts.append(plural(len(a.expansion), "new host"))
        out.append(
            f"Attributed to {clean(a.name)} ({a.sets_text()}): {_join(parts)}. The rest of this hunt rests on "
            f"seeds of other sets and is not attributed to {clean(a.name)}."
        )
    return out


def summary_paragraphs(report: Report, actors: Sequence[Attribution] = ()) -> list[str]:
    """Plain-text paragraphs written like a threat report (escape them for the target format)."""
    paras: list[str] = []
    cl = report.lead_clusters()
    lead_ids = {c.id for c in cl}
    if cl:
        parts = []
        first_verb = None
        for i, c in enumerate(cl):
            verb = "established connections with" if c.established else "exchanged traffic with"
            n_seeds = len(c.seeds)
            if i == 0:
                parts.append(
                    f"{plural(len(c.members), 'IP')} assigned to {c.label} {verb} "
                    f"{plural(n_seeds, 'seed host')}{_days(report)}"
                )
                first_verb = verb
            elif verb == first_verb:
                parts.append(f"{plural(len(c.members), 'IP')} at {c.label} with {n_seeds:,}")
            else:
                parts.append(f"{plural(len(c.members), 'IP')} at {c.label} {verb} {n_seeds:,}")
        lead_overlaps = [o for o in report.overlaps if set(o.clusters) <= lead_ids]
        for o in lead_overlaps:
            n = o.count
            hosts = "seed host was" if n == 1 else "seed hosts were"
            if len(cl) == 2 and len(lead_overlaps) == 1:
                parts.append(f"{n:,} {hosts} seen in both clusters")
            else:
                parts.append(f"{n:,} {hosts} shared by clusters {' and '.join(o.clusters)}")
        lead = "; ".join(parts) + "."
        whole = [a.name for a in actors if a.complete]
        if whole:
            lead = f"Infrastructure attributed to {actors_text(whole)}: " + lead[0].lower() + lead[1:]
        small = [c for c in report.clusters if c.id not in lead_ids]
        if small:
            lead += (
                f" {plural(len(small), 'smaller cluster')} (fewer than {report.min_members} hosts each, "
                f"{plural(sum(len(c.members) for c in small), 'host')} in all) are listed below but not summarised."
            )
        paras.append(lead)
    else:
        paras.append(
            f"No cluster of hosts was found around the {plural(len(report.seeds), 'seed host')}{_days(report)}."
        )
    paras += _attribution_paragraphs(report, actors)

    seeds = report.seeds
    if seeds:
        st = Counter(s.status for s in seeds)
        bits = []
        if st.get("active"):
            bits.append(f"{st['active']:,} still active at the end of the window")
        dark = [s for s in seeds if s.status == "dark"]
        if dark:
            answered = max((s.last_answered for s in dark if s.last_answered), default=None)
            last = max((s.last_seen for s in dark if s.last_seen), default=None)
            asns = Counter(provider_label(s.asn, report.provider_name(s.asn, s.as_name), None) for s in dark)
            where = f" at {asns.most_common(1)[0][0]}" if len(asns) == 1 else ""
            if answered:
                when = f" (none answered after {fmt_day(answered)})"
            else:
                when = f" (none seen after {fmt_day(last)})" if last else ""
            bits.append(f"{len(dark):,}{where} went dark{when}")
        if st.get("unanswered"):
            n = st["unanswered"]
            bits.append(f"{n:,} {'was' if n == 1 else 'were'} contacted but never answered")
        if st.get("unseen"):
            bits.append(f"{st['unseen']:,} never appeared in the flows")
        other = {k: v for k, v in st.items() if k not in ("active", "dark", "unanswered", "unseen")}
        bits.extend(f"{v:,} {clean(k)}" for k, v in sorted(other.items()))
        paras.append(f"Of {plural(len(seeds), 'seed host')}, " + _join(bits) + ".")

    extra = []
    if report.expansion:
        by = Counter(host_provider_label(report, e) for e in report.expansion)
        where = ", ".join(f"{n} at {p}" for p, n in by.most_common())
        extra.append(
            f"Cluster members also talked to {plural(len(report.expansion), 'host')} outside the seed list "
            f"({where}): candidate new infrastructure."
        )
    if report.victims:
        seeds_hit = {s for v in report.victims for s in v.seeds}
        states = Counter(v.state for v in report.victims if v.state)
        how = (
            " (" + ", ".join(f"{_VICTIM_STATE.get(k, clean(k, 20))} for {n:,}" for k, n in states.most_common()) + ")"
            if states
            else ""
        )
        extra.append(
            f"{plural(len(report.victims), 'host')} beaconed to {plural(len(seeds_hit), 'seed')} at regular "
            f"intervals{how}: likely victims, to be notified rather than reported."
        )
    if report.probes:
        probers = {p.ip for p in report.probes}
        extra.append(
            f"{plural(len(probers), 'host')} probed seeds in bursts ({plural(len(report.probes), 'probe')}): "
            "tool runs, listed but neither clustered nor counted as victims."
        )
    if report.near_misses_total:
        extra.append(
            f"{plural(report.near_misses_total, 'host')} came close to a cluster but fell short (near misses"
            + (f", {len(report.near_misses):,} listed" if len(report.near_misses) < report.near_misses_total else "")
            + ")."
        )
    if report.excluded:
        reasons = Counter(x.reason for x in report.excluded)
        extra.append(
            f"{plural(len(report.excluded), 'address', 'addresses')} were set aside as noise ("
            + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            + ")."
        )
    if extra:
        paras.append(" ".join(extra))
    return paras


_VICTIM_STATE = {"established": "answered", "rejected": "refused", "unanswered": "unanswered"}


def _join(bits: Sequence[str]) -> str:
    if len(bits) <= 1:
        return "".join(bits)
    return ", ".join(bits[:-1]) + " and " + bits[-1]


def service_text(sv: dict[str, Any]) -> str:
    port = sv.get("port")
    s = f"{sv.get('proto') or '?'}/{port if port is not None else '*'}"
    return f"{s} ({sv['flows']:,} flows)" if sv.get("flows") is not None else s


# ---- TCP flags: nfdump's 8-letter form "CEUAPRSF" (dots for unset), names, or an integer ----

_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
_FLAG_NAMES = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80}


def _flags_value(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v & 0xFF
    if isinstance(v, str):
        s = v.strip()
        if s.upper() in _FLAG_NAMES:
            return _FLAG_NAMES[s.upper()]
        if s.lower().startswith("0x"):
            try:
                return int(s, 16) & 0xFF
            except ValueError:
                return None
        if s and all(ch in "CEUAPRSF." for ch in s.upper()):
            out = 0
            for ch in s.upper():
                out |= _FLAG_BITS.get(ch, 0)
            return out
        return None
    if isinstance(v, list | tuple):
        out, seen = 0, False
        for x in v:
            f = _flags_value(x)
            if f is not None:
                out |= f
                seen = True
        return out if seen else None
    return None


def tcp_flags(evidence: Any) -> int | None:
    """The union of TCP flags the evidence mentions (any key containing 'flag'), or None."""
    found: int | None = None

    def walk(node: Any, depth: int) -> None:
        nonlocal found
        if depth > 3:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                if "flag" in str(k).lower():
                    f = _flags_value(v)
                    if f is not None:
                        found = (found or 0) | f
                        continue
                walk(v, depth + 1)
        elif isinstance(node, list):
            for x in node[:10000]:
                walk(x, depth + 1)

    walk(evidence, 0)
    return found


def flags_text(flags: int | None) -> str:
    """nfdump's notation (``...AP.SF``) and the names, e.g. ``...AP.SF (ACK PSH SYN FIN)``."""
    if flags is None:
        return "–"
    letters = "".join(ch if flags & bit else "." for ch, bit in _FLAG_BITS.items().__reversed__())
    names = " ".join(n for n, bit in sorted(_FLAG_NAMES.items(), key=lambda kv: -kv[1]) if flags & bit)
    return f"{letters} ({names})"


def evidence_facts(evidence: Any, limit: int = 40) -> list[tuple[str, str]]:
    """Evidence as (fact, value) text pairs, cleaned; long lists are summarised, not dumped."""
    out: list[tuple[str, str]] = []
    if evidence is None:
        return out
    if isinstance(evidence, list):
        out += [(str(i + 1), _short(item)) for i, item in enumerate(evidence[:limit])]
        if len(evidence) > limit:
            out.append(("…", f"{len(evidence) - limit} more"))
        return out
    if not isinstance(evidence, dict):
        return [("evidence", _short(evidence))]
    for k, v in list(evidence.items())[:limit]:
        if k in _SHOWN_APART and isinstance(v, dict | list):
            continue
        key = clean(str(k).replace("_", " "), 80) or "?"
        if "flag" in str(k).lower() and (flags := _flags_value(v)) is not None:
            out.append((key, flags_text(flags)))
        elif isinstance(v, list) and len(v) > 6:
            out.append((key, f"{len(v):,} entries"))
        else:
            out.append((key, _short(v)))
    return out


# Evidence keys each format shows in its own place (per member, the links between members), not as facts.
_SHOWN_APART = ("members", "links")


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, str):
        return clean(v, 300) or ""
    return clean(json.dumps(v, default=str, ensure_ascii=False), 300) or ""


def flat_items(prefix: str, d: Any, depth: int = 0) -> list[tuple[str, Any]]:
    """A parameters or provenance dict as (dotted key, value) pairs, nested dicts opened two levels deep."""
    out: list[tuple[str, Any]] = []
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            out += flat_items(key + ".", v, depth + 1)
        else:
            out.append((key, v))
    return out


def volume_text(c: Cluster) -> str:
    bits = []
    if c.flows is not None:
        bits.append(plural(c.flows, "flow"))
    if c.packets_est is not None:
        bits.append(f"~{human_count(c.packets_est)} packets")
    if c.bytes_est is not None:
        bits.append(f"~{human_bytes(c.bytes_est)}")
    return ", ".join(bits) if bits else "–"
