"""What a workspace server is given: the store, the workspace folder, the sources and its limits."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Settings",
    "PathRefused",
    "safe_name",
    "upload_name",
    "inside",
    "is_loopback",
    "default_workspace",
    "parse_listen",
]

#: A name a client may give for a file of the workspace: letters, digits, dot, dash, underscore;
#: no leading dot, at most 100 characters. Anything else is refused, never cleaned up.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class PathRefused(ValueError):
    """A client-given name that would not stay a plain file name inside the workspace folder."""


def safe_name(name: str) -> str:
    """``name`` when it is a plain file name (see ``_NAME``) without ``..``; PathRefused otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise PathRefused(f"refused file name {name!r}: use letters, digits, '.', '-' and '_' (no path)")
    return name


def upload_name(filename: str) -> str:
    """The name an uploaded file is kept under: its last path component with every character but
    letters, digits, '.', '-' and '_' made '_', no leading dot, at most 60 characters. The client's
    name is never used as a path; it only names the seed set (``FIN7 iocs.txt`` -> set
    ``FIN7_iocs``)."""
    base = re.split(r"[/\\]", filename or "")[-1]
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-")[:60]
    return clean if clean and _NAME.fullmatch(clean) and ".." not in clean else "upload.txt"


def inside(root: Path, *parts: str) -> Path:
    """``root/parts...`` for client-given ``parts``, each a :func:`safe_name`, checked once more after
    resolving symlinks to stay inside ``root``."""
    base = root.resolve()
    p = base.joinpath(*(safe_name(x) for x in parts)).resolve()
    if p != base and base not in p.parents:
        raise PathRefused(f"refused path {'/'.join(parts)!r}: outside the workspace folder")
    return p


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) -> (host, port); ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--listen {text!r}: the port is not a number") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"--listen {text!r}: the port is outside 0..65535")
    return host.strip("[]"), p


def default_workspace(store: Path) -> Path:
    """The workspace folder of a store when none is given: ``<store>-workspace`` beside it (the store
    folder itself holds only what the store writes)."""
    s = Path(store).resolve()
    return s.with_name(s.name + "-workspace")


@dataclass
class Settings:
    store: Path
    workspace: Path
    asn_dbs: list[Path] = field(default_factory=list)
    whois: Path | None = None
    #: None: no token asked (only allowed on a loopback bind)
    token: str | None = None
    #: the largest request body accepted (uploads of seeds), bytes
    max_upload: int = 10 * 1024 * 1024
    #: the token of the workspace's own forms (anti cross-site request forgery)
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: hunts run at once in the background
    hunt_workers: int = 1

    def __post_init__(self) -> None:
        self.store = Path(self.store)
        self.workspace = Path(self.workspace)
        for sub in ("hunts", "exports"):
            (self.workspace / sub).mkdir(parents=True, exist_ok=True)
