"""Provides the workspace-level figures of issue 24 point 2: a workspace with one finished run whose
``events.jsonl`` is N GB opens in bounded time and memory, whatever reads it.

Builds a workspace (under ``--dir``, removed after unless ``--keep``) with two finished runs: the big
one (its events written with the real ``EventWriter`` by ``benchmarks/event_file.py: write_run``, so
``events.index.jsonl`` exists; a complete final_model, a valid submission and dev predictions) and a
small one to compare it with. The store holds what the worker would have recorded (progress and
metrics from the events, as the rebuild restores them). Then each reader runs as a fresh subprocess
(``python -m dialsum_tui …``), timed from outside, its peak RSS taken from
``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process that runs only it:

- ``results``, ``compare BIG SMALL``, ``samples BIG --vs SMALL``, ``handoff``;
- the TUI's first snapshot: ``SnapshotSource.board()`` then ``.run(BIG)``, the app's poll-thread path;
- a rebuild: ``.dialsum/state.db`` removed, then ``dialsum-tui ls`` (rebuilt from runs/).

Then the same again with the index moved away (a run written by an engine from before it), and on
a ``baseline`` workspace built the same way whose big run wrote only 1,000 steps (~0.5 MB): what a
command costs whatever the file (the interpreter, the imports, the store, mecab for ``samples``).
The file is read from the page cache (it was just written). Prints a table and a JSON line.

Run: ``python benchmarks/workspace_big_events.py [--gb 2] [--dir /tmp] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FIXTURES = REPO / "tests" / "fixtures" / "insights"  # a 6-row dev/test set and two runs' outputs
BIG_NICK, SMALL_NICK = "큰-이벤트-kobart", "small-kobart"
READERS = ("results", "compare", "samples", "handoff", "tui first snapshot", "rebuild (rm state.db; ls)")

# Runs only the command given, then says how much memory it (and its children) took at peak.
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"rc": done.returncode, "seconds": round(seconds, 3), "peak_rss_mib": round(rss, 1),
                  "stdout_bytes": len(done.stdout), "stderr_tail": done.stderr[-600:]}))
"""


def _config(ws, nickname: str) -> Path:
    import yaml

    path = ws.configs_dir / f"{nickname}.yaml"
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def _finished_run(manager, nickname: str, size: int, eval_every: int, tag: str) -> tuple[int, dict]:
    """Queue a run, give it its outputs and events, and record it finished as the worker would."""
    from event_file import write_run

    from dialsum_tui.manager.runs.identity import run_key
    from dialsum_tui.manager.runs.models import RunState
    from dialsum_tui.manager.store.rebuild import restore_run
    from engine.artifacts import (
        atomic_directory,
        dev_predictions_path,
        final_model_dir,
        submission_path,
        write_final_model_meta,
    )
    from engine.contract import DEV_CSV, RunFiles

    ws = manager.workspace
    run = manager.add(str(_config(ws, nickname)), check=False)
    key = run_key(run)
    model = final_model_dir(ws.checkpoints_dir, key)
    with atomic_directory(model) as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
        write_final_model_meta(tmp, {"base_model": "models/tiny"})
    submission, predictions = submission_path(ws.submissions_dir, key), dev_predictions_path(ws.submissions_dir, key)
    shutil.copyfile(FIXTURES / f"submission_{tag}.csv", submission)
    shutil.copyfile(FIXTURES / f"predictions_{tag}.csv", predictions)
    rows = sum(1 for _ in open(ws.data_dir / DEV_CSV, encoding="utf-8")) - 1
    written = write_run(RunFiles(ws.run_dir(run.id)).events, size, eval_every, key=key, final_model=str(model),
                        submission=str(submission), dev_predictions=str(predictions), scored_n=rows)
    told = restore_run(ws, run.id)  # what the worker recorded while following it: its progress and metrics
    manager.store.transition(run.id, RunState.RUNNING, stage="evaluate", pid=None)
    manager.store.transition(run.id, RunState.SUCCEEDED, exit_code=0, progress=told.progress, metrics=told.metrics)
    return run.id, written


def build(root: Path, size: int, eval_every: int) -> dict:
    """The workspace under ``root/ws``: the big run and a small one; returns ids and what was written."""
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.workspace.layout import init_workspace
    from engine.contract import DEV_CSV, TEST_CSV

    ws = init_workspace(root / "ws")
    for name in (DEV_CSV, TEST_CSV):
        shutil.copyfile(FIXTURES / name, ws.data_dir / name)
    manager = Manager.open(ws)
    try:
        big, written = _finished_run(manager, BIG_NICK, size, eval_every, "a")
        small, _ = _finished_run(manager, SMALL_NICK, 1, 1000, "b")
    finally:
        manager.store.close()
    return {"ws": str(ws.root), "big": big, "small": small, "written": written}


def child_snapshot(ws: str, run_id: int) -> None:
    """The TUI's first snapshot of the board and of run ``run_id`` (the app's poll thread, no screen)."""
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.snapshot import SnapshotSource
    from dialsum_tui.manager.workspace.layout import find_workspace

    manager = Manager.open(find_workspace(ws))
    source = SnapshotSource(manager, manager.gpu_source())
    board = source.board()
    snap = source.run(run_id)
    print(json.dumps({"runs": len(board.runs), "loss_points": len(snap.loss), "evals": len(snap.evals)}))


def measure(argv: list[str], env: dict[str, str], timeout: float) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip()[-300:]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if row["rc"] != 0:
        row["failed"] = f"exit {row['rc']}: {row['stderr_tail'].strip()[-300:]}"
    return row


def readers(built: dict, timeout: float) -> list[dict]:
    """Every reader once, in a fresh process each; the rebuild last (it replaces the store)."""
    ws, big, small = built["ws"], str(built["big"]), str(built["small"])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("DIALSUM_WORKSPACE", "DIALSUM_FAKE_GPU"):
        env.pop(name, None)
    cli = [sys.executable, "-m", "dialsum_tui", "-w", ws]
    commands = {
        "results": cli + ["results"],
        "compare": cli + ["compare", big, small],
        "samples": cli + ["samples", big, "--vs", small],
        "handoff": cli + ["handoff"],
        "tui first snapshot": [sys.executable, __file__, "--child-snapshot", ws, big],
        "rebuild (rm state.db; ls)": cli + ["ls"],
    }
    rows = []
    for name in READERS:
        if name.startswith("rebuild"):
            state = Path(ws) / ".dialsum"
            for leftover in state.glob("state.db*"):
                leftover.unlink()
        rows.append({"reader": name, **measure(commands[name], env, timeout)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the big run's events.jsonl, decimal GB")
    parser.add_argument("--dir", default=None, help="where to build the workspace (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (and reuse one of the same size)")
    parser.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (and checkpoints)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one reader may take")
    parser.add_argument("--child-snapshot", nargs=2, metavar=("WS", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_snapshot:
        child_snapshot(args.child_snapshot[0], int(args.child_snapshot[1]))
        return 0

    from engine.artifacts import events_index_path
    from engine.contract import RunFiles

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="workspace-big-events-"))
    root = base / f"workspace-big-events-{args.gb:g}gb"
    results: dict[str, list[dict]] = {}
    try:
        facts = root / "built.json"
        if not (args.keep and facts.exists()):
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            start = time.perf_counter()
            built = build(root, int(args.gb * 1e9), args.eval_every)
            facts.write_text(json.dumps(built))
            print(f"built in {time.perf_counter() - start:.0f} s", flush=True)
        built = json.loads(facts.read_text())
        (root / "baseline").mkdir(exist_ok=True)
        results["baseline"] = readers(build(root / "baseline", 1, args.eval_every), args.timeout)
        events = RunFiles(Path(built["ws"]) / "runs" / str(built["big"])).events
        index = events_index_path(events)
        print(f"run {built['big']}: events.jsonl {events.stat().st_size / 1e9:.3f} GB, "
              f"index {index.stat().st_size / 1024:.0f} KiB", flush=True)
        results["index"] = readers(built, args.timeout)
        hidden = index.with_name(index.name + ".hidden")
        index.rename(hidden)  # a run written by an engine from before the index
        try:
            results["no index"] = readers(built, args.timeout)
        finally:
            hidden.rename(index)
    finally:
        if not args.keep:
            shutil.rmtree(root if args.dir else base, ignore_errors=True)

    variants = ("index", "no index", "baseline")
    print(f"\n{'reader':<28}" + "".join(f" {v + ': s':>13} {'peak MiB':>9}" for v in variants))
    for i, name in enumerate(READERS):
        line = f"{name:<28}"
        for variant in variants:
            row = results[variant][i]
            seconds, rss = ("-", "-") if "failed" in row else (f"{row['seconds']:.2f}", f"{row['peak_rss_mib']:.0f}")
            line += f" {seconds:>13} {rss:>9}"
        print(line)
    failed = [(variant, row) for variant, rows in results.items() for row in rows if "failed" in row]
    for variant, row in failed:
        print(f"{variant}: {row['reader']} failed: {row['failed']}", file=sys.stderr)
    print(json.dumps({"gb": args.gb, "written": built["written"], "rows": results}, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
