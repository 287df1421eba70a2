"""The detached worker: one per workspace, a thin loop over small parts — admission decides which run
starts (pure), launching starts a stage, following reads its events, the verdict judges how it ended
(pure), stopping acts on cancels and the disk watch, readopt repairs after a restart.

Run it as ``python -m dialsum_tui.manager.worker WORKSPACE``; the facade starts it on demand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.worker.admission import decide
    from dialsum_tui.manager.worker.health import Health, read_ailments
    from dialsum_tui.manager.worker.loop import Worker
    from dialsum_tui.manager.worker.verdict import Outcome, classify, judge

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "Health": "dialsum_tui.manager.worker.health",
    "Outcome": "dialsum_tui.manager.worker.verdict",
    "Worker": "dialsum_tui.manager.worker.loop",
    "classify": "dialsum_tui.manager.worker.verdict",
    "decide": "dialsum_tui.manager.worker.admission",
    "judge": "dialsum_tui.manager.worker.verdict",
    "read_ailments": "dialsum_tui.manager.worker.health",
}
__all__ = [
    "Health",
    "Outcome",
    "Worker",
    "classify",
    "decide",
    "judge",
    "read_ailments",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
