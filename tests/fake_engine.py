"""Provides a stand-in for ``python -m engine`` in manager tests: same arguments, same run files,
no torch — it writes events, sleeps in short steps, and fails on demand.

Behaviour is set through the environment the worker passes on:
  FAKE_STEPS (default 5) and FAKE_STEP_S (default 0.1): length of each stage.
  FAKE_FAIL: comma list of ``[nickname/]stage:kind``; kind is oom, dtype, disk, data, hostoom,
      silent (exit 1, no event, no signature) or crash (a traceback with no known signature).
  FAKE_CHILD=1: spawn a child in the same process group (like a DataLoader worker) that outlives us.
  FAKE_IGNORE_SIGINT=1: ignore SIGINT, so only SIGTERM/SIGKILL stop it.
  FAKE_NEED_MODEL=1: infer fails unless the model it loads (--model-key, else --artifact-key) is complete.
  FAKE_PID_FILE: append "<pid> <stage>" to this file at start (tests find the stage process).
  FAKE_GATE: a train stage, its steps done, waits until this file exists before it ends (a test that
      must look at a running stage opens the gate when it has: no race with a slow machine).
  FAKE_SAVE_STEPS=N: train writes a marked checkpoint every N steps (and one at a SIGINT stop), as
      the real engine does (engine.checkpoints); --resume-from continues from its step.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from engine import artifacts
from engine.contract import CHECKPOINT_PREFIX, ArtifactKind, Event, ExitCode, FailureKind, RunFiles, Stage
from engine.failures import match_text

# FAKE_FAIL kinds that print a known signature (hostoom, silent and crash are handled apart).
MESSAGES = {
    FailureKind.OOM: "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.69 GiB total capacity)",
    FailureKind.DTYPE: "RuntimeError: expected scalar type BFloat16 but found Float",
    FailureKind.DISK: "OSError: [Errno 28] No space left on device",
    FailureKind.DATA: "DataError: data/train.csv row 3: missing column 'dialogue'",
    "crash": "RuntimeError: something nobody has seen before",
}
EXIT_CODES = {FailureKind.DATA: ExitCode.BAD_INPUT, FailureKind.CONFIG: ExitCode.BAD_INPUT}


def build_parser() -> argparse.ArgumentParser:
    """The stand-in's command line: the real engine's stage flags (tests/manager/test_engine_args.py
    holds the two parsers together), all stages in one parser."""
    parser = argparse.ArgumentParser(prog="fake_engine")
    parser.add_argument("command", choices=[str(stage) for stage in Stage])
    parser.add_argument("--config")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--split", default="both")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--predictions")
    parser.add_argument("--references")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--disk-root")  # the workspace's quota, handed over by the manager (unused here)
    parser.add_argument("--disk-stop-bytes", type=int)
    parser.add_argument("--artifact-key")  # <slug>-r<id>: this run's checkpoint dir and submission files
    parser.add_argument("--model-key")  # infer: the run whose final_model is loaded
    parser.add_argument("--resume-from")
    return parser


def _save_checkpoint(events: artifacts.EventWriter, trainer_dir: Path, step: int, total: int, tree: dict,
                     run_dir: Path) -> None:
    """A checkpoint-<step> directory with the real engine's completeness marker, announced as an artifact."""
    from engine.checkpoints import fingerprint, write_checkpoint_meta

    ckpt = trainer_dir / f"{CHECKPOINT_PREFIX}{step}"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "optimizer.pt").write_bytes(b"\0" * 512)
    write_checkpoint_meta(ckpt, step=step, total=total, config_hash="0", resume_fingerprint=fingerprint(tree),
                          run_dir=str(run_dir.resolve()))
    events.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path=str(ckpt.resolve()), bytes=512)


def _failure_for(nickname: str, stage: str) -> str | None:
    for item in filter(None, os.environ.get("FAKE_FAIL", "").split(",")):
        target, _, kind = item.partition(":")
        who, _, where = target.rpartition("/")
        if where == stage and (not who or who == nickname):
            return kind
    return None


def _score(nickname: str) -> dict[str, float]:
    # Deterministic per nickname so tests compare the table with the events, not with constants.
    seed = int(hashlib.sha256(nickname.encode()).hexdigest(), 16)
    r1, r2, rl = 0.3 + (seed % 100) / 500, 0.1 + (seed % 37) / 500, 0.25 + (seed % 53) / 500
    return {"rouge1": r1, "rouge2": r2, "rougeL": rl, "final": round((r1 + r2 + rl) / 3 * 100, 4)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    files = RunFiles(Path(args.run_dir))
    config_path = Path(args.config) if args.config else files.config
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    nickname = cfg.get("model", {}).get("nickname", "unknown")
    paths = cfg.get("paths", {})
    key = artifacts.stage_key(args.artifact_key, nickname)
    events = artifacts.EventWriter(files.events, command=args.command)

    if pid_file := os.environ.get("FAKE_PID_FILE"):
        with open(pid_file, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {args.command}\n")

    save_steps = int(os.environ.get("FAKE_SAVE_STEPS", "0"))
    trainer_dir = Path(paths.get("checkpoints", "checkpoints")) / nickname / "trainer" / files.root.name
    state = {"step": 0}

    def on_sigint(_sig: int, _frame: object) -> None:
        print("received SIGINT: stopping cleanly", flush=True)
        if args.command == Stage.TRAIN and save_steps and state["step"]:  # train.save_on_stop
            _save_checkpoint(events, trainer_dir, state["step"], steps, cfg, files.root)
        events.emit(Event.FAILED, kind=FailureKind.INTERRUPTED, message="interrupted by user (SIGINT)",
                    hint=FailureKind.INTERRUPTED.hint)
        sys.exit(ExitCode.INTERRUPTED)

    if os.environ.get("FAKE_IGNORE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, on_sigint)

    steps = int(os.environ.get("FAKE_STEPS", "5"))
    first = 1
    resumed = {}
    if args.resume_from:
        from engine.checkpoints import read_checkpoint_meta

        meta = read_checkpoint_meta(args.resume_from) or {}
        first = int(meta.get("step", 0)) + 1
        resumed = {"resumed_from": args.resume_from, "resumed_step": first - 1, "resumed_total": meta.get("total")}
    events.emit(Event.STARTED, nickname=nickname, model="fake", config_hash="0", device="cpu", dtype="float32",
                pid=os.getpid(), **resumed)
    print(f"[{args.command}] {nickname} started pid={os.getpid()}", flush=True)
    if os.environ.get("FAKE_CHILD") == "1":
        # Same process group (no new session): stands in for a forked DataLoader worker.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    step_s = float(os.environ.get("FAKE_STEP_S", "0.1"))
    fail = _failure_for(nickname, args.command)
    for step in range(first, steps + 1):
        time.sleep(step_s)
        state["step"] = step
        events.emit(Event.PROGRESS, step=step, total=steps, epoch=step / steps, eta_s=(steps - step) * step_s)
        if args.command == Stage.TRAIN and save_steps:
            events.emit(Event.TRAIN_LOG, step=step, loss=round(10.0 / step, 4))
            if step % save_steps == 0:
                _save_checkpoint(events, trainer_dir, step, steps, cfg, files.root)
        if fail and step == max(1, steps // 2):
            return _fail(events, fail)

    if args.command == Stage.TRAIN and (gate := os.environ.get("FAKE_GATE")):
        while not Path(gate).exists():
            time.sleep(0.05)

    if args.command == Stage.TRAIN:
        final = artifacts.final_model_dir(Path(paths.get("checkpoints", "checkpoints")), key)
        with artifacts.atomic_directory(final) as tmp:
            (tmp / "model.safetensors").write_bytes(b"\0" * 1024)
            artifacts.write_final_model_meta(tmp, {"nickname": nickname, "artifact_key": key})
        # Absolute, as the real engine records them (engine.config.resolve_path: cwd / the config's path).
        events.emit(Event.ARTIFACT, kind=ArtifactKind.FINAL_MODEL, path=str(final.absolute()), bytes=1024)
    elif args.command == Stage.INFER:
        model = artifacts.final_model_dir(Path(paths.get("checkpoints", "checkpoints")), args.model_key or key)
        if not artifacts.is_complete_model(model) and os.environ.get("FAKE_NEED_MODEL") == "1":
            print(f"OSError: {model} is not a complete model", flush=True)
            return _fail(events, "crash")
        subs = Path(paths.get("submissions", "submissions"))
        fnames = _test_fnames(Path(cfg.get("data", {}).get("dir", "data")))
        for path in (artifacts.submission_path(subs, key), artifacts.dev_predictions_path(subs, key)):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["fname", "summary"])
                writer.writerows([fname, "요약"] for fname in fnames)
            events.emit(Event.ARTIFACT, kind=ArtifactKind.SUBMISSION, path=str(path.absolute()), bytes=path.stat().st_size)
    else:
        events.emit(Event.EVAL, tokenizer="mecab", scorer="competition", n=1, split="dev", **_score(nickname))
    events.emit(Event.FINISHED, seconds=steps * step_s)
    print(f"[{args.command}] {nickname} finished", flush=True)
    return 0


def _test_fnames(data_dir: Path) -> list[str]:
    # Every fname of test.csv, in order, like the real engine's submission (results check it).
    try:
        with open(data_dir / "test.csv", encoding="utf-8", newline="") as fh:
            return [row["fname"] for row in csv.DictReader(fh)] or ["test_0"]
    except (OSError, KeyError):
        return ["test_0"]


def _fail(events: artifacts.EventWriter, kind: str) -> int:
    if kind == "hostoom":
        os.kill(os.getpid(), signal.SIGKILL)  # the kernel's OOM killer: no event, no log line
    if kind == "silent":
        return ExitCode.ERROR
    message = MESSAGES[kind]
    print("Traceback (most recent call last):\n  File \"train.py\", line 1, in <module>", file=sys.stderr)
    print(message, file=sys.stderr, flush=True)
    if kind != "crash":
        known = match_text(message)
        events.emit(Event.FAILED, kind=known.kind if known else FailureKind.UNKNOWN, message=message,
                    hint=known.hint if known else "")
    return EXIT_CODES.get(kind, ExitCode.ERROR)


if __name__ == "__main__":
    sys.exit(main())
