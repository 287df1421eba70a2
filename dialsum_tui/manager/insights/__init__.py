"""What the runs add up to, read-only: the results table, comparisons of runs, per-sample
predictions, the best run and the leaderboard, and the Markdown hand-off note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.insights.compare import Comparison, InsightsError, compare_runs
    from dialsum_tui.manager.insights.handoff import handoff_markdown
    from dialsum_tui.manager.insights.leaderboard import best_runs
    from dialsum_tui.manager.insights.results import ResultRow, format_results, result_rows
    from dialsum_tui.manager.insights.samples import SampleSet, load_samples

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "Comparison": "dialsum_tui.manager.insights.compare",
    "InsightsError": "dialsum_tui.manager.insights.compare",
    "ResultRow": "dialsum_tui.manager.insights.results",
    "SampleSet": "dialsum_tui.manager.insights.samples",
    "best_runs": "dialsum_tui.manager.insights.leaderboard",
    "compare_runs": "dialsum_tui.manager.insights.compare",
    "format_results": "dialsum_tui.manager.insights.results",
    "handoff_markdown": "dialsum_tui.manager.insights.handoff",
    "load_samples": "dialsum_tui.manager.insights.samples",
    "result_rows": "dialsum_tui.manager.insights.results",
}
__all__ = [
    "Comparison",
    "InsightsError",
    "ResultRow",
    "SampleSet",
    "best_runs",
    "compare_runs",
    "format_results",
    "handoff_markdown",
    "load_samples",
    "result_rows",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
