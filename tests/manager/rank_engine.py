"""Provides a torch-free stand-in for ``python -m engine train`` under ``accelerate launch``: every rank
runs the real :func:`engine.runtime.run_command` (so events, rank tagging and exit codes are the
engine's), steps in short sleeps, and ``RANK_FAIL=N`` makes rank N crash with a CUDA OOM message.

``RANK_PID_FILE``: each rank appends "<rank> <pid>" to it at start (tests find the ranks).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from engine.artifacts import process_rank, world_size
from engine.contract import Event
from engine.runtime import raise_if_stopped, run_command


def body(args: argparse.Namespace, events) -> dict:
    rank = process_rank()
    if os.environ.get("RANK_PID_FILE"):
        with open(os.environ["RANK_PID_FILE"], "a", encoding="utf-8") as fh:
            fh.write(f"{rank} {os.getpid()}\n")
    events.emit(Event.STARTED, nickname="ranks", world_size=world_size())
    steps = int(os.environ.get("RANK_STEPS", "20"))
    for step in range(1, steps + 1):
        time.sleep(0.05)
        raise_if_stopped()
        if str(rank) == os.environ.get("RANK_FAIL") and step == 3:
            raise RuntimeError(f"torch.OutOfMemoryError: CUDA out of memory on rank {rank} at step {step}")
        events.emit(Event.PROGRESS, step=step, total=steps)
    return {"steps": steps}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rank_engine")
    parser.add_argument("command")
    parser.add_argument("--config")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--split", default="both")
    parser.add_argument("--predictions")
    parser.add_argument("--references")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--disk-root")  # the manager hands every train stage its disk limit
    parser.add_argument("--disk-stop-bytes", type=int)
    parser.add_argument("--artifact-key")  # every stage's files are keyed by run (<slug>-r<id>)
    parser.add_argument("--model-key")
    args = parser.parse_args(argv)
    return run_command(args.command, args, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
