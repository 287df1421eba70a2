"""Provides RunDetailScreen: one run in full (enter on the queue) — the whole failure message, the hint,
the guard's reason, progress and config — what the queue's one-line note cuts with "…"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dialsum_tui.manager.snapshot import failure_headline, run_progress
from dialsum_tui.widgets.formatting import STATE_ICONS, duration

if TYPE_CHECKING:
    from dialsum_tui.manager.snapshot import Run


def render_run(run: Run) -> Text:
    """Everything the store says about ``run``, the failure first when it failed."""
    text = Text()
    text.append(f"run {run.id} · {run.nickname} · {STATE_ICONS[run.state]} · {run.action.value}\n", style="bold")
    failed = failure_headline(run)
    if failed:
        text.append(f"\n✖ {failed}\n", style="bold red")
        text.append(f"\n{(run.failure_message or '').rstrip()}\n", style="red")
        if run.failure_hint:
            text.append(f"\n→ {run.failure_hint}\n", style="yellow")
    elif run.reason:
        text.append(f"\n{run.reason}\n", style="yellow")
    facts = [("stage", run.stage or "-"), ("failed in", run.failed_stage), ("exit code", run.exit_code),
             ("GPU", run.gpus or "any"), ("after run", run.after), ("by", run.user or "-"),
             ("config", run.config_path), ("backend", run.backend + (f" · job {run.job_id}" if run.job_id else "")),
             ("from run", run.source_run), ("pid", run.pid)]
    progress = run_progress(run)
    if progress is not None and progress.step is not None:
        eta = f" · ETA {duration(progress.eta_s)}" if run.state.is_active and progress.eta_s else ""
        facts.append(("progress", f"{progress.step}/{progress.total}{eta}"))
    text.append("\n")
    for label, value in facts:
        if value is not None:
            text.append(f"{label:>10}  ", style="dim")
            text.append(f"{value}\n")
    text.append(f"\nthe log: dialsum-tui logs {run.id}", style="dim")
    return text


class RunDetailScreen(ModalScreen[None]):
    """Shows :func:`render_run` of the run it is given; esc, enter or q closes it, arrows scroll it."""

    BINDINGS = [Binding("escape,enter,q", "app.pop_screen", "Close")]

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="run-detail"):
            yield Static(render_run(self.run), id="run-detail-text")

    def on_mount(self) -> None:
        box = self.query_one("#run-detail")
        box.border_title = f"run {self.run.id} in full · esc closes"
        box.focus()  # the arrows scroll a long message at once
