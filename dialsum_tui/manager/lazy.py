"""Provides the lazy public surface of the manager's packages (PEP 562): a package's ``__init__``
names what it exports and where each name lives, and the defining module is imported on first use,
so importing one module of a package (``runs.models`` for the TUI's first frame) does not import the
rest of it (pydantic, psutil, NVML…)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``name`` → ``getattr(import_module(exports[name]), name)``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
