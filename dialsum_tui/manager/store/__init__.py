"""The store: one SQLite database per workspace (the queue and every run's state), its schema
migrations, its health as each process sees it, and its rebuild from ``runs/`` when it is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.store.database import SCHEMA_VERSION, IllegalTransition, RunNotFound, Store, StoreTooNew
    from dialsum_tui.manager.store.integrity import StoreBroken, StoreWatch, stop_worker
    from dialsum_tui.manager.store.rebuild import Rebuilt, open_store, repair

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "IllegalTransition": "dialsum_tui.manager.store.database",
    "Rebuilt": "dialsum_tui.manager.store.rebuild",
    "RunNotFound": "dialsum_tui.manager.store.database",
    "SCHEMA_VERSION": "dialsum_tui.manager.store.database",
    "Store": "dialsum_tui.manager.store.database",
    "StoreBroken": "dialsum_tui.manager.store.integrity",
    "StoreTooNew": "dialsum_tui.manager.store.database",
    "StoreWatch": "dialsum_tui.manager.store.integrity",
    "open_store": "dialsum_tui.manager.store.rebuild",
    "repair": "dialsum_tui.manager.store.rebuild",
    "stop_worker": "dialsum_tui.manager.store.integrity",
}
__all__ = [
    "IllegalTransition",
    "Rebuilt",
    "RunNotFound",
    "SCHEMA_VERSION",
    "Store",
    "StoreBroken",
    "StoreTooNew",
    "StoreWatch",
    "open_store",
    "repair",
    "stop_worker",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
