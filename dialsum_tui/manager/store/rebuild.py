"""Provides the store's recovery from its run directories: a missing ``state.db`` is rebuilt from
``runs/<id>/`` (config snapshot, ``queued.json``, ``events.jsonl``, ``run.log``) instead of being
silently recreated empty; ``dialsum-tui repair`` keeps a broken one as a backup and rebuilds
(the health checks themselves are :mod:`dialsum_tui.manager.store.integrity`).

Everything a run says is on disk, so the store is a cache of the run directories plus the queue's
intent (action, GPUs, order), which :func:`write_queue_record` puts on disk at ``add``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialsum_tui.manager import process
from dialsum_tui.manager.runs.events import absorb, run_summary, stage_events
from dialsum_tui.manager.runs.identity import run_key
from dialsum_tui.manager.runs.logs import started_stages
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.runs.sweeps import Sweep
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.store.integrity import StoreBroken, broken_message, healthy
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.lock import read_lock_holder
from engine.artifacts import atomic_write_text
from engine.config import ConfigError
from engine.contract import (
    DEV_PREDICTIONS_SUFFIX,
    FINAL_MODEL_DIR,
    Artifact,
    ArtifactKind,
    EventRecord,
    Failed,
    FailureKind,
    Finished,
    RunFiles,
    Stage,
    Started,
    load_snapshot,
)

# The manager's own file in a run directory (the engine never reads it): what the queue knew at add.
QUEUE_RECORD = "queued.json"
_QUEUE_FIELDS = ("action", "gpus", "after", "config_path", "created_at", "source_run", "model_key", "predictions_key",
                 "priority", "sweep")


@dataclass
class Rebuilt:
    """What a rebuild restored, and the line that tells the user."""

    runs: list[Run] = field(default_factory=list)
    backup: Path | None = None
    paused: bool = False
    adopted: bool = False  # runs/ had directories an existing store did not know

    @property
    def note(self) -> str:
        states: dict[str, int] = {}
        for run in self.runs:
            states[run.state.value] = states.get(run.state.value, 0) + 1
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        ids = f"ids {self.runs[0].id}-{self.runs[-1].id}" if self.runs else "no runs"
        kept = f"; the broken file was kept as {self.backup}" if self.backup else ""
        paused = "; the queue is paused until you check it and run `dialsum-tui resume`" if self.paused else ""
        what = ("state.db did not know some run directories (replaced by an older copy?)" if self.adopted
                else "state.db rebuilt from runs/")
        return f"{what}: {len(self.runs)} run(s) restored ({ids}: {counts}){kept}{paused}"


# --- the database file ------------------------------------------------------------------------


# --- what a run directory says ----------------------------------------------------------------


def run_ids(ws: Workspace) -> list[int]:
    """Ids of the run directories that hold a run (a config snapshot or events); empty ones are skipped."""
    try:
        dirs = [p for p in ws.runs_dir.iterdir() if p.name.isdigit() and p.is_dir()]
    except OSError:
        return []
    return sorted(int(p.name) for p in dirs if RunFiles(p).config.exists() or RunFiles(p).events.exists())


def write_queue_record(ws: Workspace, run: Run, sweep: Sweep | None = None) -> None:
    """Put what only the queue knows (action, GPUs, order, priority, source) into ``runs/<id>/queued.json``;
    a sweep's run also gets its sweep's record (``sweep_record``: config, nickname, swept keys, its values),
    from which a rebuilt store recovers the sweep."""
    record = {name: getattr(run, name) for name in _QUEUE_FIELDS}
    record["action"] = run.action.value
    if sweep is not None:
        record["sweep_record"] = {"config_path": sweep.config_path, "nickname": sweep.nickname,
                                  "keys": list(sweep.keys), "values": sweep.variants.get(run.nickname) or {},
                                  "created_at": sweep.created_at}
    atomic_write_text(ws.run_dir(run.id) / QUEUE_RECORD, json.dumps(record, ensure_ascii=False), mode=sharing.file_mode())


def mark_cancelled(ws: Workspace, run: Run) -> None:
    """Record in ``queued.json`` that a run was cancelled before it started (no event says so)."""
    path = ws.run_dir(run.id) / QUEUE_RECORD
    record = _read_json(path)
    if record:
        atomic_write_text(path, json.dumps(record | {"cancelled": True}, ensure_ascii=False), mode=sharing.file_mode())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _queued_stages(queued: dict[str, Any]) -> tuple[str, ...] | None:
    """The stages the queue meant the run to have (queued.json's action); None when it does not say."""
    try:
        return tuple(Action(queued.get("action")).stages)
    except ValueError:
        return None


def _logged_stages(log_path: Path) -> list[str]:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return started_stages(fh)
    except OSError:
        return []


def _key_of(path: str | None, suffix: str | None = None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if suffix is None:
        return p.parent.name if p.name == FINAL_MODEL_DIR else None
    return p.name.removesuffix(suffix) if p.name.endswith(suffix) else None


def restore_run(ws: Workspace, run_id: int) -> Run:
    """The run as its directory tells it: config snapshot, queue record, events and log headers.

    A stage that started and never ended is ``running`` when its process is still alive (the next
    worker re-adopts it), else ``interrupted``; a run that never started is restored ``cancelled``
    (its queue position is gone) and says how to queue it again.
    """
    files = RunFiles(ws.run_dir(run_id))
    queued = _read_json(files.root / QUEUE_RECORD)
    try:
        config_yaml = files.config.read_text(encoding="utf-8")
    except OSError:
        config_yaml = ""
    # The bounded summary (every started, eval, artifact, failed and finished; each stage's last
    # progress and train_log): what the store keeps of a run, whatever the file's size.
    events = list(run_summary(files.events).kept)
    started = [e for e in events if isinstance(e, Started)]
    try:
        nickname = load_snapshot(config_yaml, source=f"{files.config}").model.nickname
    except ConfigError:
        nickname = next((e.nickname for e in started if e.nickname), f"run-{run_id}")
    # run.log's headers add only a stage launched that never wrote ``started``: not read (a log of
    # GBs costs nothing) once the events name every stage the queue meant the run to have.
    from_events = [e.command for e in started]
    wanted = _queued_stages(queued)
    logged = [] if wanted is not None and all(s in from_events for s in wanted) else _logged_stages(files.log)
    seen: list[str] = []
    for stage in from_events + logged:
        if stage in tuple(Stage) and stage not in seen:
            seen.append(stage)
    action = _action(queued.get("action"), seen)
    try:
        created = float(queued.get("created_at") or files.config.stat().st_mtime)
    except OSError:
        created = time.time()
    run = Run(id=run_id, nickname=nickname, config_path=str(queued.get("config_path") or files.config),
              config_yaml=config_yaml, action=action, state=RunState.CANCELLED, gpus=queued.get("gpus"),
              after=queued.get("after"), position=float(run_id), created_at=created,
              source_run=queued.get("source_run"), model_key=queued.get("model_key"),
              predictions_key=queued.get("predictions_key"), priority=int(queued.get("priority") or 0),
              sweep=queued.get("sweep"))
    _restore_keys(run, events)
    if not seen:
        if queued and not queued.get("cancelled"):  # queued and not cancelled: the queue's intent stands
            run.state, run.reason = RunState.QUEUED, f"restored from runs/{run_id}: queued, not started yet"
        else:
            run.reason = f"restored from runs/{run_id}: it had not started; `dialsum-tui retry {run_id}` queues it again"
        return run
    for stage in seen:
        run.progress, run.metrics = absorb(run.progress, run.metrics, stage_events(events, stage), stage)
    last = seen[-1]
    mine = stage_events(events, last)
    run.stage = last
    run.started_at = started[0].ts if started else created
    failed = [e for e in mine if isinstance(e, Failed)]
    finished = any(isinstance(e, Finished) for e in mine)
    if failed:
        cause = failed[-1]
        kind = FailureKind.parse(cause.kind)
        run.state = RunState.INTERRUPTED if kind is FailureKind.INTERRUPTED else RunState.FAILED
        run.failure_kind, run.failure_message = kind.value, cause.message
        run.failure_hint, run.failed_stage = cause.hint or kind.hint, last
        run.finished_at = cause.ts or None
        return run
    if finished:
        stages = list(run.stages)
        if last == stages[-1] or last not in stages:
            run.state, run.exit_code = RunState.SUCCEEDED, 0
            run.finished_at = (mine[-1].ts or None) if mine else None
        else:  # between stages: the next worker starts the next one
            run.state, run.stage = RunState.RUNNING, stages[stages.index(last) + 1]
        return run
    alive = process.find_stage(files.root)
    if alive is not None:
        run.state, run.pid, run.pid_start_time = RunState.RUNNING, alive.pid, alive.start_time
    else:
        run.state = RunState.INTERRUPTED
        run.reason = f"restored from runs/{run_id}: {last} had no verdict and its process is gone"
    return run


def _action(recorded: Any, seen: list[str]) -> Action:
    try:
        return Action(recorded)
    except ValueError:
        pass
    if not seen or seen[0] == Stage.TRAIN:
        # Without queued.json (runs of older releases) a train-only run and a pipeline stopped after
        # train look alike; pipeline is the default of `add`.
        return Action.PIPELINE if (len(seen) != 1 or not seen) else Action.TRAIN
    return Action(seen[0])


def _restore_keys(run: Run, events: list[EventRecord]) -> None:
    """Runs from before run keys (or without queued.json): the keys their events name."""
    if run.model_key or run.predictions_key:
        return
    own = run_key(run)
    for e in events:
        if isinstance(e, Started) and e.command == Stage.INFER:
            key = _key_of(e.model)
            run.model_key = key if key and key != own else run.model_key
        if isinstance(e, Started) and e.command == Stage.EVALUATE:
            key = _key_of(e.predictions, DEV_PREDICTIONS_SUFFIX)
            run.predictions_key = key if key and key != own else run.predictions_key
        if isinstance(e, Artifact) and e.kind == ArtifactKind.FINAL_MODEL:
            key = _key_of(e.path)
            run.model_key = key if key and key != own else run.model_key


# --- rebuild and repair -----------------------------------------------------------------------


def _note(ws: Workspace, text: str) -> None:
    """One line in worker.log: the place a user (or the next session) looks for what happened."""
    try:
        ws.state_dir.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
        with open(os.open(ws.worker_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, sharing.file_mode()), "a",
                  encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING {text}\n")
    except OSError:
        pass


def rebuild(ws: Workspace, backup: Path | None = None) -> Rebuilt:
    """Write a new ``state.db`` from the run directories, atomically: built aside, then linked into place.

    If another process created the database meanwhile (two CLIs at once), theirs is kept.
    """
    ws.state_dir.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
    tmp = ws.state_dir / f".state.db.rebuild-{os.getpid()}"
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    done = Rebuilt(backup=backup)
    store = Store(tmp)
    try:
        for run_id in run_ids(ws):
            done.runs.append(store.restore(restore_run(ws, run_id)))
        restore_sweeps(ws, store, done.runs)
        if any(r.state is RunState.QUEUED for r in done.runs):
            # Nothing restarts unasked: the user looks at the restored queue, then resumes it.
            store.set_paused(True)
            done.paused = True
        with store._lock:  # one file, no -wal beside it, before it is linked into place
            store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store._conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        store.close()
    try:
        os.link(tmp, ws.db_path)
    except FileExistsError:
        done.runs = []  # someone else rebuilt it first
    finally:
        tmp.unlink(missing_ok=True)
    if done.runs:
        _note(ws, done.note)
    return done


def restore_sweeps(ws: Workspace, store: Store, runs: list[Run]) -> None:
    """The sweeps of restored runs, from their ``queued.json`` (``sweep_record``), and the pending runs
    put back in priority order (restored positions are the run ids)."""
    members: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        if run.sweep:
            body = _read_json(ws.run_dir(run.id) / QUEUE_RECORD).get("sweep_record")
            members.setdefault(run.sweep, []).append((run, body if isinstance(body, dict) else {}))
    for sweep_id, found in members.items():
        first = next((body for _run, body in found if body), {})
        ended = all(run.state.is_final for run, _body in found)  # told before the store was lost: not again
        store.restore_sweep(Sweep(
            sweep_id, str(first.get("config_path") or found[0][0].config_path),
            str(first.get("nickname") or found[0][0].nickname), tuple(first.get("keys") or ()),
            {run.nickname: dict(body.get("values") or {}) for run, body in found},
            float(first.get("created_at") or min(run.created_at for run, _body in found)),
            time.time() if ended else None))
    if any(run.priority for run in runs):
        store.regroup()


def open_store(ws: Workspace) -> tuple[Store, Rebuilt | None]:
    """Open the workspace's store; rebuild it first when it is missing but runs/ has history.

    A store that exists but does not know some ``runs/<id>`` (replaced by an old copy, say) gets
    those runs restored into it, so a run directory is never orphaned nor its id handed out again.

    Raises:
        StoreBroken: the file is not a database, malformed or read-only; names ``dialsum-tui repair``.
    """
    rebuilt = rebuild(ws) if not ws.db_path.exists() and run_ids(ws) else None
    try:
        store = Store(ws.db_path)
        if rebuilt is None or not rebuilt.runs:
            rebuilt = adopt_unknown(ws, store)
    except sqlite3.Error as err:
        raise StoreBroken(broken_message(ws.db_path, err)) from None
    return store, rebuilt if rebuilt and rebuilt.runs else None


def adopt_unknown(ws: Workspace, store: Store) -> Rebuilt | None:
    """Restore the run directories the store has no row for; None when it knows them all."""
    known = {run.id for run in store.list()}
    missing = [rid for rid in run_ids(ws) if rid not in known]
    if not missing:
        return None
    done = Rebuilt(adopted=True)
    for run_id in missing:
        try:
            done.runs.append(store.restore(restore_run(ws, run_id)))
        except sqlite3.IntegrityError:
            continue  # another process restored it a moment ago
    restore_sweeps(ws, store, done.runs)
    if any(r.state is RunState.QUEUED for r in done.runs):
        store.set_paused(True)
        done.paused = True
    if done.runs:
        _note(ws, done.note)
    return done


def repair(ws: Workspace) -> Rebuilt:
    """Move the broken ``state.db`` (and its -wal/-shm) aside as ``state.db.broken-<time>`` and rebuild.

    Raises:
        StoreBroken: a worker still holds the workspace (stop it first).
    """
    if read_lock_holder(ws.lock_path)[0]:
        raise StoreBroken("a worker is running on this store; stop it first: `dialsum-tui worker stop`, "
                          "then `dialsum-tui repair`")
    if healthy(ws.db_path):
        return Rebuilt()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = ws.state_dir / f"{ws.db_path.name}.broken-{stamp}"
    moved = None
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{ws.db_path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{backup}{suffix}"))
            moved = moved or backup
    return rebuild(ws, backup=moved)
