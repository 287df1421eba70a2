"""Provides the figures of issues 23/24: reading a huge ``events.jsonl`` (a run that logs every step)
the old way (``read_events``: everything, as dicts) and the bounded ways (``RunEvents.open``, with
and without the writer's index; ``EventTail`` catching up chunk by chunk).

Run: ``python benchmarks/event_file.py [--gb 2] [--dir /tmp] [--keep]``. Writes a synthetic run
(train: started, phases, a train_log and a progress per step, an eval and a checkpoint every
``--eval-every`` steps, warnings, final model, finished; then infer and evaluate) with the real
``EventWriter``, then times each reader in a fresh child process and reports its peak RSS
(``ru_maxrss``; a bare interpreter with the imports is the ``baseline`` row). The file is read
from the page cache (it was just written). Prints a table and a JSON line; asserts nothing beyond
"the bounded reader found every evaluation and checkpoint written" (figures belong in
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024 * 1024


def write_run(path: Path, size: int, eval_every: int = 5000, *, key: str = "kobart-r1", final_model: str | None = None,
              submission: str | None = None, dev_predictions: str | None = None, scored_n: int = 499) -> dict:
    """Write a realistic ``events.jsonl`` of about ``size`` bytes; return what was written (counts).

    ``final_model``, ``submission`` and ``dev_predictions`` are the paths its artifact events name
    (``benchmarks/workspace_big_events.py`` puts real files there); ``scored_n`` the dev rows scored.
    """
    final_model = final_model or f"checkpoints/{key}/final_model"
    outputs = {"test": submission or f"submissions/{key}_test.csv", "dev": dev_predictions or f"submissions/{key}_dev.csv"}
    import random

    from engine.artifacts import EventWriter
    from engine.contract import ArtifactKind, Event, Phase

    rng = random.Random(0)
    written = {"evals": 0, "checkpoints": 0, "steps": 0, "warnings": 0}
    with EventWriter(path, command="train") as ev:
        ev.emit(Event.STARTED, nickname="코바트-lr3e-5", model="digit82/kobart-summarization", config_hash="3f2a9c1d0b7e",
                device="cuda:0", dtype="bfloat16", pid=os.getpid(), world_size=1, kind="seq2seq", lora=False)
        ev.emit(Event.PHASE, name=Phase.LOAD_DATA)
        ev.emit(Event.WARNING, message="12 dialogues longer than 512 tokens were truncated", count=12)
        written["warnings"] += 1
        ev.emit(Event.PHASE, name=Phase.LOAD_MODEL)
        ev.emit(Event.PHASE, name=Phase.TRAIN)
        total = 10**8  # unknown up front: the loop below stops at the size
        step = 0
        while path.stat().st_size < size - 64 * 1024:
            for _ in range(1000):
                step += 1
                ev.emit(Event.TRAIN_LOG, step=step, epoch=round(step / 12457, 3), loss=round(2.5 * rng.random(), 4),
                        lr=5e-05 * (1 - step / total), grad_norm=round(3 * rng.random(), 4))
                ev.emit(Event.PROGRESS, step=step, total=total, epoch=round(step / 12457, 3),
                        eta_s=round(rng.random() * 86400, 1), tokens_per_s=round(5000 + rng.random() * 500, 1),
                        samples_per_s=round(40 + rng.random() * 5, 2))
                if step % eval_every == 0:
                    ev.emit(Event.EVAL, step=step, epoch=round(step / 12457, 3), rouge1=0.41, rouge2=0.22,
                            rougeL=0.39, final=34.0 + step / 10**6, sum=102.0, loss=1.2, tokenizer="mecab",
                            scorer="competition", n=scored_n, split="dev", seconds=41.5)
                    ev.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path=f"checkpoints/{key}/trainer/checkpoint-{step}",
                            bytes=1_490_000_000)
                    written["evals"] += 1
                    written["checkpoints"] += 1
        written["steps"] = step
        ev.emit(Event.PHASE, name=Phase.SAVE)
        ev.emit(Event.ARTIFACT, kind=ArtifactKind.FINAL_MODEL, path=final_model, bytes=1_490_000_000)
        ev.emit(Event.FINISHED, seconds=86400.0, metrics={"train_loss": 1.1}, pid=os.getpid())
    with EventWriter(path, command="infer") as ev:
        ev.emit(Event.STARTED, nickname="코바트-lr3e-5", model=final_model, pid=os.getpid(), split="both")
        for split, n in (("test", 499), ("dev", scored_n)):
            ev.emit(Event.PHASE, name=Phase.GENERATE, split=split, n=n)
            for batch in range(1, 17):
                ev.emit(Event.PROGRESS, step=batch, total=16, eta_s=round(16 - batch, 1), samples_per_s=31.2)
            ev.emit(Event.PHASE, name=Phase.WRITE, split=split)
            kind = ArtifactKind.SUBMISSION if split == "test" else ArtifactKind.DEV_PREDICTIONS
            ev.emit(Event.ARTIFACT, kind=kind, path=outputs[split], bytes=120_000)
        ev.emit(Event.FINISHED, seconds=60.0, pid=os.getpid())
    with EventWriter(path, command="evaluate") as ev:
        ev.emit(Event.STARTED, nickname="코바트-lr3e-5", predictions=outputs["dev"], tokenizer="mecab")
        ev.emit(Event.PHASE, name=Phase.SCORE)
        ev.emit(Event.EVAL, rouge1=0.43, rouge2=0.24, rougeL=0.41, final=36.0, sum=108.0, tokenizer="mecab",
                scorer="competition", n=scored_n, split="dev")
        ev.emit(Event.FINISHED, seconds=5.0, pid=os.getpid())
    written["evals"] += 1
    return written


def child(mode: str, path: str, max_points: int) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from engine.artifacts import EventTail, read_events
    from engine.event_reader import RunEvents

    facts: dict = {}
    start = time.perf_counter()
    if mode == "old":
        facts["events"] = len(read_events(path))
    elif mode.startswith("open"):
        summary = RunEvents.open(path, max_points)
        train = summary.stage("train")
        facts = {"bytes_read": summary.bytes_read, "scanned_bytes": summary.scanned_bytes, "indexed": summary.indexed,
                 "exact": summary.exact, "evals": len(summary.evals),
                 "checkpoints": sum(a.kind == "checkpoint" for a in summary.artifacts),
                 "loss_points": len(train.loss) if train else 0,
                 "last_step": train.progress.step if train and train.progress else None,
                 "stages": [s.stage for s in summary.stages],
                 "ended": [type(s.ended).__name__ for s in summary.stages]}
    elif mode == "drain":
        tail = EventTail(Path(path))
        facts["records"] = sum(1 for _ in tail.drain())
        facts["bytes_read"] = tail.bytes_read
    elif mode == "read_records":
        tail = EventTail(Path(path))
        facts["records"] = len(tail.read_records())
        facts["bytes_read"] = tail.bytes_read
    elif mode == "skip_to_end":
        tail = EventTail(Path(path))
        tail.skip_to_end()
        facts["bytes_read"] = tail.bytes_read
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": mode, "seconds": round(seconds, 3), "peak_rss_mib": round(rss, 1), **facts}))


def measure(mode: str, path: Path, max_points: int, limit_gb: float | None = None, timeout: float = 3600) -> dict:
    """Run :func:`child` in a fresh interpreter (with an address-space limit for the old reader)."""
    def cap() -> None:
        if limit_gb:
            limit = int(limit_gb * 1e9)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path), "--max-points", str(max_points)],
                          capture_output=True, text=True, env=env, preexec_fn=cap, timeout=timeout)
    if proc.returncode != 0:
        reason = "MemoryError" if "MemoryError" in proc.stderr else proc.stderr.strip().splitlines()[-1:]
        return {"mode": mode, "failed": f"{reason} after {time.perf_counter() - start:.1f} s"
                                         + (f" (RLIMIT_AS {limit_gb} GB)" if limit_gb else "")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="size of the events file, decimal GB")
    parser.add_argument("--dir", default=None, help="where to write it (default: a temporary directory, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the file (and reuse one of the same size)")
    parser.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (and checkpoints)")
    parser.add_argument("--max-points", type=int, default=500)
    parser.add_argument("--old-limit-gb", type=float, default=10.0,
                        help="address-space limit for the old full read (it takes ~8x the file)")
    parser.add_argument("--skip-old", action="store_true")
    parser.add_argument("--skip-drain", action="store_true", help="skip EventTail draining the whole file (slow)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.max_points)
        return 0

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="event-file-"))
    run_dir = root / f"event-file-{args.gb:g}gb"
    path = run_dir / "events.jsonl"
    from engine.artifacts import events_index_path

    index = events_index_path(path)
    try:
        if not (args.keep and path.exists() and (run_dir / "written.json").exists()):
            shutil.rmtree(run_dir, ignore_errors=True)
            start = time.perf_counter()
            written = write_run(path, int(args.gb * 1e9), args.eval_every)
            (run_dir / "written.json").write_text(json.dumps(written))
            print(f"wrote {path.stat().st_size / 1e9:.3f} GB ({written['steps']:,} steps, {written['evals']} evals, "
                  f"index {index.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - start:.0f} s", flush=True)
        written = json.loads((run_dir / "written.json").read_text())
        rows = [measure("baseline", path, args.max_points)]
        if not args.skip_old:
            rows.append(measure("old", path, args.max_points, limit_gb=args.old_limit_gb))
        rows.append(measure("open", path, args.max_points))
        hidden = index.with_name(index.name + ".hidden")
        index.rename(hidden)  # a file written before the index existed
        try:
            rows.append(measure("open (no index)", path, args.max_points))
        finally:
            hidden.rename(index)
        rows.append(measure("read_records", path, args.max_points))
        rows.append(measure("skip_to_end", path, args.max_points))
        if not args.skip_drain:
            rows.append(measure("drain", path, args.max_points))
    finally:
        if not args.keep:
            shutil.rmtree(run_dir if args.dir else root, ignore_errors=True)

    labels = {"baseline": "baseline (python + imports)", "old": "read_events (old: all, as dicts)",
              "open": "RunEvents.open (index)", "open (no index)": "RunEvents.open (no index: scan)",
              "read_records": "EventTail.read_records (one call)", "skip_to_end": "EventTail.skip_to_end",
              "drain": "EventTail.drain (typed, to the end)"}
    print(f"\n{'reader':<38} {'seconds':>9} {'peak RSS MiB':>13} {'bytes read':>14}  notes")
    for row in rows:
        if "failed" in row:
            print(f"{labels[row['mode']]:<38} {'-':>9} {'-':>13} {'-':>14}  {row['failed']}")
            continue
        notes = {k: v for k, v in row.items() if k not in ("mode", "seconds", "peak_rss_mib", "bytes_read")}
        read = f"{row['bytes_read']:,}" if "bytes_read" in row else "-"
        print(f"{labels[row['mode']]:<38} {row['seconds']:>9.3f} {row['peak_rss_mib']:>13.1f} {read:>14}  "
              f"{json.dumps(notes, ensure_ascii=False) if notes else ''}")
    ok = True
    for row in rows:
        if row["mode"].startswith("open") and "failed" not in row:
            found = (row["evals"], row["checkpoints"])
            if found != (written["evals"], written["checkpoints"]):
                print(f"{row['mode']}: found {found} evals/checkpoints, written "
                      f"{(written['evals'], written['checkpoints'])}", file=sys.stderr)
                ok = False
    print(json.dumps({"written": written, "rows": rows}, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
