"""Provides AddRunScreen: pick a config under configs/ (or type a path), an action, GPUs and a run to wait for.

The dialog does not queue anything itself: it posts :class:`AddRunScreen.Submitted`, and the app
either closes it (queued) or shows the manager's refusal under the fields (:meth:`AddRunScreen.show_error`),
so a typo in the path or a config the preflight refuses is fixed in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Select, Static

ACTIONS = ("pipeline", "train", "infer", "evaluate")


@dataclass(frozen=True)
class AddChoice:
    """What the dialog asks the app to queue."""

    path: str
    action: str = "pipeline"
    gpus: str | None = None  # "0" or "0,1"; None = any
    after: int | None = None  # start only after this run succeeded
    sweep: tuple[str, ...] = ()  # "KEY=V1,V2" axes: a sweep of the config instead of one run

    @property
    def manager_args(self) -> dict[str, Any]:
        """The keyword arguments of ``Manager.add`` (or ``add_sweep``, with ``axes``) besides the path."""
        args: dict[str, Any] = {"action": self.action, "gpus": self.gpus, "after": self.after}
        return args | ({"axes": list(self.sweep)} if self.sweep else {})


def parse_sweep(text: str) -> tuple[str, ...]:
    """``"train.learning_rate=1e-4,2e-4; lora.r=8,16"`` → one axis per ``;`` (blank: no sweep).

    Raises:
        ValueError: an axis without ``=``, saying what to type.
    """
    axes = tuple(part.strip() for part in text.split(";") if part.strip())
    for axis in axes:
        if "=" not in axis:
            raise ValueError(f"sweep {axis!r}: type KEY=V1,V2 (several axes separated by ';'), "
                             "e.g. train.learning_rate=1e-4,2e-4")
    return axes


def parse_gpus(text: str) -> str | None:
    """Return device indices as ``"0,1"`` (None when blank).

    Raises:
        ValueError: saying what to type instead.
    """
    text = text.strip().replace(" ", "")
    if not text:
        return None
    parts = text.split(",")
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"GPU {text!r}: type device indices such as 0 or 0,1 (blank = any GPU)")
    return ",".join(parts)


def parse_after(text: str) -> int | None:
    """Return the run id to wait for (None when blank).

    Raises:
        ValueError: saying what to type instead.
    """
    text = text.strip().lstrip("#")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"after run {text!r}: type a run id from the queue's ID column, e.g. 3 (blank = start "
                         "when admitted)")
    return int(text)


def list_configs(root: Path) -> list[str]:
    """Return the YAML configs under ``root/configs``, relative to ``root``, sorted."""
    configs = root / "configs"
    found = sorted(p for pattern in ("*.yaml", "*.yml") for p in configs.rglob(pattern) if p.is_file())
    return [str(p.relative_to(root)) for p in found]


class AddRunScreen(ModalScreen[None]):
    """Posts :class:`Submitted` for the app to queue; closes on ``escape`` or when the app says it queued.
    Bad GPU/after input, and whatever the manager refuses, is said in place under the fields."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    @dataclass
    class EstimateWanted(Message):
        """A config was picked or typed: the app asks the manager for its GPU memory estimate and
        answers with :meth:`show_estimate` (the dialog never reads the config itself)."""

        screen: AddRunScreen
        path: str
        gpus: str | None

    @dataclass
    class Submitted(Message):
        """The user chose a config: the app queues it, then dismisses the screen or calls :meth:`show_error`."""

        screen: AddRunScreen
        choice: AddChoice

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root
        self._configs = list_configs(root)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Add a run — pick a config (enter) or type a path", id="dialog-title")
            yield OptionList(*self._configs, id="config-list")
            yield Input(placeholder="configs/….yaml", id="config-path")
            with Horizontal(id="dialog-fields"):
                yield Static("action", classes="label")
                yield Select([(a, a) for a in ACTIONS], value="pipeline", allow_blank=False, id="action")
                yield Static("GPU", classes="label")
                yield Input(placeholder="any", id="gpus")
                yield Static("after run", classes="label")
                yield Input(placeholder="-", id="after")
            yield Input(placeholder="sweep (optional): train.learning_rate=1e-4,2e-4; lora.r=8,16", id="sweep")
            yield Static("", id="dialog-estimate")
            with VerticalScroll(id="dialog-error"):
                yield Static("", id="dialog-error-text")
        if not self._configs:
            self.notify(f"no *.yaml under {self._root / 'configs'}: type a path", severity="warning")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._want_estimate(str(event.option.prompt))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "config-path" and event.value.strip().endswith((".yaml", ".yml")):
            self._want_estimate(event.value.strip())

    def _want_estimate(self, path: str) -> None:
        try:
            gpus = parse_gpus(self.query_one("#gpus", Input).value)
        except ValueError:
            gpus = None
        self.post_message(self.EstimateWanted(self, path, gpus))

    def show_estimate(self, line: str) -> None:
        """Show the picked config's GPU memory estimate (or why there is none) above the error box."""
        self.query_one("#dialog-estimate", Static).update(Text(line, style="dim"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._submit(str(event.option.prompt))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = self.query_one("#config-path", Input).value.strip()
        if event.input.id not in ("config-path",) and not path:
            highlighted = self.query_one(OptionList).highlighted
            path = self._configs[highlighted] if highlighted is not None and self._configs else ""
        if path:
            self._submit(path)
        else:
            self._say("pick a config in the list or type its path")

    def _submit(self, path: str) -> None:
        try:
            gpus = parse_gpus(self.query_one("#gpus", Input).value)
            after = parse_after(self.query_one("#after", Input).value)
            sweep = parse_sweep(self.query_one("#sweep", Input).value)
        except ValueError as err:
            self._say(str(err))
            return
        self._say(f"queueing {path}{' as a sweep' if sweep else ''}…", error=False)
        choice = AddChoice(path, str(self.query_one(Select).value), gpus, after, sweep)
        self.post_message(self.Submitted(self, choice))

    def show_error(self, message: str) -> None:
        """Say under the fields why the app could not queue the choice; the dialog stays open to fix it."""
        self._say(message)

    def _say(self, message: str, error: bool = True) -> None:
        self.query_one("#dialog-error-text", Static).update(Text(message, style="" if error else "dim"))
        box = self.query_one("#dialog-error")
        box.add_class("-shown")
        box.set_class(not error, "-working")
        box.scroll_home(animate=False)

    def action_cancel(self) -> None:
        self.dismiss(None)
