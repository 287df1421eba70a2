"""A run: its record and state machine, the files it writes (artifact keys), its events read as
typed records bounded by what is shown (the summary, a stage's catch-up, progress and metrics, a
score's basis), its log, and its resume points and retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.runs.events import ScoreBasis, absorb, catch_up, keep_bounded, run_summary, stage_events
    from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key, run_paths
    from dialsum_tui.manager.runs.logs import LogTail, read_tail, tail_lines
    from dialsum_tui.manager.runs.models import FINAL_STATES, Action, Run, RunState, can_transition, parse_gpus
    from dialsum_tui.manager.runs.retry import ResumePoint, RetryPlan, plan_retry, resumable

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "Action": "dialsum_tui.manager.runs.models",
    "FINAL_STATES": "dialsum_tui.manager.runs.models",
    "LogTail": "dialsum_tui.manager.runs.logs",
    "ResumePoint": "dialsum_tui.manager.runs.retry",
    "RetryPlan": "dialsum_tui.manager.runs.retry",
    "Run": "dialsum_tui.manager.runs.models",
    "RunState": "dialsum_tui.manager.runs.models",
    "ScoreBasis": "dialsum_tui.manager.runs.events",
    "absorb": "dialsum_tui.manager.runs.events",
    "can_transition": "dialsum_tui.manager.runs.models",
    "catch_up": "dialsum_tui.manager.runs.events",
    "keep_bounded": "dialsum_tui.manager.runs.events",
    "model_key": "dialsum_tui.manager.runs.identity",
    "parse_gpus": "dialsum_tui.manager.runs.models",
    "plan_retry": "dialsum_tui.manager.runs.retry",
    "predictions_key": "dialsum_tui.manager.runs.identity",
    "read_tail": "dialsum_tui.manager.runs.logs",
    "resumable": "dialsum_tui.manager.runs.retry",
    "run_key": "dialsum_tui.manager.runs.identity",
    "run_paths": "dialsum_tui.manager.runs.identity",
    "run_summary": "dialsum_tui.manager.runs.events",
    "stage_events": "dialsum_tui.manager.runs.events",
    "tail_lines": "dialsum_tui.manager.runs.logs",
}
__all__ = [
    "Action",
    "FINAL_STATES",
    "LogTail",
    "ResumePoint",
    "RetryPlan",
    "Run",
    "RunState",
    "ScoreBasis",
    "absorb",
    "can_transition",
    "catch_up",
    "keep_bounded",
    "model_key",
    "parse_gpus",
    "plan_retry",
    "predictions_key",
    "read_tail",
    "resumable",
    "run_key",
    "run_paths",
    "run_summary",
    "stage_events",
    "tail_lines",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
