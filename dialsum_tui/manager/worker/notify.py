"""Provides the ``notify`` hook: a user command run when a run ends or stays blocked too long, when a
whole sweep ends (once, naming its best run) and when a failure streak pauses part of the queue.

The command is an argv list run without a shell, with the run's result as JSON on stdin and in
``DIALSUM_*`` environment variables, under a timeout. It runs on its own thread, so a slow webhook or
a hanging command never holds up the worker's queue loop; every failure is logged (the worker's log)
and otherwise ignored — a ping is a courtesy, never a reason for a run to fail.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dialsum_tui.manager import process
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.runs.streaks import FailurePause
from dialsum_tui.manager.runs.sweeps import SweepStatus
from dialsum_tui.manager.workspace.sections import NotifySettings

log = logging.getLogger("dialsum.worker.notify")

# Which events fire: cancelled runs do not (whoever cancelled knows), interrupted ones do (nobody does).
ENDED_EVENTS = {RunState.SUCCEEDED: "finished", RunState.FAILED: "failed", RunState.INTERRUPTED: "interrupted"}
BLOCKED_EVENT = "blocked"
SWEEP_EVENT = "sweep_ended"  # every variant of a sweep is final: one ping, with its best run
PAUSED_EVENT = "paused"  # a failure streak paused the runs that share its cause
# Placeholders replaced inside argv items (plain text replacement, so JSON braces elsewhere are left alone).
PLACEHOLDERS = ("{message}", "{event}", "{run_id}", "{nickname}", "{state}", "{rouge}")
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
MESSAGE_DETAIL_CHARS = 200  # a failure message can be a traceback line; a notification wants the gist
OUTPUT_TAIL_CHARS = 500  # of the command's stderr/stdout, quoted in the log when it fails


def rouge_text(value: Any, scale: float = 1.0) -> str:
    """ROUGE ×100 with two decimals (the competition's format); '' when there is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * scale:.2f}"
    return ""


def message_for(event: str, run: Run) -> str:
    """One line a person reads on a phone or a desktop notification."""
    head = f"run {run.id} {run.nickname}"
    if event == "finished":
        rouge = rouge_text(run.metrics.get("final"))
        return f"{head} finished" + (f": ROUGE {rouge}" if rouge else "")
    if event == "failed":
        kind = f" ({run.failure_kind})" if run.failure_kind else ""
        stage = f" in {run.failed_stage or run.stage}" if (run.failed_stage or run.stage) else ""
        first = (run.failure_message or "").strip().splitlines()[:1]
        detail = f": {first[0][:MESSAGE_DETAIL_CHARS]}" if first else ""
        return f"{head} failed{kind}{stage}{detail}"
    if event == BLOCKED_EVENT:
        return f"{head} is still waiting: {run.reason or 'held back by a guard'}"
    return f"{head} {event}" + (f": {run.reason}" if run.reason else "")


def payload_for(event: str, run: Run, workspace: Path, waited_s: float | None = None) -> dict[str, Any]:
    """What the command receives on stdin. ``text`` doubles as the body for Slack/Mattermost-style
    incoming webhooks, so ``curl --data-binary @-`` works as it is."""
    metrics = run.metrics or {}
    return {
        "event": event,
        "text": message_for(event, run),
        "run_id": run.id,
        "nickname": run.nickname,
        "state": run.state.value,
        "action": run.action.value,
        "stage": run.stage,
        "reason": run.reason,
        "failure_kind": run.failure_kind,
        "failure_message": run.failure_message,
        "failure_hint": run.failure_hint,
        "rouge": rouge_text(metrics.get("final")) or None,  # ×100, as the leaderboard shows it
        "rouge1": rouge_text(metrics.get("rouge1"), 100) or None,
        "rouge2": rouge_text(metrics.get("rouge2"), 100) or None,
        "rougeL": rouge_text(metrics.get("rougeL"), 100) or None,
        "tokenizer": metrics.get("tokenizer"),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "waited_s": None if waited_s is None else round(waited_s),
        "workspace": str(workspace),
        "host": os.uname().nodename,
    }


def env_for(payload: Mapping[str, Any]) -> dict[str, str]:
    """The payload as ``DIALSUM_*`` variables (empty string for a missing value)."""
    names = {
        "DIALSUM_EVENT": "event", "DIALSUM_MESSAGE": "text", "DIALSUM_RUN_ID": "run_id",
        "DIALSUM_NICKNAME": "nickname", "DIALSUM_RUN_STATE": "state", "DIALSUM_STAGE": "stage",
        "DIALSUM_REASON": "reason", "DIALSUM_FAILURE_KIND": "failure_kind", "DIALSUM_ROUGE": "rouge",
        "DIALSUM_ROUGE1": "rouge1", "DIALSUM_ROUGE2": "rouge2", "DIALSUM_ROUGEL": "rougeL",
        "DIALSUM_WORKSPACE": "workspace",
    }
    return {var: "" if payload.get(key) is None else str(payload[key]) for var, key in names.items()}


def expand_argv(argv: Iterable[str], payload: Mapping[str, Any]) -> list[str]:
    """Replace the :data:`PLACEHOLDERS` in each argument, in one pass (a nickname that happens to
    contain ``{state}`` stays as it is); nothing else is interpreted."""
    values = {"{message}": payload["text"], "{event}": payload["event"], "{run_id}": payload["run_id"],
              "{nickname}": payload["nickname"], "{state}": payload["state"], "{rouge}": payload["rouge"] or ""}
    return [_PLACEHOLDER_RE.sub(lambda m: str(values[m.group(0)]), arg) for arg in argv]


def run_hook(argv: list[str], stdin: bytes, env: Mapping[str, str], timeout_s: float, what: str) -> int | None:
    """Run the command to completion (blocking; call it on a thread) and log the outcome.

    It gets its own session so that a timeout kills everything it started (``curl`` under ``sh -c``
    too), not only the direct child. Returns the exit status, or None when it could not start or
    was killed at the timeout.
    """
    try:
        done = process.run_command(argv, env=env, timeout=timeout_s, stdin=stdin)
    except OSError as err:
        log.warning("notify (%s): cannot start %r: %s; fix notify.command in settings.yaml", what, argv[0], err)
        return None
    except process.CommandTimeout:
        log.warning("notify (%s): %r still running after %.0f s; killed it (notify.timeout_s)",
                    what, argv[0], timeout_s)
        return None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-OUTPUT_TAIL_CHARS:]
        log.warning("notify (%s): %r exited %d%s", what, argv[0], done.returncode, f": {tail}" if tail else "")
    else:
        log.info("notify (%s): sent with %r", what, argv[0])
    return done.returncode


def _fire(settings: NotifySettings, event: str, run: Run, workspace: Path,
          waited_s: float | None = None) -> threading.Thread | None:
    if not settings.command:
        return None
    return _send(settings, payload_for(event, run, workspace, waited_s), f"run {run.id} {event}",
                 f"notify-{run.id}-{event}")


def _send(settings: NotifySettings, payload: dict[str, Any], what: str, name: str,
          extra_env: Mapping[str, str] | None = None) -> threading.Thread:
    env = {**os.environ, **env_for(payload), **(extra_env or {})}
    argv = expand_argv(settings.command, payload)
    data = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    # A daemon thread: the worker's loop goes on at once, and a worker that stops does not wait for
    # a hook (the hook's own session keeps it alive; its timeout no longer applies then).
    thread = threading.Thread(target=run_hook, args=(argv, data, env, settings.timeout_s, what), name=name, daemon=True)
    thread.start()
    return thread


def notify_run_ended(settings: NotifySettings, run: Run, workspace: Path) -> threading.Thread | None:
    """Ping for a run that just reached a final state (not for a cancelled one). Never blocks or raises.

    Args:
        settings: the workspace's ``notify`` settings; nothing happens while ``command`` is empty.
        run: the run as stored *after* its final transition (state, failure, metrics).
        workspace: the workspace root, passed on in the payload.

    Returns:
        The thread running the command (tests join it), or None when nothing was sent.
    """
    event = ENDED_EVENTS.get(run.state)
    if event is None:
        return None
    try:
        return _fire(settings, event, run, workspace)
    except Exception:  # the worker's loop must survive a bug here
        log.exception("notify (run %d %s): could not send", run.id, event)
        return None


def notify_blocked(settings: NotifySettings, run: Run, workspace: Path, waited_s: float) -> threading.Thread | None:
    """Ping once for a run a guard has held back for ``waited_s`` (see :class:`BlockedWatch`)."""
    try:
        return _fire(settings, BLOCKED_EVENT, run, workspace, waited_s)
    except Exception:
        log.exception("notify (run %d blocked): could not send", run.id)
        return None


class BlockedWatch:
    """Decides which waiting runs have been held back by a guard for too long: once per run.

    A waiting spell starts the first time a guard (GPU, disk) refuses the run and lasts while the run
    stays ``waiting``; leaving that state (started, cancelled) ends it. Waits the user chose (a paused
    queue, ``--after``) or normal queueing behind our own running run start no spell, because the
    worker reports only guard refusals through :meth:`held_back`. Kept in memory: a restarted
    worker starts counting again.
    """

    def __init__(self, after_s: float):
        self.after_s = after_s
        self._since: dict[int, float] = {}
        self._pinged: set[int] = set()

    def held_back(self, run_id: int, now: float | None = None) -> None:
        """A guard refused ``run_id`` in this pass."""
        self._since.setdefault(run_id, time.monotonic() if now is None else now)

    def due(self, runs: Iterable[Run], now: float | None = None) -> list[tuple[Run, float]]:
        """The runs to ping now, with how long each has waited; each run is returned at most once."""
        now = time.monotonic() if now is None else now
        waiting = {r.id: r for r in runs if r.state is RunState.WAITING}
        for run_id in [rid for rid in self._since if rid not in waiting]:
            del self._since[run_id]  # the spell ended
        out = []
        for run_id, since in self._since.items():
            if run_id not in self._pinged and now - since >= self.after_s:
                self._pinged.add(run_id)
                out.append((waiting[run_id], now - since))
        return out


# --- sweeps and failure pauses -------------------------------------------------------------------


def sweep_message(status: SweepStatus) -> str:
    """``"sweep s4 bart-tiny (lr, 2 runs) ended: 2 succeeded; best bart-tiny-lr3e-3 (run 5) 94.10 mecab/competition"``."""
    ok = status.count(RunState.SUCCEEDED)
    others = [(status.count(RunState.FAILED), "failed"), (status.count(RunState.CANCELLED), "cancelled"),
              (status.count(RunState.INTERRUPTED), "interrupted")]
    counts = ", ".join([f"{ok} succeeded"] + [f"{n} {what}" for n, what in others if n])
    best = f"; best {status.best.text}" if status.best else "; no run has a dev ROUGE from its evaluate stage"
    return (f"sweep {status.id} {status.sweep.nickname} ({status.keys_text}, {status.total} runs) ended: "
            f"{counts}{best}")


def sweep_payload(status: SweepStatus, workspace: Path) -> dict[str, Any]:
    """What the command receives when a sweep ends: the run keys of :func:`payload_for` filled from the
    best run (``run_id``, ``nickname``, ROUGE; null without one) plus ``sweep`` (``SweepStatus.to_json``)."""
    best = next((run for run in status.runs if status.best and run.id == status.best.run_id), None)
    metrics = best.metrics if best is not None else {}
    return {
        "event": SWEEP_EVENT, "text": sweep_message(status),
        "run_id": best.id if best else None, "nickname": best.nickname if best else status.sweep.nickname,
        "state": "ended", "action": best.action.value if best else None, "stage": None, "reason": None,
        "failure_kind": None, "failure_message": None, "failure_hint": None,
        "rouge": rouge_text(metrics.get("final")) or None, "rouge1": rouge_text(metrics.get("rouge1"), 100) or None,
        "rouge2": rouge_text(metrics.get("rouge2"), 100) or None,
        "rougeL": rouge_text(metrics.get("rougeL"), 100) or None, "tokenizer": metrics.get("tokenizer"),
        "started_at": min((r.started_at for r in status.runs if r.started_at), default=None),
        "finished_at": max((r.finished_at for r in status.runs if r.finished_at), default=None),
        "waited_s": None, "workspace": str(workspace), "host": os.uname().nodename,
        "sweep": status.to_json(),
    }


def notify_sweep_ended(settings: NotifySettings, status: SweepStatus, workspace: Path) -> threading.Thread | None:
    """The one ping for a whole sweep (its members' own ``finished`` pings are not sent). Never raises."""
    if not settings.command:
        return None
    try:
        return _send(settings, sweep_payload(status, workspace), f"sweep {status.id} ended", f"notify-{status.id}",
                     {"DIALSUM_SWEEP": status.id})
    except Exception:
        log.exception("notify (sweep %s ended): could not send", status.id)
        return None


def pause_payload(pause: FailurePause, ended: Run, workspace: Path) -> dict[str, Any]:
    """What the command receives when a failure streak pauses runs: the last failed run's keys
    (:func:`payload_for`), ``text`` saying what is paused and how to lift it, and ``pause``."""
    return payload_for(PAUSED_EVENT, ended, workspace) | {"event": PAUSED_EVENT, "text": pause.message,
                                                          "reason": pause.reason, "pause": pause.to_json()}


def notify_paused(settings: NotifySettings, pause: FailurePause, ended: Run, workspace: Path) -> threading.Thread | None:
    """Ping once when a failure streak pauses part of the queue. Never raises."""
    if not settings.command:
        return None
    try:
        return _send(settings, pause_payload(pause, ended, workspace), f"queue paused after run {ended.id}",
                     f"notify-paused-{ended.id}")
    except Exception:
        log.exception("notify (paused after run %d): could not send", ended.id)
        return None
