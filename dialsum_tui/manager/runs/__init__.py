"""A run: its record and state machine, the files it writes (artifact keys), its events read as
typed records bounded by what is shown (the summary, a stage's catch-up, progress and metrics, a
score's basis), its log, and its resume points and retries.
"""

from dialsum_tui.manager.runs.events import ScoreBasis, absorb, catch_up, keep_bounded, run_summary, stage_events
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key, run_paths
from dialsum_tui.manager.runs.logs import LogTail, read_tail, tail_lines
from dialsum_tui.manager.runs.models import FINAL_STATES, Action, Run, RunState, can_transition, parse_gpus
from dialsum_tui.manager.runs.retry import ResumePoint, RetryPlan, plan_retry, resumable

__all__ = [
    "FINAL_STATES", "Action", "LogTail", "ResumePoint", "RetryPlan", "Run", "RunState", "ScoreBasis", "absorb",
    "can_transition", "catch_up", "keep_bounded", "model_key", "parse_gpus", "plan_retry", "predictions_key",
    "read_tail", "resumable", "run_key", "run_paths", "run_summary", "stage_events", "tail_lines",
]
