"""What the runs add up to, read-only: the results table, comparisons of runs, per-sample
predictions, the best run and the leaderboard, and the Markdown hand-off note.
"""

from dialsum_tui.manager.insights.compare import Comparison, InsightsError, compare_runs
from dialsum_tui.manager.insights.handoff import handoff_markdown
from dialsum_tui.manager.insights.leaderboard import best_runs
from dialsum_tui.manager.insights.results import ResultRow, format_results, result_rows
from dialsum_tui.manager.insights.samples import SampleSet, load_samples

__all__ = [
    "Comparison", "InsightsError", "ResultRow", "SampleSet", "best_runs", "compare_runs", "format_results",
    "handoff_markdown", "load_samples", "result_rows",
]
