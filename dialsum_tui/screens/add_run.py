"""Provides AddRunScreen: pick a config under configs/ (or type a path) and an action to queue."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Select, Static

ACTIONS = ("pipeline", "train", "infer", "evaluate")


def list_configs(root: Path) -> list[str]:
    """Return the YAML configs under ``root/configs``, relative to ``root``, sorted."""
    configs = root / "configs"
    found = sorted(p for pattern in ("*.yaml", "*.yml") for p in configs.rglob(pattern) if p.is_file())
    return [str(p.relative_to(root)) for p in found]


class AddRunScreen(ModalScreen[tuple[str, str] | None]):
    """Dismisses with ``(config_path, action)`` or None on ``escape``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root
        self._configs = list_configs(root)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Add a run — pick a config (enter) or type a path", id="dialog-title")
            yield OptionList(*self._configs, id="config-list")
            yield Input(placeholder="configs/….yaml", id="config-path")
            with Horizontal(id="dialog-buttons"):
                yield Static("action", classes="label")
                yield Select([(a, a) for a in ACTIONS], value="pipeline", allow_blank=False, id="action")
        if not self._configs:
            self.notify(f"no *.yaml under {self._root / 'configs'}: type a path", severity="warning")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._submit(str(event.option.prompt))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._submit(event.value.strip())

    def _submit(self, path: str) -> None:
        self.dismiss((path, str(self.query_one(Select).value)))

    def action_cancel(self) -> None:
        self.dismiss(None)
