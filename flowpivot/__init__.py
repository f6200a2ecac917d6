"""flowpivot: find threat-actor infrastructure in network flow telemetry.

The public API, one import away (each name is loaded on first use, so ``import flowpivot``
stays cheap for the CLI)::

    import flowpivot as fp

    fp.ingest(["captures/", "conn.log"], fp.Store("flows"))
    result = fp.hunt("flows", ["fin7.txt"], asn_dbs=["iptoasn.mmdb"])
    fp.write_reports(result, html="out/report.html", actor="FIN7")
    print(fp.profile("flows", ["87.236.146.32"])[0]["activity"])

Everything else is reachable from its subpackage (``flowpivot.hunt``, ``flowpivot.store``,
``flowpivot.ingest``, ``flowpivot.enrich``, ``flowpivot.report``, ``flowpivot.decode``); the
names here are the ones whose signatures flowpivot keeps stable (docs/api.md).
"""

from __future__ import annotations

import importlib as _importlib
import importlib.metadata as _metadata
import typing as _typing

try:
    __version__ = _metadata.version("flowpivot")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    # store
    "Store": ("flowpivot.store", "Store"),
    "STORE_SCHEMA": ("flowpivot.schema", "STORE_SCHEMA"),
    # inputs
    "ingest": ("flowpivot.ingest", "ingest_paths"),
    "ingest_paths": ("flowpivot.ingest", "ingest_paths"),
    "FlowDecoder": ("flowpivot.decode", "FlowDecoder"),
    "Collector": ("flowpivot.collect", "Collector"),
    "TimeRange": ("flowpivot.timerange", "TimeRange"),
    # enrichment
    "Enricher": ("flowpivot.enrich", "Enricher"),
    "special_purpose": ("flowpivot.enrich.special", "special_purpose"),
    # hunt
    "hunt": ("flowpivot.hunt", "hunt"),
    "HuntParams": ("flowpivot.hunt", "HuntParams"),
    "read_seeds": ("flowpivot.hunt", "read_seeds"),
    "validate_result": ("flowpivot.hunt", "validate_result"),
    "profile": ("flowpivot.profile", "profile"),
    # sharing
    "write_reports": ("flowpivot.report", "write_reports"),
    "load_result": ("flowpivot.report", "load_result"),
    # errors
    "FlowpivotError": ("flowpivot.errors", "FlowpivotError"),
    "InputError": ("flowpivot.errors", "InputError"),
    "StoreError": ("flowpivot.errors", "StoreError"),
    "EnrichError": ("flowpivot.errors", "EnrichError"),
    "Problem": ("flowpivot.errors", "Problem"),
}

__all__ = ["__version__", *_API]


#: Public functions that share their name with the subpackage or module that holds them: the
#: module itself is the public name, made callable as the function (flowpivot/_callable.py).
_CALLABLE_MODULES = {"hunt": "flowpivot.hunt", "ingest": "flowpivot.ingest", "profile": "flowpivot.profile"}

if _typing.TYPE_CHECKING:  # what type checkers see: the functions
    from .hunt import hunt as hunt
    from .ingest import ingest_paths as ingest  # noqa: F401
    from .profile import profile as profile


def __getattr__(name: str) -> _typing.Any:
    if name in _CALLABLE_MODULES:
        value = _importlib.import_module(_CALLABLE_MODULES[name])
        globals()[name] = value
        return value
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'flowpivot' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
