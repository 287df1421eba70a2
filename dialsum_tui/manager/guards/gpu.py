"""Provides GPU snapshots from NVML (or a scripted/no-GPU stand-in) and the description of who
really holds GPU memory (the /proc look-ups behind it live in :mod:`dialsum_tui.manager.process`).

NVML is queried in-process (microseconds per call); ``nvidia-smi`` is never run (25-95 ms a call).
``pynvml`` is imported lazily so the manager starts and works on machines without a driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dialsum_tui.manager.procfs import (
    ALIVE,
    GONE,
    ns_pid_map,
    nvidia_device_holders,
    pid_state,
    process_container,
    process_group,
    process_identity,
)
from dialsum_tui.manager.workspace.settings import env_settings
from engine.units import MIB, format_gib


@dataclass(frozen=True)
class GpuProcess:
    """One compute process NVML lists on a device (pid as NVML reports it: maybe a host pid)."""

    pid: int
    gpu_index: int
    used_bytes: int
    name: str = ""
    user: str = ""


@dataclass(frozen=True)
class GpuDevice:
    """One device at one instant."""

    index: int
    name: str
    used_bytes: int
    total_bytes: int
    util_percent: int | None
    temperature_c: int | None
    processes: tuple[GpuProcess, ...] = ()


class GpuSource(Protocol):
    """Anything that can snapshot the GPUs; the guard and the TUI only see this."""

    def devices(self) -> list[GpuDevice]:
        """Return one snapshot of every device ([] when there is no GPU)."""
        ...

    def describe(self) -> str:
        """Return a one-line description of where the numbers come from."""
        ...


# --- sources ----------------------------------------------------------------------------------


class NoGpuSource:
    """No NVIDIA GPU (or no driver): CPU runs proceed."""

    def __init__(self, reason: str = "NVML not found"):
        self.reason = reason

    def devices(self) -> list[GpuDevice]:
        return []

    def describe(self) -> str:
        return f"no NVIDIA GPU ({self.reason}): CPU runs proceed"


class NvmlGpuSource:
    """Real devices through nvidia-ml-py; raises at construction when NVML is unusable."""

    def __init__(self) -> None:
        import pynvml  # lazy: absent driver must not break importing the manager

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._count = pynvml.nvmlDeviceGetCount()
        self._driver = _text(pynvml.nvmlSystemGetDriverVersion())
        names = [_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(self._count)]
        self._summary = ", ".join(sorted({f"{names.count(n)} × {n}" for n in names})) or "0 devices"

    def devices(self) -> list[GpuDevice]:
        nv = self._nvml
        out = []
        for index in range(self._count):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuDevice(
                    index=index,
                    name=_text(nv.nvmlDeviceGetName(handle)),
                    used_bytes=int(mem.used),
                    total_bytes=int(mem.total),
                    util_percent=_optional(lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu),
                    temperature_c=_optional(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
                    processes=tuple(self._processes(handle, index)),
                )
            )
        return out

    def _processes(self, handle: Any, index: int) -> Iterable[GpuProcess]:
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except self._nvml.NVMLError:
            return []
        # usedGpuMemory is None where the driver cannot attribute memory (e.g. some containers/MIG).
        return [
            GpuProcess(int(p.pid), index, int(p.usedGpuMemory or 0), *process_identity(int(p.pid)))
            for p in procs
        ]

    def describe(self) -> str:
        return f"NVML: {self._summary}, driver {self._driver}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read: Any) -> int | None:
    # Utilisation/temperature are unsupported on some boards (and MIG slices): show "—", don't fail.
    try:
        return int(read())
    except Exception:  # pynvml raises many NVMLError subclasses; none of them is fatal here
        return None


class ScriptedGpuSource:
    """Replays recorded frames: each :meth:`devices` call advances one frame and stays on the last.

    Used by tests and the demo (``$DIALSUM_FAKE_GPU``) to script e.g. memory released late.
    """

    def __init__(self, frames: list[list[GpuDevice]], label: str = "scripted"):
        if not frames:
            raise ValueError("ScriptedGpuSource needs at least one frame")
        self.frames = frames
        self.label = label
        self.calls = 0

    def devices(self) -> list[GpuDevice]:
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        return list(frame)

    def describe(self) -> str:
        first = self.frames[0]
        names = ", ".join(sorted({d.name for d in first})) or "no device"
        return f"scripted GPU ({self.label}): {len(first)} × {names}"

    @classmethod
    def from_json(cls, path: str | Path, pids: dict[str, int] | None = None) -> ScriptedGpuSource:
        """Load frames from JSON.

        Format: ``{"frames": [{"repeat": 2, "devices": [{"index": 0, "name": "...", "used_mib": 480,
        "total_mib": 81559, "util": 0, "temp": 30, "processes": [{"pid": 4711, "used_mib": 14540}]}]}]}``.
        A frame may also be a bare device list. A pid may be a string ``"$name"``, replaced from
        ``pids`` so tests can point at a real process they started.

        Raises:
            ValueError: naming the file and the frame/key that is wrong.
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read scripted GPU frames ({err})") from None
        raw_frames = doc.get("frames") if isinstance(doc, dict) else None
        if not isinstance(raw_frames, list) or not raw_frames:
            raise ValueError(f"{path}: expected an object with a non-empty 'frames' list")
        frames: list[list[GpuDevice]] = []
        for n, raw in enumerate(raw_frames):
            where = f"{path}: frames[{n}]"
            spec = raw if isinstance(raw, dict) else {"devices": raw}
            try:
                devices = [_device_from_json(d, pids or {}) for d in spec["devices"]]
                repeat = int(spec.get("repeat", 1))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{where}: bad device entry ({err}); see tests/fixtures/gpu/*.json") from None
            frames.extend([devices] * max(repeat, 1))
        return cls(frames, label=path.name)


def _device_from_json(d: dict[str, Any], pids: dict[str, int]) -> GpuDevice:
    index = int(d["index"])
    procs = tuple(
        GpuProcess(
            pid=_pid(p["pid"], pids),
            gpu_index=index,
            used_bytes=int(p.get("used_mib", 0) * MIB),
            name=str(p.get("name", "")),
            user=str(p.get("user", "")),
        )
        for p in d.get("processes", [])
    )
    return GpuDevice(
        index=index,
        name=str(d.get("name", "Scripted GPU")),
        used_bytes=int(d["used_mib"] * MIB),
        total_bytes=int(d.get("total_mib", 81559) * MIB),
        util_percent=d.get("util"),
        temperature_c=d.get("temp"),
        processes=procs,
    )


def _pid(value: int | str, pids: dict[str, int]) -> int:
    if isinstance(value, str) and value.startswith("$"):
        if value[1:] not in pids:
            raise KeyError(f"pid placeholder {value} not given")
        return pids[value[1:]]
    return int(value)


def foreign_holders(source: GpuSource, ours: set[int]) -> str | None:
    """``"pid 4711 held 14.2 GiB on GPU 0; …"`` for every process not in ``ours`` (None: none, or NVML failed)."""
    try:
        devices = source.devices()
    except Exception:  # NVML can fail at any call; this is evidence for a verdict, not a guard
        return None
    others = [f"pid {p.pid} held {format_gib(p.used_bytes)} on GPU {p.gpu_index}"
              for d in devices for p in d.processes if p.pid not in ours]
    return "; ".join(others) or None


def open_gpu_source() -> GpuSource:
    """Return the GPU source for this machine.

    ``$DIALSUM_FAKE_GPU=path.json`` → :class:`ScriptedGpuSource` (tests/demo); else NVML;
    else :class:`NoGpuSource` saying why.
    """
    fake = env_settings().fake_gpu
    if fake:
        return ScriptedGpuSource.from_json(fake)
    try:
        return NvmlGpuSource()
    except ImportError:
        return NoGpuSource("nvidia-ml-py not installed")
    except Exception as err:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: no usable GPU
        return NoGpuSource(f"NVML unavailable: {err}")


# --- who holds the memory ------------------------------------------------------------------


@dataclass
class Holder:
    """A process that holds memory on a device, resolved to what we know about it."""

    process: GpuProcess  # as NVML listed it
    local_pid: int | None  # the pid in our namespace, None when not visible here
    state: str  # ALIVE | ZOMBIE | GONE (of local_pid)
    run: tuple[int, str] | None = None  # (run_id, nickname) when it is one of ours
    real_holders: list[int] = field(default_factory=list)  # for a stale pid: who has /dev/nvidia open
    user: str = ""  # the Unix user of a holder that is not ours (whom to ask), "" when unknown
    container: str = ""  # "container 3f2a9c1b7d0e" where /proc shows one, else ""

    def describe(self) -> str:
        """Human line: "pid 4711 (not ours; python, user kim) holds 14.2 GiB on GPU 0 — ask kim"."""
        p = self.process
        who = f"run {self.run[0]}, {self.run[1]}" if self.run else "not ours"
        if self.local_pid is None:
            who += "; not visible here: a host pid or another container"
        elif self.local_pid != p.pid:
            who += f"; local pid {self.local_pid}"
        if self.run is None:
            named = [x for x in (p.name, self.user and f"user {self.user}", self.container) if x]
            who += ("; " + ", ".join(named)) if named else ""
        text = f"pid {p.pid} ({who}) holds {format_gib(p.used_bytes)} on GPU {p.gpu_index}"
        if self.run is None and self.user:
            text += f" — ask {self.user}"
        if self.state != ALIVE and self.local_pid is not None:
            text += f"; pid {self.local_pid} is {self.state}, so a forked child still holds it"
            if self.real_holders:
                text += " (" + ", ".join(f"pid {q}" for q in self.real_holders) + " has /dev/nvidia open)"
        return text


def resolve_holder(
    process: GpuProcess,
    owners: dict[int, tuple[int, str]],
    ns_map: dict[int, int] | None = None,
    device_holders: dict[int, set[str]] | None = None,
) -> Holder:
    """Work out who an NVML-listed process is: ours or not, alive, stale, and the real holder.

    Args:
        process: as NVML listed it.
        owners: pid -> (run_id, nickname) of our runs (live and finished).
        ns_map: from :func:`ns_pid_map` (computed when None).
        device_holders: from :func:`nvidia_device_holders` (scanned when None and needed).
    """
    ns_map = ns_pid_map() if ns_map is None else ns_map
    local: int | None = ns_map.get(process.pid)
    if local is None and pid_state(process.pid) != GONE:
        local = process.pid
    run = owners.get(process.pid) or (owners.get(local) if local is not None else None)
    if local is None and run is not None:
        local = process.pid  # our pid, now gone: a stale listing
    state = pid_state(local) if local is not None else GONE
    holder = Holder(process, local, state, run)
    if run is None:
        # Name whom to ask: NVML's user when the source gave one, else the owner of the visible pid.
        visible = local is not None and state != GONE
        holder.user = process.user or (process_identity(local)[1] if visible else "")
        holder.container = process_container(local) if visible else ""
    if local is not None and state != ALIVE:
        # Our runs lead their own process group, so a surviving forked child keeps pgid == leader pid.
        scanned = nvidia_device_holders() if device_holders is None else device_holders
        holder.real_holders = sorted(q for q in scanned if q != local and process_group(q) == local)
    return holder
