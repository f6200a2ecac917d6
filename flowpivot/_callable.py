"""Modules that are also their own main function.

``flowpivot.hunt`` is both a subpackage and, in the public API, the hunt function; likewise
``flowpivot.ingest`` and ``flowpivot.profile``. Python sets a package's attribute to a submodule
whenever the submodule is imported, so a plain function of the same name would be replaced by the
module as soon as anything imports, say, ``flowpivot.hunt.engine``. Making the module callable
settles it: ``flowpivot.hunt(store, seeds)`` runs the hunt and ``flowpivot.hunt.engine`` is the
module, whichever was touched first.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["make_callable"]


def make_callable(module_name: str, function_name: str) -> None:
    """Make the module ``module_name`` callable as its function ``function_name``."""
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function_name)(*args, **kwargs)

    _CallableModule.__name__ = f"callable module {module_name}"
    module.__class__ = _CallableModule
