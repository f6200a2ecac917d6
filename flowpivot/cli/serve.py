"""``flowpivot serve --store DIR``: the analyst workspace, a local web app and HTTP API (docs/workspace.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from .common import err, errors_as_exit, fail, out


def read_or_make_token(path: Path | None, generate: bool) -> tuple[str | None, bool]:
    """(the token, whether it is new). ``--token-file`` that exists is read (its first line); one that
    does not is created (mode 0600) with a new token; ``--generate-token`` makes one kept nowhere."""
    if path is not None:
        if path.exists():
            tok = (path.read_text(encoding="utf-8").splitlines() or [""])[0].strip()
            if len(tok) < 16:
                raise ValueError(f"--token-file {path}: the token must be at least 16 characters")
            return tok, False
        tok = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tok + "\n")
        return tok, True
    if generate:
        return secrets.token_urlsafe(32), True
    return None, False


def serve(
    store: Annotated[Path, typer.Option("--store", "-s", help="Flow store directory.")],
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on. Beyond loopback a token is required.")
    ] = "127.0.0.1:8765",
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            help="Folder for hunts, exports and saved investigations. Default: <store>-workspace beside it.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file", help="File holding the access token (created with a new token, mode 0600, if missing)."
        ),
    ] = None,
    generate_token: Annotated[
        bool, typer.Option("--generate-token", help="Make a token for this run and print it once.")
    ] = False,
    asn_db: Annotated[
        list[Path] | None,
        typer.Option("--asn-db", help="ASN database (MMDB, ip2asn TSV, pfx2as) for owners and hunts. Repeatable."),
    ] = None,
    whois: Annotated[Path | None, typer.Option("--whois", help="RPSL whois dump: allocation chains.")] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload", min=0.001, help="Largest request body (seed uploads), in MB.")
    ] = 10.0,
    hunt_workers: Annotated[int, typer.Option("--hunt-workers", min=1, max=4, help="Hunts run at once.")] = 1,
) -> None:
    """Serve the analyst workspace: look addresses up, run hunts, save and compare investigations, export.

    Example: flowpivot serve --store demo-out/store --asn-db demo-out/scenario/asn.tsv
    """
    from ..store.check import require_store
    from ..workspace.config import Settings, default_workspace, is_loopback, parse_listen

    with errors_as_exit():
        host, port = parse_listen(listen)
        require_store(store)
        token, new = read_or_make_token(token_file, generate_token)
        dbs = list(asn_db or [])
        if not dbs and os.environ.get("FLOWPIVOT_ASN_DB"):
            dbs = [Path(p) for p in os.environ["FLOWPIVOT_ASN_DB"].split(os.pathsep) if p]
        for p in dbs + ([whois] if whois else []):
            if not p.exists():
                raise ValueError(f"{p}: no such file")
    if token is None and not is_loopback(host):
        raise fail(
            f"refusing to listen on {host}: beyond loopback every request must present a token; "
            "give --token-file FILE or --generate-token"
        )
    ws = (workspace or default_workspace(store)).resolve()
    settings = Settings(
        store=store.resolve(),
        workspace=ws,
        asn_dbs=[p.resolve() for p in dbs],
        whois=whois.resolve() if whois else None,
        token=token,
        max_upload=int(max_upload_mb * 1024 * 1024),
        hunt_workers=hunt_workers,
    )
    import uvicorn

    from ..workspace.app import create_app

    app = create_app(settings, bound_host=host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    err.print(f"workspace folder: {ws}", highlight=False, markup=False, soft_wrap=True)
    if token and (new or generate_token):
        where = f" (kept in {token_file})" if token_file else " (kept nowhere: note it now)"
        out.print(f"open {url}?token={token}{where}", highlight=False, markup=False, soft_wrap=True)
    elif token:
        out.print(f"open {url}?token=<the token in {token_file}>", highlight=False, markup=False, soft_wrap=True)
    else:
        out.print(f"open {url}", highlight=False, markup=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)


def register(app: typer.Typer) -> None:
    app.command()(serve)
