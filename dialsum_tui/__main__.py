"""Provides the ``dialsum-tui`` console script and ``python -m dialsum_tui``."""

from __future__ import annotations

import signal
import sys

from dialsum_tui.cli import main as cli_main


def main() -> int:
    """Console-script entry point: parse ``sys.argv`` and exit with the CLI's code."""
    # `dialsum-tui ls --json | head` should end quietly, like any Unix tool, not with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
