"""Provides a stand-in stage command for the Slurm tests: writes each signal it receives to a file.

Usage: python signal_probe.py FILE [--exit-on-int] [--ignore-term]
  Appends "start <pid>" to FILE, then "INT" / "TERM" per signal received, and sleeps until killed.
  --exit-on-int: exit 130 on SIGINT (the engine's clean stop); otherwise SIGINT is only noted.
  --ignore-term: note SIGTERM and keep running (only SIGKILL ends it), as a stuck stage would.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    path, flags = sys.argv[1], set(sys.argv[2:])

    def note(text: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def on_int(_sig: int, _frame: object) -> None:
        note("INT")
        if "--exit-on-int" in flags:
            sys.exit(130)

    def on_term(_sig: int, _frame: object) -> None:
        note("TERM")
        if "--ignore-term" not in flags:
            sys.exit(143)

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    note(f"start {os.getpid()}")
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
