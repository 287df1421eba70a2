"""Runs the detached worker: ``python -m dialsum_tui.manager.worker WORKSPACE`` (what the CLI and the TUI start)."""

import sys

from dialsum_tui.manager.worker.loop import main

sys.exit(main())
