"""Provides GpuPanel: per-device memory bar, utilisation, temperature and processes, ours marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from dialsum_tui.widgets.formatting import bar, show_text
from engine.units import GIB, format_gib

if TYPE_CHECKING:
    from dialsum_tui.manager.snapshot import DeviceRun, GpuDevice

BAR_WIDTH = 8
# Above this many devices each gets one line (bar, memory, utilisation, who holds it), so a 4- or 8-GPU
# server fits the panel's height instead of showing GPU0 and GPU1 only (seen on a 4×H100 host).
COMPACT_ABOVE = 2


def render_gpus(gpus: Sequence[GpuDevice], note: str, owners: Mapping[int, tuple[int, str]],
                device_runs: Mapping[int, Sequence[DeviceRun]] | None = None) -> Text:
    """Render GPU devices as text.

    Args:
        gpus: ``GpuDevice`` records from the manager's GPU source.
        note: the source's description, shown when there are no devices (CPU-only host).
        owners: pid -> (run id, nickname) for our runs, to mark their processes.
        device_runs: device index -> every run of ours on it (several when GPUs are shared), with
            its stage's measured peak and prediction; listed instead of our bare processes.

    Returns:
        Rich text, one block per device.
    """
    text = Text()
    if not gpus:
        return text.append(note or "no GPU", style="dim")
    device_runs = device_runs or {}
    if len(gpus) > COMPACT_ABOVE:
        return _compact(gpus, owners, device_runs)
    for n, gpu in enumerate(gpus):
        if n:
            text.append("\n")
        _memory_bar(text, gpu)
        text.append(f" {gpu.used_bytes / GIB:.1f}/{format_gib(gpu.total_bytes)}")
        util = f"{gpu.util_percent}%" if gpu.util_percent is not None else "-"
        temp = f"{gpu.temperature_c}°C" if gpu.temperature_c is not None else "-"
        text.append(f"\n  util {util} · {temp} · ")
        text.append(gpu.name, style="dim")
        runs = device_runs.get(gpu.index, ())
        for run in runs:  # every run of ours on the device, even where NVML attributes no process
            text.append(f"\n  {format_gib(run.used_bytes):>9} ")
            text.append(f"run {run.run_id} {run.nickname}", style="bold cyan")
            text.append(_run_memory(run), style="dim")
        for proc in gpu.processes:
            owner = owners.get(proc.pid)
            if owner and runs:
                continue  # listed above, by run
            # Whom the memory belongs to comes first: the pid is the detail a narrow panel may cut.
            who = f"run {owner[0]} {owner[1]}" if owner else f"{proc.user or 'not ours'} (not ours)"
            text.append(f"\n  {format_gib(proc.used_bytes):>9} ")
            text.append(who, style="bold cyan" if owner else "yellow")
            text.append(f" · pid {proc.pid}", style="dim")
    return text


def _memory_bar(text: Text, gpu: GpuDevice) -> None:
    """``GPU0 ██░░░░░░``: the name and the used share, green → yellow (60 %) → red (90 %)."""
    fraction = gpu.used_bytes / gpu.total_bytes if gpu.total_bytes else 0.0
    style = "red" if fraction > 0.9 else "yellow" if fraction > 0.6 else "green"
    text.append(f"GPU{gpu.index} ", style="bold")
    text.append(bar(fraction, BAR_WIDTH), style=style)


def _run_memory(run: DeviceRun) -> str:
    """`` · train · peak 9.5 / pred 17.1 GiB``: the stage and what its memory was measured and predicted at."""
    parts = [run.stage] if run.stage else []
    figures = [f"peak {run.measured_gib:.1f}" if run.measured_gib is not None else "",
               f"pred {run.predicted_gib:.1f}" if run.predicted_gib is not None else ""]
    if any(figures):
        parts.append(" / ".join(f for f in figures if f) + " GiB")
    return "".join(f" · {p}" for p in parts)


def _holders(gpu: GpuDevice, owners: Mapping[int, tuple[int, str]],
             runs: Sequence[DeviceRun] = ()) -> Text:
    """Who holds the device, ours first by run: ``run 5 llama · kim (not ours)``."""
    names: list[tuple[str, str]] = [(f"run {r.run_id} {r.nickname}", "bold cyan") for r in runs]
    for proc in gpu.processes:
        owner = owners.get(proc.pid)
        name = (f"run {owner[0]} {owner[1]}", "bold cyan") if owner else (f"{proc.user or 'not ours'} (not ours)", "yellow")
        if name not in names:
            names.append(name)
    text = Text()
    for n, (name, style) in enumerate(names):
        text.append(" · " if n else " ")
        text.append(name, style=style)
    return text


def _compact(gpus: Sequence[GpuDevice], owners: Mapping[int, tuple[int, str]],
             device_runs: Mapping[int, Sequence[DeviceRun]]) -> Text:
    text = Text()
    for n, gpu in enumerate(gpus):
        if n:
            text.append("\n")
        _memory_bar(text, gpu)
        text.append(f" {gpu.used_bytes / GIB:4.1f}/{gpu.total_bytes / GIB:.0f}G")
        text.append(f" {gpu.util_percent:>3}%" if gpu.util_percent is not None else "   -", style="dim")
        text.append_text(_holders(gpu, owners, device_runs.get(gpu.index, ())))
    return text


class GpuPanel(Static):
    """Shows the latest GPU snapshot; redraws only when the snapshot changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__("GPU: waiting for the first sample…", **kwargs)
        self._shown: tuple | None = None
        self._text: Text | None = None

    def show(self, gpus: Sequence[GpuDevice], note: str, owners: Mapping[int, tuple[int, str]],
             device_runs: Mapping[int, Sequence[DeviceRun]] | None = None) -> None:
        """Render a snapshot unless it is the one already shown."""
        runs = tuple(sorted((k, tuple(v)) for k, v in (device_runs or {}).items()))
        key = (tuple(gpus), note, tuple(sorted(owners.items())), runs)
        if key != self._shown:
            self._shown = key
            text = render_gpus(gpus, note, owners, device_runs)
            show_text(self, text, self._text)
            self._text = text
