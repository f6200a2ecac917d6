"""The top-level public API: every name in ``flowpivot.__all__`` resolves, docs/api.md lists
exactly those names, and the version the CLI prints is the installed one."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import flowpivot

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_every_public_name_resolves_and_nothing_else_is_exported() -> None:
    for name in flowpivot.__all__:
        assert getattr(flowpivot, name) is not None, name
    public = {n for n in dir(flowpivot) if not n.startswith("_")} - {"annotations"}
    # subpackages once imported are attributes too; those named like a public function are it
    public -= {n for n in public if type(getattr(flowpivot, n)) is types.ModuleType}
    assert public == set(flowpivot.__all__) - {"__version__"}


def test_names_shared_with_subpackages_are_the_functions() -> None:
    import flowpivot.hunt.engine  # noqa: F401  (sets flowpivot.hunt to the subpackage)
    import flowpivot.ingest.base  # noqa: F401
    from flowpivot.hunt import hunt
    from flowpivot.ingest import ingest_paths
    from flowpivot.profile import profile

    for name, func in (("hunt", hunt), ("ingest", ingest_paths), ("profile", profile)):
        obj = getattr(flowpivot, name)
        assert callable(obj), name
        assert getattr(obj, func.__name__) is func  # the module, callable as its function
    seeds_given: list[object] = []
    try:
        flowpivot.hunt("/nonexistent-store", seeds_given)
    except flowpivot.StoreError as e:  # reached the hunt function: it refused the path
        assert "does not exist" in str(e)
    else:
        raise AssertionError("the hunt did not run")


def test_the_docs_list_the_api() -> None:
    documented = set(re.findall(r"^\| `([A-Za-z_]+)`", DOCS.read_text(), re.M))
    assert documented == set(flowpivot.__all__) - {"__version__"}


def test_version() -> None:
    assert flowpivot.__version__ == version("flowpivot")
    exe = Path(sys.executable).parent / "flowpivot"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"flowpivot {flowpivot.__version__}"
