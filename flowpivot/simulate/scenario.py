"""Scenario parameters for ``flowpivot simulate``: dataclasses, the named presets and JSON overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Provider", "ClusterSpec", "NoiseSpec", "Scenario", "PRESETS", "preset", "scenario_from_dict", "org"]


@dataclass(frozen=True)
class Provider:
    """An autonomous system that hosts part of a scenario: number, description, country, prefixes (v4 and v6)."""

    asn: int
    name: str
    country: str
    prefixes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"asn": self.asn, "name": self.name, "country": self.country}


@cache
def _orgs() -> dict[str, dict[str, Any]]:
    text = resources.files(__package__).joinpath("internet.json").read_text()
    return json.loads(text)["orgs"]


def org(key: str) -> Provider:
    """A real organisation from the simulator's address table (``internet.json``)."""
    o = _orgs()[key]
    return Provider(int(o["asn"]), o["name"], o["country"], tuple(o["v4"]) + tuple(o["v6"]))


@dataclass(frozen=True)
class ClusterSpec:
    """A group of controllers at one provider that manage some seeds."""

    provider: Provider
    members: int
    seeds: int


@dataclass(frozen=True)
class NoiseSpec:
    """Sizes of the traffic that is not the actor's. Organisation keys refer to ``internet.json``."""

    syn_scanners: int = 8
    syn_scan_targets: int = 200_000  # other hosts each SYN scanner probes over the period (scaled to --flows)
    syn_scanner_orgs: tuple[str, ...] = ("ipvolume", "mevspace", "hostbaltic")
    research_scanners: int = 12
    research_targets: int = 100_000  # other hosts the research scanners complete handshakes with (scaled to --flows)
    research_orgs: tuple[str, ...] = ("censys", "shadowserver", "shodan", "rapid7", "driftnet")
    victims: int = 40
    victim_orgs: tuple[str, ...] = ("comcast", "charter", "att", "dtag", "orange", "vodafone_de")
    beacon_interval_s: tuple[int, int] = (600, 3600)  # each victim's interval is drawn from this range
    decoys: int = 3
    decoy_seeds: int = 10
    decoy_org: str = "digitalocean"
    resolver_orgs: tuple[str, ...] = ("google", "cloudflare", "quad9", "opendns")
    ntp_orgs: tuple[str, ...] = ("hetzner", "ovh", "digitalocean")
    ntp_servers: int = 24
    update_orgs: tuple[str, ...] = ("microsoft", "akamai", "canonical", "fastly", "cloudflare", "amazon", "google")
    update_servers: int = 48
    client_orgs: tuple[str, ...] = (
        "comcast",
        "charter",
        "att",
        "dtag",
        "orange",
        "vodafone_de",
        "telefonica_br",
        "chinanet",
    )
    clients: int = 0  # 0: derived from --flows (flows / 100, between 2,000 and 200,000)
    hosting_orgs: tuple[str, ...] = ("hetzner", "ovh", "digitalocean", "amazon", "google", "cloudflare")
    web_servers: int = 3_000
    seed_provider_web_servers: int = 300  # ordinary customers of the seeds' provider, visited by clients
    ipv6_share: float = 0.15  # of background clients and sessions


def _stark() -> Provider:
    return org("stark")


@dataclass(frozen=True)
class Scenario:
    """Everything that shapes a simulated data set. Defaults are the FIN7 / Stark Industries scenario."""

    name: str = "fin7"
    seed_provider: Provider = field(default_factory=_stark)
    seeds: int = 25
    clusters: tuple[ClusterSpec, ...] = field(
        default_factory=lambda: (ClusterSpec(org("postltd"), 4, 15), ClusterSpec(org("smartape"), 3, 16))
    )
    shared_seeds: int = 12  # seeds that every cluster manages
    new_infrastructure: int = 5  # hosts at the seed provider, not seeds, that the controllers also manage
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    days: int = 30
    dark_day: int = 30  # 1-based day on which every seed goes dark
    post_days: int = 3  # days written after the last modelled day
    sampling: int = 100  # 1 in N packet sampling
    ipv6_seeds: bool = False  # seeds, controllers, new infrastructure and whatever talks to seeds use IPv6
    start: str = "2024-04-01T00:00:00Z"
    flows: int = 3_000_000  # exported flow records, approximately
    seed: int = 1  # random seed (``seeds`` is the number of seed hosts)
    active_timeout_s: int = 1800
    exporters: int = 2

    @property
    def total_days(self) -> int:
        return self.days + self.post_days

    @property
    def start_ms(self) -> int:
        dt = datetime.fromisoformat(self.start.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)

    def validate(self) -> None:
        """Raise ValueError when the counts cannot be realised."""
        if not self.clusters:
            raise ValueError("a scenario needs at least one cluster")
        if self.sampling < 1:
            raise ValueError(f"sampling must be 1 or more, not {self.sampling}")
        for c in self.clusters:
            if c.members < 1 or c.seeds < 1:
                raise ValueError(f"cluster at AS{c.provider.asn} needs at least one member and one seed")
            if c.seeds < self.shared_seeds:
                raise ValueError(
                    f"cluster at AS{c.provider.asn} has {c.seeds} seeds, fewer than shared_seeds={self.shared_seeds}"
                )
        used = self.shared_seeds + sum(c.seeds - self.shared_seeds for c in self.clusters)
        if used > self.seeds:
            raise ValueError(f"clusters need {used} distinct seeds but the scenario has only {self.seeds}")
        if len(self.clusters) > 1 and self.shared_seeds < 0:
            raise ValueError("shared_seeds cannot be negative")
        if self.noise.decoy_seeds > self.seeds:
            raise ValueError(f"decoy_seeds={self.noise.decoy_seeds} exceeds seeds={self.seeds}")
        if not 1 <= self.dark_day <= self.total_days:
            raise ValueError(f"dark_day must be within 1..{self.total_days}, not {self.dark_day}")
        if self.days < 2:
            raise ValueError("days must be 2 or more")
        if self.exporters not in (1, 2):
            raise ValueError("exporters must be 1 or 2")
        if self.active_timeout_s < 60:
            raise ValueError("active_timeout_s must be at least 60")
        if self.flows < 0:
            raise ValueError("flows cannot be negative")

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d


def _provider_from(v: Any) -> Provider:
    if isinstance(v, Provider):
        return v
    if isinstance(v, str):
        return org(v)
    if isinstance(v, dict):
        if "org" in v:
            return org(v["org"])
        return Provider(int(v["asn"]), str(v["name"]), str(v["country"]), tuple(v["prefixes"]))
    raise ValueError(f"a provider is an org key or {{asn, name, country, prefixes}}, not {v!r}")


def scenario_from_dict(d: dict[str, Any], base: Scenario | None = None) -> Scenario:
    """Override fields of ``base`` (default: FIN7) with a JSON-like dict; unknown keys are an error."""
    base = base or Scenario()
    names = {f.name for f in dataclasses.fields(Scenario)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown scenario field(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "seed_provider":
            kw[k] = _provider_from(v)
        elif k == "clusters":
            kw[k] = tuple(ClusterSpec(_provider_from(c["provider"]), int(c["members"]), int(c["seeds"])) for c in v)
        elif k == "noise":
            nnames = {f.name for f in dataclasses.fields(NoiseSpec)}
            bad = set(v) - nnames
            if bad:
                raise ValueError(f"unknown noise field(s): {', '.join(sorted(bad))}")
            nk: dict[str, Any] = {kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()}
            kw[k] = dataclasses.replace(base.noise, **nk)
        else:
            kw[k] = v
    s = dataclasses.replace(base, **kw)
    s.validate()
    return s


def load_config(path: Path, base: Scenario | None = None) -> Scenario:
    try:
        d = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a scenario config is a JSON object of Scenario fields")
    return scenario_from_dict(d, base)


#: Named scenarios. ``fin7`` follows the public reporting on FIN7 infrastructure at Stark Industries.
PRESETS: dict[str, Any] = {"fin7": Scenario}


def preset(name: str) -> Scenario:
    if name not in PRESETS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
