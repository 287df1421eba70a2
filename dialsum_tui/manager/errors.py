"""Provides the root of every error a user can cause: :class:`DialsumError` carries its message
(what went wrong and what to do) and the exit code the CLI ends with; :func:`exit_code_of` maps any
exception to that code in this one place (the engine's own errors included).
"""

from __future__ import annotations

import sqlite3

from engine.config import ConfigError
from engine.contract import ExitCode
from engine.data import DataError


class DialsumError(Exception):
    """An error the user can act on: ``str(err)`` says what to do; the CLI exits with ``exit_code``.

    Subclasses set the class attribute; one raise site may override it (``DialsumError(msg, ExitCode.ERROR)``).
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str = "", exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class OperationFailed(DialsumError):
    """The input was right but the operation could not be done (a process would not stop, a port is taken)."""

    exit_code = ExitCode.ERROR


def exit_code_of(err: BaseException) -> ExitCode:
    """The CLI's exit code for ``err``: bad input is 2, a failed operation 1, an interrupt 130."""
    if isinstance(err, DialsumError):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(err, (ConfigError, DataError, sqlite3.DatabaseError)):
        return ExitCode.BAD_INPUT  # a file the user can fix (or `repair`): the message names it
    return ExitCode.ERROR
