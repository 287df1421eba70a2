"""Provides the persistent run queue: one SQLite database in WAL mode shared by every CLI, TUI and
the worker of a workspace.

The schema carries its version (``PRAGMA user_version``) and migrates forward on open
(:data:`MIGRATIONS`); a database from a newer release is refused, never downgraded.

WAL lets readers run while one writer writes; ``busy_timeout`` makes a second writer wait instead of
failing; every read-modify-write runs in ``BEGIN IMMEDIATE`` so two CLIs adding at once can never
hand out the same position or overwrite each other's transition.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from dialsum_tui.manager.errors import DialsumError, OperationFailed
from dialsum_tui.manager.runs.models import (
    FINAL_STATES,
    Action,
    Run,
    RunState,
    can_transition,
)
from dialsum_tui.manager.runs.streaks import FailurePause
from dialsum_tui.manager.runs.sweeps import Sweep, SweepNotFound
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import STATE_DIR
from engine.artifacts import legacy_name

BUSY_TIMEOUT_MS = 10_000

# Schema migrations, applied in order: entry N (1-based) takes a database from user_version N-1
# to N. Entry 1 is the schema of the stores written before versions existed (user_version 0); its
# IF NOT EXISTS makes it a no-op on those. The next column is one more entry, e.g.
# ``("ALTER TABLE runs ADD COLUMN user TEXT",)`` plus the field on ``Run``. Never edit an entry
# that has shipped: a workspace may already be past it.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the runs table and the meta flags
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            nickname TEXT NOT NULL,
            config_path TEXT NOT NULL,
            config_yaml TEXT NOT NULL,
            action TEXT NOT NULL,
            state TEXT NOT NULL,
            stage TEXT,
            gpus TEXT,
            after INTEGER,
            position REAL NOT NULL,
            reason TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            pid INTEGER,
            pid_start_time REAL,
            exit_code INTEGER,
            failure_kind TEXT,
            failure_message TEXT,
            failure_hint TEXT,
            failed_stage TEXT,
            progress TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}',
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (  # 2: who queued each run (issue 17); older runs keep NULL, shown as "-"
        "ALTER TABLE runs ADD COLUMN user TEXT",
    ),
    (  # 3: who runs the stage (issue 18): the backend, Slurm's job id, what Slurm allocated to it
        "ALTER TABLE runs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local'",
        "ALTER TABLE runs ADD COLUMN job_id TEXT",
        "ALTER TABLE runs ADD COLUMN allocation TEXT",
    ),
    (  # 4: run-keyed artifacts: which run an infer/evaluate-only run reads (manager.identity)
        "ALTER TABLE runs ADD COLUMN source_run INTEGER",
        "ALTER TABLE runs ADD COLUMN model_key TEXT",
        "ALTER TABLE runs ADD COLUMN predictions_key TEXT",
        # Runs that started before run keys wrote checkpoints/<nickname>/ (ASCII-cleaned nickname):
        # point them there so their models and submissions are still found. legacy_key() is
        # engine.artifacts.legacy_name, registered on the connection (Store._migrate).
        "UPDATE runs SET model_key = legacy_key(nickname), predictions_key = legacy_key(nickname)"
        " WHERE state NOT IN ('queued', 'waiting')",
    ),
    (  # 5: launched at most once (issue 24), sweeps and priority (issue 26), GPU memory (issue 27)
        "ALTER TABLE runs ADD COLUMN launch TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE runs ADD COLUMN sweep TEXT",
        "ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN gpu_peaks TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE runs ADD COLUMN gpu_predicted TEXT NOT NULL DEFAULT '{}'",
    ),
    (  # 6: a path a run records inside the workspace is relative to it (issue 24: a moved or copied
        # workspace acts on its own files). workspace_relative() is Store._relative, registered on the
        # connection: an absolute path under the root becomes relative, any other stays as it is.
        "UPDATE runs SET config_path = workspace_relative(config_path)",
    ),
    (  # 7: the sweeps themselves (issue 26): their config, swept keys and each variant's values
        # (runs.sweep holds the id); ended_at marks the sweep whose end was announced (once)
        """CREATE TABLE IF NOT EXISTS sweeps (
            id TEXT PRIMARY KEY,
            config_path TEXT NOT NULL,
            nickname TEXT NOT NULL,
            keys TEXT NOT NULL DEFAULT '[]',
            variants TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            ended_at REAL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_JSON_FIELDS = ("progress", "metrics", "launch", "gpu_peaks", "gpu_predicted")
_COLUMNS = tuple(f.name for f in fields(Run))
# Fields callers may set through update()/transition(); id and state have their own paths.
_UPDATABLE = frozenset(_COLUMNS) - {"id", "state"}
_PENDING = (RunState.QUEUED.value, RunState.WAITING.value)
_PENDING_SQL = ", ".join("?" for _ in _PENDING)


class RunNotFound(DialsumError, KeyError):
    """No run with that id; ``str()`` says so and how to list runs."""

    def __str__(self) -> str:
        return f"no run {self.args[0]} in this workspace; see `dialsum-tui ls`"


class StoreTooNew(OperationFailed, RuntimeError):
    """The database was written by a newer dialsum-tui; it is left untouched."""


class IllegalTransition(DialsumError, ValueError):
    """A state change the state machine forbids (e.g. succeeded → running)."""


def _to_row(value: Any, name: str) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(value or {}, ensure_ascii=False, default=str)
    if name == "cancel_requested":
        return int(bool(value))
    if isinstance(value, (Action, RunState)):
        return value.value
    return value


def _from_row(row: sqlite3.Row) -> Run:
    data = {name: row[name] for name in _COLUMNS}
    for name in _JSON_FIELDS:
        data[name] = json.loads(data[name] or "{}")
    data["action"] = Action(data["action"])
    data["state"] = RunState(data["state"])
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Run(**data)


class Store:
    """The runs table and the queue's paused flag.

    Safe to share between threads of one process (one connection behind a lock) and between
    processes (SQLite locking). Keep ``.dialsum/`` on a local disk: WAL does not work over NFS.
    """

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            # Create it private before SQLite does; the -wal/-shm files inherit these permissions.
            os.close(os.open(self.db_path, os.O_CREAT | os.O_WRONLY, sharing.file_mode()))
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives power loss too; the write rate here is tiny.
        self._conn.execute("PRAGMA synchronous = FULL")
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, all steps in one transaction.

        Raises:
            StoreTooNew: the file's version is newer than this code knows; nothing is changed.
        """
        self._conn.create_function("legacy_key", 1, legacy_name, deterministic=True)
        self._conn.create_function("workspace_relative", 1, self._relative, deterministic=True)
        with self._write() as conn:  # re-read inside the lock: another process may have migrated
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreTooNew(
                    f"{self.db_path} has schema version {version}, newer than this dialsum-tui knows "
                    f"({SCHEMA_VERSION}): a newer dialsum-tui wrote it. Upgrade dialsum-tui to open this "
                    "workspace; the file was left as it is (it is never downgraded)."
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                # Inside the same transaction: a failed step leaves the old version and schema.
                conn.execute(f"PRAGMA user_version = {number}")

    def _relative(self, path: str | None) -> str | None:
        """``path`` relative to the workspace this store belongs to (``<root>/.dialsum/state.db``) when
        it lies inside it; otherwise (outside, or a store kept elsewhere) unchanged."""
        db = Path(os.path.abspath(self.db_path))
        if not path or db.parent.name != STATE_DIR or not os.path.isabs(path):
            return path
        root = Path(os.path.realpath(db.parent.parent))
        for candidate in (Path(path), Path(os.path.realpath(path))):
            if candidate.is_relative_to(root):
                return candidate.relative_to(root).as_posix() or "."
        return path

    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version`` (0: written before versions existed)."""
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so read-modify-write is race-free."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _get(self, conn: sqlite3.Connection, run_id: int) -> Run:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _from_row(row)

    # --- reading ----------------------------------------------------------------------------

    def get(self, run_id: int) -> Run:
        """Return one run.

        Raises:
            RunNotFound: if there is no such id.
        """
        with self._lock:
            return self._get(self._conn, run_id)

    def list(self) -> list[Run]:
        """All runs in queue order (position, then id)."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM runs ORDER BY position, id").fetchall()
        return [_from_row(r) for r in rows]

    # --- writing ----------------------------------------------------------------------------

    def add(
        self,
        *,
        nickname: str,
        config_path: str,
        config_yaml: str,
        action: str | Action,
        gpus: str | None = None,
        after: int | None = None,
        user: str | None = None,
        first_id: int = 1,
        prepare: Callable[[int], None] | None = None,
        **extra: Any,
    ) -> Run:
        """Append a queued run at the end of the queue and return it (``user``: who queued it); with
        ``priority`` (in ``extra``) above the pending runs', before the first pending run of a lower one.

        Args:
            first_id: the smallest id it may get; the workspace passes one above its highest
                ``runs/<id>`` so an id is never reused while its run directory exists (SQLite's
                AUTOINCREMENT counter is lost with the database file).
            extra: more updatable fields (source_run, model_key, predictions_key).

        ``prepare(run_id)`` runs inside the transaction, before the run is visible to the worker: a
        file the launch depends on (a retry's ``retry.json``) is in place before it can start.

        Raises:
            ValueError: for an unknown action.
            RunNotFound: if ``after`` names no run.
        """
        action = Action(action)
        with self._write() as conn:
            if after is not None:
                self._get(conn, after)
            next_id = self._next_id(conn, first_id)
            position = self._slot(conn, int(extra.get("priority") or 0), 1)
            cur = conn.execute(
                "INSERT INTO runs (id, nickname, config_path, config_yaml, action, state, gpus, after, position,"
                " created_at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (next_id, nickname, config_path, config_yaml, action.value, RunState.QUEUED.value, gpus, after, position,
                 time.time(), user),
            )
            self._set(conn, cur.lastrowid, extra)
            if prepare is not None:
                prepare(int(cur.lastrowid))
            return self._get(conn, cur.lastrowid)

    def _next_id(self, conn: sqlite3.Connection, first_id: int) -> int:
        top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0]
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
        return max(int(first_id), int(top) + 1, (int(seq[0]) + 1) if seq else 1)

    def _slot(self, conn: sqlite3.Connection, priority: int, count: int) -> float:
        """The first of ``count`` positions for new pending runs of ``priority``: after every pending run of
        the same or a higher priority, before the first of a lower one (which, with everything after it,
        moves ``count`` places down). The queue's order stays: higher priority first, then first come."""
        lower = conn.execute(f"SELECT MIN(position) FROM runs WHERE state IN ({_PENDING_SQL}) AND priority < ?",
                             (*_PENDING, int(priority))).fetchone()[0]
        if lower is None:
            return float(conn.execute("SELECT COALESCE(MAX(position), 0) FROM runs").fetchone()[0]) + 1
        conn.execute("UPDATE runs SET position = position + ? WHERE position >= ?", (int(count), lower))
        return float(lower)

    def regroup(self) -> None:
        """Put the pending runs back in priority order (higher first, then their old order), on the
        positions they hold: after a rebuild from ``runs/``, whose positions are the run ids."""
        with self._write() as conn:
            rows = conn.execute(f"SELECT id, position, priority FROM runs WHERE state IN ({_PENDING_SQL})"
                                " ORDER BY position, id", _PENDING).fetchall()
            ordered = sorted(rows, key=lambda r: -int(r["priority"] or 0))  # stable: first come within a priority
            for row, position in zip(ordered, [r["position"] for r in rows], strict=True):
                conn.execute("UPDATE runs SET position = ? WHERE id = ?", (position, row["id"]))

    def restore(self, run: Run) -> Run:
        """Insert a run as it was (its id, state and fields): rebuilding a lost store from run directories.

        Raises:
            sqlite3.IntegrityError: the id is taken.
        """
        values = {name: _to_row(getattr(run, name), name) for name in _COLUMNS}
        with self._write() as conn:
            conn.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                         tuple(values.values()))
            return self._get(conn, run.id)

    def _set(self, conn: sqlite3.Connection, run_id: int, values: dict[str, Any]) -> None:
        unknown = set(values) - _UPDATABLE - {"state"}
        if unknown:
            raise ValueError(f"Run has no updatable field(s) {', '.join(sorted(unknown))}")
        if not values:
            return
        cols = ", ".join(f"{name} = ?" for name in values)
        params = [_to_row(v, name) for name, v in values.items()]
        conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*params, int(run_id)))

    def transition(self, run_id: int, new_state: RunState | str, **fields_: Any) -> Run:
        """Move a run to ``new_state`` (and set ``fields_``) if the state machine allows it.

        Sets ``started_at`` on the first entry to running and ``finished_at`` on a final state
        unless given.

        Raises:
            IllegalTransition: naming both states.
            RunNotFound: if there is no such id.
        """
        new_state = RunState(new_state)
        with self._write() as conn:
            run = self._get(conn, run_id)
            if not can_transition(run.state, new_state):
                raise IllegalTransition(f"run {run_id}: cannot go from {run.state.value} to {new_state.value}")
            values = dict(fields_, state=new_state.value)
            now = time.time()
            if new_state is RunState.RUNNING and run.started_at is None:
                values.setdefault("started_at", now)
            if new_state in FINAL_STATES:
                # A clock stepped back since the start must not record a negative run time.
                values.setdefault("finished_at", max(now, run.started_at or now))
            self._set(conn, run_id, values)
            return self._get(conn, run_id)

    def writable(self) -> bool:
        """Whether a write reaches the database now (after a full disk or a read-only remount).

        Writes one row of ``meta``, which needs a page in the WAL like any real write.
        """
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES ('probe', ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(time.time()),))
        except sqlite3.Error:
            return False
        return True

    def update(self, run_id: int, **fields_: Any) -> Run:
        """Set plain fields (progress, metrics, stage, pid, reason...) without a state change."""
        if "state" in fields_:
            raise ValueError("use transition() to change a run's state")
        with self._write() as conn:
            self._get(conn, run_id)
            self._set(conn, run_id, fields_)
            return self._get(conn, run_id)

    def move(self, run_id: int, delta: int) -> None:
        """Move a queued/waiting run ``delta`` places (negative = earlier) among the pending runs of its
        priority (it never passes a run of another priority; the move stops at the edge).

        Raises:
            ValueError: if the run is not pending any more.
        """
        with self._write() as conn:
            run = self._get(conn, run_id)
            if run.state.value not in _PENDING:
                raise ValueError(f"run {run_id} is {run.state.value}; only queued or waiting runs can be moved")
            # Within its priority: a high-priority run stays ahead of every normal one, whatever moves.
            rows = conn.execute(
                "SELECT id, position FROM runs WHERE state IN (?, ?) AND priority = ? ORDER BY position, id",
                (*_PENDING, run.priority),
            ).fetchall()
            ids = [r["id"] for r in rows]
            positions = [r["position"] for r in rows]
            i = ids.index(run.id)
            j = max(0, min(len(ids) - 1, i + int(delta)))
            ids.insert(j, ids.pop(i))
            # Reuse the same set of positions, so non-pending runs keep their places.
            for new_id, pos in zip(ids, positions, strict=True):
                conn.execute("UPDATE runs SET position = ? WHERE id = ?", (pos, new_id))

    def request_cancel(self, run_id: int) -> Run:
        """Cancel a pending run at once, or flag a running one for the worker to stop.

        Returns the run as it is after the request. A final run is returned unchanged.
        """
        with self._write() as conn:
            run = self._get(conn, run_id)
            if run.state.value in _PENDING:
                self._set(
                    conn,
                    run_id,
                    {"state": RunState.CANCELLED.value, "cancel_requested": True, "finished_at": time.time(),
                     "reason": "cancelled before it started"},
                )
            elif run.state is RunState.RUNNING:
                self._set(conn, run_id, {"cancel_requested": True})
            return self._get(conn, run_id)

    # --- queue flag -------------------------------------------------------------------------

    def paused(self) -> bool:
        """Whether the queue is paused (running runs continue; nothing new starts)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'paused'").fetchone()
        return bool(row and row["value"] == "1")

    def set_paused(self, value: bool) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('paused', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                ("1" if value else "0",),
            )

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, value))

    # --- sweeps -----------------------------------------------------------------------------

    def _insert_sweep(self, conn: sqlite3.Connection, sweep: Sweep) -> None:
        conn.execute("INSERT INTO sweeps (id, config_path, nickname, keys, variants, created_at, ended_at)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (sweep.id, sweep.config_path, sweep.nickname, json.dumps(list(sweep.keys), ensure_ascii=False),
                      json.dumps(sweep.variants, ensure_ascii=False, default=str), sweep.created_at, sweep.ended_at))

    @staticmethod
    def _sweep_of(row: sqlite3.Row) -> Sweep:
        return Sweep(row["id"], row["config_path"], row["nickname"], tuple(json.loads(row["keys"] or "[]")),
                     json.loads(row["variants"] or "{}"), float(row["created_at"]), row["ended_at"])

    def sweeps(self) -> list[Sweep]:
        """Every sweep, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM sweeps ORDER BY created_at, id").fetchall()
        return [self._sweep_of(row) for row in rows]

    def get_sweep(self, sweep_id: str) -> Sweep:
        """Raises:
            SweepNotFound: no sweep has that id.
        """
        with self._lock:
            row = self._conn.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise SweepNotFound(sweep_id)
        return self._sweep_of(row)

    def new_sweep(self, sweep: Sweep) -> Sweep:
        """Record a sweep under the next free id (``s1``, ``s2``…; its ``id`` is ignored) and return it.
        Its runs are queued after it, each carrying the id (``Run.sweep``)."""
        with self._write() as conn:
            taken = [row["id"] for row in conn.execute("SELECT id FROM sweeps").fetchall()]
            number = max((int(t[1:]) for t in taken if t[1:].isdigit()), default=0) + 1
            made = Sweep(f"s{number}", sweep.config_path, sweep.nickname, sweep.keys, sweep.variants,
                         sweep.created_at or time.time(), None)
            self._insert_sweep(conn, made)
            return made

    def reopen_sweep(self, sweep_id: str) -> None:
        """A sweep gets new runs (``retry --sweep``): its end is announced again when they end."""
        with self._write() as conn:
            conn.execute("UPDATE sweeps SET ended_at = NULL WHERE id = ?", (sweep_id,))

    def restore_sweep(self, sweep: Sweep) -> None:
        """Insert a sweep as it was (rebuilding from run directories); one already there is kept."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep.id,)).fetchone() is None:
                self._insert_sweep(conn, sweep)

    def end_sweep(self, sweep_id: str, at: float | None = None) -> bool:
        """Mark a sweep ended; True only for the call that marked it (so its end is announced once)."""
        with self._write() as conn:
            cur = conn.execute("UPDATE sweeps SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                               (time.time() if at is None else at, sweep_id))
            return cur.rowcount == 1

    # --- failure pauses -----------------------------------------------------------------------

    def failure_pauses(self) -> list[FailurePause]:
        """The pauses failure streaks put on parts of the queue (:mod:`~dialsum_tui.manager.runs.streaks`)."""
        try:
            body = json.loads(self._meta("failure_pauses") or "[]")
            return [FailurePause.from_json(item) for item in body]
        except (ValueError, TypeError, KeyError):
            return []  # a hand-edited row must not stop the queue: the streak records it again

    def add_failure_pause(self, pause: FailurePause) -> bool:
        """Record ``pause``; True when it is new, False when the same cause was paused already (its runs join)."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'failure_pauses'").fetchone()
            try:
                pauses = [FailurePause.from_json(item) for item in json.loads(row["value"] if row else "[]")]
            except (ValueError, TypeError, KeyError):
                pauses = []
            same = next((i for i, p in enumerate(pauses) if p.same_cause(pause)), None)
            if same is not None:
                old = pauses[same]
                pauses[same] = FailurePause(old.kind, old.scope, tuple(sorted(set(old.runs) | set(pause.runs))),
                                            old.at, old.window_s, old.hint)
            else:
                pauses.append(pause)
            self._set_meta(conn, "failure_pauses", json.dumps([p.to_json() for p in pauses], ensure_ascii=False))
            return same is None

    def clear_failure_pauses(self, at: float | None = None) -> list[FailurePause]:
        """Lift every failure pause (``resume``); failures before ``at`` no longer count toward a streak.

        Returns:
            The pauses lifted.
        """
        lifted = self.failure_pauses()
        with self._write() as conn:
            self._set_meta(conn, "failure_pauses", "[]")
            self._set_meta(conn, "failures_cleared_at", str(time.time() if at is None else at))
        return lifted

    def failures_cleared_at(self) -> float:
        """When the failure pauses were last lifted (0: never): earlier failures start no streak."""
        try:
            return float(self._meta("failures_cleared_at") or 0.0)
        except ValueError:
            return 0.0
