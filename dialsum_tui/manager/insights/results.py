"""Provides the results table (one row per model nickname, as in the team's hand-off: Model | ROUGE
| 상태) derived from runs AND artifacts on disk and its output formats (the hand-off note is manager.handoff).

A status is only as good as its evidence: ``✅ 완료`` needs a complete final_model, a valid
submission and a metric; ``❓ 확인 필요`` is used only when evidence is missing, and says which.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.guards.memory import predicted_vs_measured
from dialsum_tui.manager.insights.disk_models import DiskModel, disk_models
from dialsum_tui.manager.insights.leaderboard import BEST_MARK, latest_score, ranking
from dialsum_tui.manager.runs.events import run_summary, stored_eval
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key, run_paths
from dialsum_tui.manager.runs.models import Run, RunState
from engine.artifacts import is_complete_model, safe_name
from engine.config import ConfigError, resolve_path
from engine.contract import FINAL_MODEL_DIR, TEST_CSV, Eval, FailureKind, RunFiles, Stage, load_snapshot
from engine.units import format_rouge

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

STATUS_DONE = "✅ 완료"
STATUS_TRAINED_INFER_FAILED = "✅ 학습 완료, 추론 실패"
STATUS_OOM = "❌ OOM 실패"
STATUS_FAILED = "❌ 실패 ({kind})"
STATUS_RUNNING = "⏳ 진행 중"
STATUS_WAITING = "⏸ 대기"
STATUS_RERUN_QUEUED = "재실행 대기"  # beside a finished model's status while a re-run of it waits: "✅ 완료 · 재실행 대기"
STATUS_CANCELLED = "⛔ 취소"
STATUS_UNKNOWN = "❓ 확인 필요"

FORMATS = ("table", "markdown", "csv", "json")
PARTS_HEADER = "R1/R2/RL ×100"


@dataclass
class ResultRow:
    """One model nickname's verdict; ``code`` and the fields after it are for machines (JSON)."""

    nickname: str
    status: str
    final: float | None
    tokenizer: str | None
    rouge1: float | None
    rouge2: float | None
    rougeL: float | None
    run_id: int | None
    evidence: str
    hint: str | None
    code: str = ""  # done | trained_infer_failed | oom | failed | running | waiting | cancelled | unknown
    failure_kind: str | None = None
    model_complete: bool = False
    submission_rows: int | None = None  # rows of a valid submission, None when missing or invalid
    progress: dict[str, Any] = field(default_factory=dict)
    best: bool = False  # best dev ROUGE among rows scored the same way (manager.leaderboard)
    lb_score: float | None = None  # latest public-leaderboard score recorded with `dialsum-tui lb`
    user: str | None = None  # who queued the row's latest run (None: queued before users were recorded)
    resume: str | None = None  # "step 758/780": the stopped training `retry ID --resume` continues
    sweep: str | None = None  # the sweep the row's latest run is a variant of (its id)
    sweep_best: bool = False  # the best of its sweep by evaluate-stage dev ROUGE (one basis: runs.sweeps.sweep_best)
    # stage → {"predicted_gib", "measured_gib"}: the latest run's GPU memory, predicted at add vs measured
    gpu_memory: dict[str, Any] = field(default_factory=dict)
    n: int | None = None  # dev rows the ROUGE was scored on (its basis, with tokenizer and scorer)
    rouge_run: int | None = None  # the run whose evaluation the ROUGE is
    unranked: str | None = None  # why the ROUGE is not ranked against the others (another basis), else None
    rerun_queued: int | None = None  # a re-run of this model waiting in the queue: the row keeps the earlier result

    @property
    def rouge_text(self) -> str:
        """"46.85 (mecab)" or "-"."""
        if self.final is None:
            return "-"
        return format_rouge(self.final, x100=True) + (f" ({self.tokenizer})" if self.tokenizer else "")

    @property
    def rouge_cell(self) -> str:
        """The results cell: dev ROUGE, ★ when best, and the public score beside it ("46.85 (mecab) ★ · LB 47.52")."""
        text = self.rouge_text + (f" {BEST_MARK}" if self.best else "")
        return text + (f" · LB {self.lb_score:.2f}" if self.lb_score is not None else "")

    @property
    def parts_text(self) -> str:
        """ROUGE-1/2/L F1 ×100 as "52.30/33.10/48.20", or "-" when any is missing."""
        parts = [self.rouge1, self.rouge2, self.rougeL]
        return "/".join(format_rouge(v) for v in parts) if all(v is not None for v in parts) else "-"


# --- evidence from disk ------------------------------------------------------------------------


@dataclass
class _Paths:
    checkpoints: Path
    submissions: Path
    data: Path


def _paths(workspace: Workspace, run: Run | None) -> _Paths:
    """Where a run's artifacts are: its config snapshot's resolved paths, against the workspace root.

    A run whose snapshot does not load (or no run) uses the workspace's default directories.
    """
    defaults = _Paths(workspace.checkpoints_dir, workspace.submissions_dir, workspace.data_dir)
    if run is None:
        return defaults
    try:
        cfg = load_snapshot(run.config_yaml or "", source=f"run {run.id} config snapshot")
    except ConfigError:
        return defaults
    return _Paths(
        resolve_path(cfg.paths.checkpoints, workspace.root),
        resolve_path(cfg.paths.submissions, workspace.root),
        resolve_path(cfg.data.dir, workspace.root),
    )


def check_submission(path: Path, test_csv: Path | None) -> tuple[int | None, str]:
    """Validate a submission CSV (``fname,summary``, every test fname in test order).

    Returns:
        (rows, detail): rows is None when missing or invalid, and detail says what is wrong,
        naming the file and the row.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        return None, f"no submission {path.name}"
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return None, f"{path.name}: unreadable ({err})"
    if not rows:
        return None, f"{path.name}: empty file"
    header = rows[0]
    # sample_submission.csv has a leading unnamed index column: ",fname,summary".
    offset = 1 if header[:1] == [""] else 0
    if header[offset : offset + 2] != ["fname", "summary"]:
        return None, f"{path.name}: header {header!r}, expected fname,summary"
    body = rows[1:]
    for n, row in enumerate(body, start=2):
        if len(row) < offset + 2 or not row[offset + 1].strip():
            return None, f"{path.name} row {n}: empty summary"
    fnames = [row[offset] for row in body]
    if test_csv is not None and test_csv.exists():
        try:
            with open(test_csv, newline="", encoding="utf-8") as fh:
                expected = [r["fname"] for r in csv.DictReader(fh)]
        except (OSError, KeyError, UnicodeDecodeError, csv.Error) as err:
            return len(body), f"submission has {len(body)} rows (could not read {test_csv.name}: {err})"
        if fnames != expected:
            missing = [f for f in expected if f not in set(fnames)]
            first = next((i for i, (a, b) in enumerate(zip(fnames, expected)) if a != b), min(len(fnames), len(expected)))
            what = f"{len(missing)} test fnames missing (e.g. {missing[0]})" if missing else f"order differs at row {first + 2}"
            return None, f"{path.name}: {len(fnames)} rows vs {len(expected)} in {test_csv.name}; {what}"
        return len(body), f"submission valid ({len(body)} rows, test order)"
    return len(body), f"submission has {len(body)} rows (no test.csv to check fnames against)"


def _checkpoint_progress(nick_dir: Path) -> str | None:
    """Describe the newest intermediate checkpoint ("checkpoint-758: 758/780 steps")."""
    ckpts = sorted(nick_dir.glob("**/checkpoint-*"), key=lambda p: _step(p.name))
    if not ckpts:
        return None
    last = ckpts[-1]
    try:
        state = json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))
        return f"last checkpoint {last.name}: {state.get('global_step')}/{state.get('max_steps')} steps"
    except (OSError, ValueError):
        return f"last checkpoint {last.name}"


def _step(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _metric(workspace: Workspace, runs: list[Run]) -> tuple[Eval, int] | None:
    """The latest ROUGE of these runs and the run it is from: the evaluate stage's first, else any
    eval (newest run first). The store's record answers first; a run's events are read (bounded,
    :func:`run_summary`) only when it does not."""

    def evaluations(run: Run) -> Iterator[Eval]:
        stored = stored_eval(run.metrics)
        if stored is not None:
            yield stored
        summary = run_summary(RunFiles(workspace.run_dir(run.id)).events)
        yield from reversed(summary.evals)

    for want_eval_stage in (True, False):
        for run in sorted(runs, key=lambda r: -r.id):
            for m in evaluations(run):
                if m.final is not None and (not want_eval_stage or m.command == Stage.EVALUATE):
                    return m, run.id
    return None


def progress_text(run: Run) -> str:
    p = run.progress or {}
    if p.get("step") is not None and p.get("total"):
        return f"{p.get('stage') or run.stage or ''} {p['step']}/{p['total']} steps".strip()
    return run.stage or run.action.value


# --- rows --------------------------------------------------------------------------------------


def result_rows(workspace: Workspace, runs: list[Run]) -> list[ResultRow]:
    """Derive one row per model nickname from the runs and the artifacts on disk.

    Nicknames found only on disk (``checkpoints/<nick>/`` or a submission with no run) get a row
    from the artifacts alone.

    Args:
        workspace: where checkpoints, submissions and run directories are.
        runs: every run (any order).
    """
    by_nick: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.id):
        by_nick.setdefault(run.nickname, []).append(run)
    rows = [_with_resume(workspace, _row_from_runs(workspace, nick, group), group[-1]) for nick, group in by_nick.items()]
    known = {safe_name(n) for n in by_nick} | {k for r in runs for k in (run_key(r), model_key(r), predictions_key(r))}
    for found in disk_models(workspace):
        if found.name not in known:
            rows.append(_row_from_disk(workspace, found))
    rows = annotate_rows(workspace, runs, rows)  # ★ best by dev ROUGE, public-leaderboard score
    return mark_sweeps(rows, runs)


def _with_resume(workspace: Workspace, row: ResultRow, latest: Run) -> ResultRow:
    """Say where a resumed run came from, and where a stopped one can resume (manager.retry)."""
    from dialsum_tui.manager.runs.retry import resumable, resumed_note

    note = resumed_note(workspace.run_dir(latest.id))
    if note:
        row.evidence = f"{row.evidence}; run {latest.id} {note}"
    point = resumable(workspace, latest)
    if point is not None:
        row.resume = point.where
        row.evidence = f"{row.evidence}; resumable from {point.where}"
    return row


def _row_from_runs(workspace: Workspace, nick: str, runs: list[Run]) -> ResultRow:
    latest = runs[-1]
    paths = _paths(workspace, latest)
    # The latest run's own files (<slug>-r<id>), or its source run's for an infer/evaluate-only run.
    where = run_paths(latest, paths.checkpoints, paths.submissions)
    complete = is_complete_model(where.final_model)
    sub_rows, sub_detail = check_submission(where.submission, paths.data / TEST_CSV)
    metric = _metric(workspace, runs)
    row = ResultRow(
        nickname=nick, status=STATUS_UNKNOWN, final=None, tokenizer=None, rouge1=None, rouge2=None, rougeL=None,
        run_id=latest.id, evidence="", hint=None, model_complete=complete, submission_rows=sub_rows,
        progress=dict(latest.progress or {}), user=latest.user,
    )
    if metric:
        scored, row.rouge_run = metric
        row.final, row.tokenizer, row.n = _float(scored.final), scored.tokenizer, scored.n
        row.rouge1, row.rouge2, row.rougeL = (_float(v) for v in (scored.rouge1, scored.rouge2, scored.rougeL))
    row.gpu_memory = predicted_vs_measured(latest)
    model_text = "final_model complete" if complete else "no complete final_model"
    running = [r for r in runs if r.state is RunState.RUNNING]
    if running:
        r = running[-1]
        return _set(row, STATUS_RUNNING, "running", r.id, f"run {r.id} {progress_text(r)}")
    if latest.state in (RunState.QUEUED, RunState.WAITING):
        why = f": {latest.reason}" if latest.state is RunState.WAITING and latest.reason else ""
        earlier = [r for r in runs if r.state not in (RunState.QUEUED, RunState.WAITING)]
        if earlier:
            # A re-run waits: the model's result is still what the earlier runs made (a queued retrain
            # must not turn a finished model into "⏸ 대기"); the waiting re-run is said beside it.
            done = _row_from_runs(workspace, nick, earlier)
            done.status = f"{done.status} · {STATUS_RERUN_QUEUED}"
            done.evidence = f"{done.evidence}; re-run {latest.id} {latest.state.value}{why}"
            done.rerun_queued = latest.id
            return done
        return _set(row, STATUS_WAITING, "waiting", latest.id, f"run {latest.id} {latest.state.value}{why}")
    if latest.state is RunState.CANCELLED:
        earlier = _earlier_done(workspace, runs[:-1])
        if earlier is not None and row.final is not None:
            complete, sub_detail = True, earlier
            model_text = "final_model complete"
            # A cancelled retry leaves the earlier complete model untouched (final_model is swapped
            # atomically): the model is still done, and the row says a later attempt was cancelled.
            return _set(row, STATUS_DONE, "done", latest.id,
                        f"{model_text}, {sub_detail}, ROUGE from run {row.rouge_run}; later run {latest.id} cancelled")
        return _set(row, STATUS_CANCELLED, "cancelled", latest.id, f"run {latest.id} cancelled; {model_text}")
    if latest.state is RunState.FAILED:
        kind = FailureKind.parse(latest.failure_kind)
        stage = latest.failed_stage or latest.stage
        row.failure_kind, row.hint = kind, latest.failure_hint
        where = f"run {latest.id} {stage or latest.action.value} failed ({kind}: {latest.failure_message or 'no message'})"
        if stage in (Stage.INFER, Stage.EVALUATE) and complete and sub_rows is None:
            return _set(row, STATUS_TRAINED_INFER_FAILED, "trained_infer_failed", latest.id, f"{model_text}; {where}")
        if kind is FailureKind.OOM:
            return _set(row, STATUS_OOM, "oom", latest.id, where)
        return _set(row, STATUS_FAILED.format(kind=kind), "failed", latest.id, where)
    # succeeded or interrupted: the artifacts decide.
    missing = []
    if not complete:
        missing.append("no complete final_model")
    if sub_rows is None:
        missing.append(sub_detail)
    if row.final is None:
        missing.append("no ROUGE recorded (run evaluate)")
    if not missing:
        return _set(row, STATUS_DONE, "done", latest.id, f"{model_text}, {sub_detail}, ROUGE from run {row.rouge_run}")
    head = f"run {latest.id} {latest.state.value}"
    if latest.state is RunState.INTERRUPTED:
        p = latest.progress or {}
        at = f" at {p['step']}/{p['total']} steps" if p.get("step") is not None and p.get("total") else ""
        head = f"run {latest.id} interrupted{at}"
    return _set(row, STATUS_UNKNOWN, "unknown", latest.id, f"{head}; " + "; ".join(missing))


def _earlier_done(workspace: Workspace, runs: list[Run]) -> str | None:
    """The submission detail of the newest earlier run whose model and submission are complete."""
    for run in reversed(runs):
        paths = _paths(workspace, run)
        where = run_paths(run, paths.checkpoints, paths.submissions)
        rows, detail = check_submission(where.submission, paths.data / TEST_CSV)
        if rows is not None and is_complete_model(where.final_model):
            return f"{detail} (run {run.id})"
    return None


def _row_from_disk(workspace: Workspace, found: DiskModel) -> ResultRow:
    model_dir = found.directory / FINAL_MODEL_DIR
    complete = is_complete_model(model_dir)
    sub_rows, sub_detail = (None, "no submission")
    if found.submission is not None:
        sub_rows, sub_detail = check_submission(found.submission, workspace.data_dir / TEST_CSV)
    facts = ["no run in the store"]
    if complete:
        facts.append("final_model complete")
    elif model_dir.exists():
        facts.append(f"{model_dir.relative_to(workspace.root)} has no completeness marker")
    else:
        facts.append("no final_model")
    ckpt = _checkpoint_progress(found.directory)
    if ckpt:
        facts.append(ckpt)
    facts.append(sub_detail)
    metric = found.metric
    facts.append(f"ROUGE from {metric['file']}" if metric else "no ROUGE recorded")
    row = ResultRow(
        nickname=found.name, status=STATUS_UNKNOWN, final=None, tokenizer=None, rouge1=None, rouge2=None,
        rougeL=None, run_id=None, evidence="; ".join(facts), hint=None, code="unknown", model_complete=complete,
        submission_rows=sub_rows,
    )
    if metric:
        row.final, row.tokenizer = _float(metric.get("final")), metric.get("tokenizer")
    return row


def _set(row: ResultRow, status: str, code: str, run_id: int | None, evidence: str) -> ResultRow:
    row.status, row.code, row.run_id, row.evidence = status, code, run_id, evidence
    return row


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# --- output ------------------------------------------------------------------------------------


def _width(text: str) -> int:
    # Hangul and emoji take two terminal cells; plain ljust would misalign the table.
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _rouge_header(rows: list[ResultRow]) -> str:
    toks = sorted({r.tokenizer for r in rows if r.tokenizer})
    return "ROUGE (final = mean×100" + (f", {'/'.join(toks)})" if toks else ")")


def format_results(rows: list[ResultRow], fmt: str) -> str:
    """Render the rows as ``table`` (terminal), ``markdown`` (hand-off), ``csv`` or ``json``.

    Raises:
        ValueError: for an unknown format, listing the known ones.
    """
    if fmt == "json":
        return json.dumps([asdict(r) | {"rouge_text": r.rouge_text} for r in rows], ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["nickname", "status", "final", "tokenizer", "rouge1", "rouge2", "rougeL", "run_id", "evidence", "hint"])
        for r in rows:
            writer.writerow([r.nickname, r.status, r.final, r.tokenizer, r.rouge1, r.rouge2, r.rougeL, r.run_id, r.evidence, r.hint or ""])
        return buf.getvalue()
    header = ["Model", _rouge_header(rows), PARTS_HEADER, "상태", "By", "Evidence"]
    # One line per model: a preflight failure's evidence lists its problems on several lines, and a
    # line break inside a markdown cell ends the row (the pasted hand-off table came out broken).
    body = [[" ".join(c.split()) for c in (r.nickname, r.rouge_cell, r.parts_text, r.status, r.user or "-", r.evidence)]
            for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"
    if fmt == "table":
        widths = [max(_width(c) for c in col) for col in zip(header, *body)]
        out = ["  ".join(_pad(c, w) for c, w in zip(header, widths)).rstrip()]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(_pad(c, w) for c, w in zip(cells, widths)).rstrip() for cells in body]
        return "\n".join(out) + "\n"
    raise ValueError(f"unknown results format {fmt!r}; use one of {', '.join(FORMATS)}")


def annotate_rows(workspace: Workspace, runs: list[Run], rows: list[ResultRow]) -> list[ResultRow]:
    """Fill ``best``, ``unranked`` and ``lb_score`` of the results rows (one per nickname) in place.

    A row is best when the best run of its (tokenizer, scorer) group has its nickname; a row whose
    ROUGE was scored on another basis than its group's ranked one is not ranked and says why. Its
    leaderboard score is the latest one recorded for any run of that nickname.
    """
    ranked = ranking(workspace, runs)
    best_ids = set(ranked.best.values())
    best_nicks = {run.nickname for run in runs if run.id in best_ids}
    for row in rows:
        row.best = row.nickname in best_nicks
        why = ranked.unranked.get(row.rouge_run) if row.rouge_run is not None else None
        if why is not None:
            row.unranked = why
            row.evidence = f"{row.evidence}; ROUGE {why}" if row.evidence else f"ROUGE {why}"
        latest = None
        for run in runs:
            if run.nickname == row.nickname:
                score = latest_score(workspace, run.id)
                if score is not None and (latest is None or score["at"] >= latest["at"]):
                    latest = score
        row.lb_score = latest["score"] if latest else None
    return rows


def mark_sweeps(rows: list[ResultRow], runs: list[Run]) -> list[ResultRow]:
    """Name each row's sweep, and the best variant of each sweep (``sweep_best``, "best of sweep s1" in its
    evidence), in place; the best is judged on one scoring basis only (:func:`runs.sweeps.sweep_best`)."""
    from dialsum_tui.manager.runs.sweeps import sweep_best, sweep_groups

    groups = sweep_groups(runs)
    sweep_of = {run.nickname: sweep for sweep, members in groups.items() for run in members}
    bests = {sweep: best for sweep, members in groups.items() if (best := sweep_best(members)) is not None}
    for row in rows:
        row.sweep = sweep_of.get(row.nickname)
        best = bests.get(row.sweep) if row.sweep else None
        if best is not None and best.nickname == row.nickname:
            row.sweep_best = True
            left = f", {len(best.unranked)} scored another way not ranked" if best.unranked else ""
            row.evidence = f"{row.evidence}; best of sweep {row.sweep} ({best.ranked} ranked on {best.basis}{left})"
    return rows
