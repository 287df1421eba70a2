"""Provides RetryScreen: retry a run — resumed from its last complete checkpoint or from the start —
showing the config diff against the old snapshot, with one key editable (``key=value``) before queueing.

The screen never plans anything itself: it posts :class:`RetryScreen.Changed` and the app answers
with :meth:`RetryScreen.show_plan` (the manager validates the change like ``add``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from dialsum_tui.manager.runs.models import Run


class RetryScreen(ModalScreen[tuple[list[str], bool] | None]):
    """Dismisses with ``(overrides, resume)`` to queue, or None on ``escape``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    @dataclass
    class Changed(Message):
        """The user edited the key or the resume choice: the app re-plans and calls :meth:`show_plan`."""

        screen: RetryScreen
        run: Run
        overrides: list[str]
        resume: bool

    def __init__(self, run: Run, resume: bool) -> None:
        super().__init__()
        self.run = run
        self.resume = resume
        self.overrides: list[str] = []
        self.valid = False  # until the app says the plan is good, Queue stays off

    def compose(self) -> ComposeResult:
        how = "resume" if self.resume else "retry"
        with Vertical(id="dialog"):
            yield Static(Text(f"{how.capitalize()} run {self.run.id} ({self.run.nickname})", style="bold"),
                         id="dialog-title")
            yield Static(Text("working out the plan…", style="dim"), id="retry-where")
            yield Static(id="dialog-body")
            yield Input(placeholder="key=value, e.g. train.batch_size=4 (enter applies; empty enter queues)",
                        id="retry-set")
            with Horizontal(id="dialog-buttons"):
                yield Button("Queue", variant="success", id="queue", disabled=True)
                yield Button("Cancel (esc)", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#retry-set", Input).focus()

    def show_plan(self, lines: list[str], error: str | None, where: str | None) -> None:
        """Show the plan the app worked out: the diff and notes, or why it is refused."""
        self.valid = error is None
        self.query_one("#queue", Button).disabled = not self.valid
        if self.resume:
            start = f"continues from {where} of run {self.run.id}" if where else "cannot resume (see below)"
        else:
            start = "starts over from step 0"
        self.query_one("#retry-where", Static).update(Text(start, style="green" if where or not self.resume else "red"))
        body = Text("\n".join(lines))
        if error:
            body.append(("\n" if lines else "") + error, style="red")
        self.query_one("#dialog-body", Static).update(body)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            self._queue()
            return
        self.overrides = [value]  # one key at a time: the new one replaces the last
        self.post_message(self.Changed(self, self.run, list(self.overrides), self.resume))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "queue":
            self._queue()
        else:
            self.dismiss(None)

    def _queue(self) -> None:
        if self.valid:
            self.dismiss((list(self.overrides), self.resume))

    def action_cancel(self) -> None:
        self.dismiss(None)
