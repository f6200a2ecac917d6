"""Noise: the allowlist (CIDRs and ASNs with a reason) and the fan-out / specificity rule.

Why the rule looks the way it does is in docs/hunt.md ("Noise"). Two rules, in two rounds:

1. Reach (scanners and shared services): fewer than ``min_specificity`` (default one half) of the
   candidate's distinct peers in the window, over the whole store, are seeds or other candidates,
   and it has more distinct peers than the median seed. A research scanner that completes
   handshakes with everyone, a resolver, an NTP pool, a CDN edge or an update server talks to far
   more hosts than a C2 server does, and only a sliver of them are seeds.
2. Specificity over informative peers: peers that are themselves noise (scanners, shared services,
   SYN-only scanners, allowlisted hosts) say nothing, since every host on the Internet is scanned
   and uses CDNs. Of the remaining peers, at least ``min_specificity`` must be seeds or candidates.
   A peer counts as noise when its own reach says so (the engine measures the candidates' peers
   with the same reach rule), not only when it was a candidate itself.

A third rule, ``client`` (a victim whose beacon is too thinly sampled to test), reads only the
seed pairs and lives in the engine (``_small_clients``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Problem

__all__ = ["Allowlist", "read_allowlist", "noise_reason"]


@dataclass
class Allowlist:
    networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(default_factory=list)
    asns: dict[int, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    source: str | None = None

    def match(self, ip: str, asn: int | None = None) -> str | None:
        """The reason an address is allowlisted, or None."""
        a = ipaddress.ip_address(ip)
        best: tuple[int, str] | None = None
        for net, reason in self.networks:
            if a.version == net.version and a in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, f"{net}: {reason}")
        if best:
            return best[1]
        if asn is not None and asn in self.asns:
            return f"AS{asn}: {self.asns[asn]}"
        return None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.source,
            "networks": len(self.networks),
            "asns": len(self.asns),
            "problems": [p.as_dict() for p in self.problems],
        }


def read_allowlist(path: str | os.PathLike[str] | None) -> Allowlist:
    """One entry per line: a CIDR, an address or an ASN (``AS15169`` or ``15169``), then its reason.

    Separators may be whitespace, a comma or a tab; ``#`` starts a comment. A bad line is
    recorded with its line number and skipped.
    """
    out = Allowlist(source=str(path) if path else None)
    if path is None:
        return out
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"cannot read allowlist {path}: {e.strerror or e}") from e
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\s*[,\t]\s*|\s+", line, maxsplit=1)
        entry = parts[0].strip()
        reason = parts[1].strip().lstrip("#").strip() if len(parts) > 1 else ""
        if entry.lower() in ("cidr", "network", "entry", "asn"):  # a CSV header
            continue
        if not reason:
            out.problems.append(
                Problem(
                    str(path), f"line {n}", f"entry {entry!r} has no reason; write why it is not actor infrastructure"
                )
            )
            reason = "(no reason given)"
        m = re.fullmatch(r"(?:AS)?(\d{1,10})", entry, re.I)
        if m and (entry.upper().startswith("AS") or "." not in entry):
            out.asns[int(m.group(1))] = reason
            continue
        try:
            out.networks.append((ipaddress.ip_network(entry, strict=False), reason))
        except ValueError:
            out.problems.append(Problem(str(path), f"line {n}", f"not a CIDR, address or ASN: {entry!r}"))
    return out


def noise_reason(
    degree: int,
    known_peers: int,
    fan_out: int,
    fan_in: int,
    seed_degree: float,
    min_specificity: float,
    noise_peers: int | None = None,
    bound_span: str | None = None,
    bound_day: str | None = None,
    known_bound: str | None = None,
    bound_side: str | None = None,
) -> tuple[str, str] | None:
    """(reason, detail) when a candidate is noise by the rules above, else None.

    Without ``noise_peers`` only the reach rule applies (the first round, which finds the
    scanners and shared services); with it, the specificity rule too, over informative peers.
    ``bound_span`` says ``degree`` was counted over only that last part of the window: a lower
    bound of the reach, which is enough to prove the reach rule (see ``_bounded_reach``);
    ``bound_day`` and ``bound_side`` say it was one day's peers on one side instead (the address
    index's host-day table). ``known_bound="upper"``: ``known_peers`` was not counted but is at most that (every
    other seed and candidate).
    """
    if degree <= 0:
        return None
    # Once the noise among its peers is known, reach is measured without it: talking to resolvers,
    # update servers and scanners makes no host a scanner or a shared service.
    reach = degree - (noise_peers or 0)
    specificity = known_peers / reach if reach > 0 else 1.0
    if specificity < min_specificity and reach > seed_degree:
        kind = "scanner" if fan_out >= fan_in else "shared-service"
        other = f" ({noise_peers} more that are themselves noise not counted)" if noise_peers else ""
        not_noise = " that are not noise" if noise_peers is not None else ""
        if bound_span:
            where, there = (
                (f"as {bound_side or 'one side'} on {bound_day} alone", "there")
                if bound_day
                else (f"in its last {bound_span}", "there")
            )
            known = (
                f"at most {known_peers} (at most {specificity:.1%}; there are no more other seeds and candidates)"
                if known_bound == "upper"
                else f"only {known_peers} (at most {specificity:.1%})"
            )
            detail = (
                f"at least {reach} distinct peers in the window ({reach} {where}; fan-out {fan_out}, "
                f"fan-in {fan_in} {there}), of which {known} are seeds or candidates "
                f"over the whole window; a seed has {seed_degree:g} peers{not_noise} (median)"
            )
        else:
            detail = (
                f"{reach} distinct peers in the window{other} (fan-out {fan_out}, fan-in {fan_in}), of which only "
                f"{known_peers} ({specificity:.1%}) are seeds or candidates; a seed has {seed_degree:g} peers{not_noise} (median)"
            )
        return kind, detail
    if noise_peers is None:
        return None
    informative = degree - noise_peers
    if informative > 0 and known_peers / informative < min_specificity:
        return "not-specific", (
            f"{known_peers} of its {informative} distinct peers that are not themselves noise "
            f"({known_peers / informative:.1%}) are seeds or candidates; {noise_peers} more are scanners, shared services or hosts other seeds and candidates also talk to"
        )
    return None
