"""A run: its record and state machine, the files it writes (artifact keys), its events read as
progress and metrics, its log, and its resume points and retries.
"""

from dialsum_tui.manager.runs.events import absorb, stage_events
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key, run_paths
from dialsum_tui.manager.runs.logs import LogTail, read_tail, tail_lines
from dialsum_tui.manager.runs.models import FINAL_STATES, Action, Run, RunState, can_transition, parse_gpus
from dialsum_tui.manager.runs.retry import ResumePoint, RetryPlan, plan_retry, resumable

__all__ = [
    "FINAL_STATES", "Action", "LogTail", "ResumePoint", "RetryPlan", "Run", "RunState", "absorb", "can_transition",
    "model_key", "parse_gpus", "plan_retry", "predictions_key", "read_tail", "resumable", "run_key", "run_paths",
    "stage_events", "tail_lines",
]
