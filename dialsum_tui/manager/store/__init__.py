"""The store: one SQLite database per workspace (the queue and every run's state), its schema
migrations, its health as each process sees it, and its rebuild from ``runs/`` when it is lost.
"""

from dialsum_tui.manager.store.database import SCHEMA_VERSION, IllegalTransition, RunNotFound, Store, StoreTooNew
from dialsum_tui.manager.store.integrity import StoreBroken, StoreWatch, stop_worker
from dialsum_tui.manager.store.rebuild import Rebuilt, open_store, repair

__all__ = [
    "SCHEMA_VERSION", "IllegalTransition", "Rebuilt", "RunNotFound", "Store", "StoreBroken", "StoreTooNew",
    "StoreWatch", "open_store", "repair", "stop_worker",
]
