"""Provides the disk meter (measured like ``du``, cached for readers) and the footprint a run will
add, which the disk guard checks against the quota before launch.

A container quota is invisible to ``df``, so usage is the allocated size of the quota'd tree, as
``du`` counts it. That walk is slow on big trees: the worker runs :func:`measure` in a background
thread and :func:`write_cache`; everyone else calls :func:`read_cached`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.artifacts import atomic_write_text

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace import Workspace
    from engine.config import RunConfig

GB = 1000**3  # the quota is stated in GB; decimal GB is the smaller (safer) reading of "150 GB"
MB = 1000**2


@dataclass
class DiskUsage:
    """One measurement of the quota'd tree."""

    path: str
    used_bytes: int
    limit_bytes: int
    safe_bytes: int
    margin_bytes: int
    measured_at: float
    seconds: float
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (label, bytes), biggest first

    def summary(self) -> str:
        """One line: "141.0/150 GB used (safe 110 GB) on /ws, measured 12s ago"."""
        age = time.time() - self.measured_at
        return (
            f"{used_of_limit(self.used_bytes, self.limit_bytes)} used (safe {human(self.safe_bytes)}) "
            f"on {self.path}, measured {age:.0f}s ago"
        )


def human(n_bytes: float) -> str:
    """Format bytes in decimal units, as the quota is stated ("9.8 GB", "640 MB")."""
    if abs(n_bytes) >= GB:
        return f"{n_bytes / GB:.1f} GB"
    return f"{n_bytes / MB:.0f} MB" if abs(n_bytes) >= MB else f"{n_bytes / 1000:.0f} kB"


def used_of_limit(used: int, limit: int) -> str:
    """Format "141.0/150 GB" (or MB for small test quotas)."""
    if limit >= GB:
        return f"{used / GB:.1f}/{limit / GB:.0f} GB"
    return f"{used / MB:.1f}/{limit / MB:.0f} MB"


def _in_workspace(workspace: Workspace, value: str) -> Path:
    # Settings paths are relative to the workspace root, like every path stages see (cwd = root).
    path = Path(value).expanduser()
    return path if path.is_absolute() else workspace.root / path


# --- measuring -------------------------------------------------------------------------------


class _Walker:
    """Sums allocated bytes like ``du -sx``: st_blocks × 512, each inode once, symlinks not followed."""

    def __init__(self, device: int):
        self.device = device
        self.seen: set[tuple[int, int]] = set()

    def size(self, top: Path, skip: set[str] = frozenset()) -> int:  # type: ignore[assignment]
        total = 0
        try:
            st = os.lstat(top)
        except OSError:
            return 0
        if st.st_dev != self.device:
            return 0  # another filesystem: not under this quota (du -x)
        total += self._count(st)
        if not stat.S_ISDIR(st.st_mode):
            return total
        stack = [str(top)]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue  # unreadable directory: du warns and goes on
            for entry in entries:
                if entry.path in skip:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != self.device:
                    continue
                total += self._count(st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
        return total

    def _count(self, st: os.stat_result) -> int:
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                return 0
            self.seen.add(key)
        return st.st_blocks * 512


def consumer_dirs(workspace: Workspace) -> list[tuple[str, Path]]:
    """Return the labelled directories usage is broken down into (checkpoints/<nick> each, runs, ...)."""
    labelled: list[tuple[str, Path]] = []
    try:
        nicks = sorted(p for p in workspace.checkpoints_dir.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        nicks = []
    labelled += [(f"checkpoints/{p.name}", p) for p in nicks]
    labelled += [("runs", workspace.runs_dir), ("submissions", workspace.submissions_dir), ("data", workspace.data_dir)]
    for raw in workspace.settings().hf_cache_dirs:
        path = _in_workspace(workspace, raw)
        labelled.append((f"HF {path.name} cache", path))
    return labelled


def measure(workspace: Workspace) -> DiskUsage:
    """Measure the quota'd tree like ``du -sx`` and break it down by consumer.

    Consumers outside the quota tree (an HF cache in another filesystem, say) are listed with
    "(outside quota)" and not added to the total. Slow on big trees: call it off the UI thread.

    Args:
        workspace: supplies the settings (quota_path, quota_gb, safe_gb, margin_gb, hf_cache_dirs).
    """
    started = time.time()
    settings = workspace.settings()
    root = _in_workspace(workspace, settings.quota_path).resolve()
    try:
        walker = _Walker(os.lstat(root).st_dev)
    except OSError:
        walker = _Walker(-1)
    consumers: list[tuple[str, int]] = []
    inside: set[str] = set()
    for label, path in consumer_dirs(workspace):
        resolved = path.resolve() if path.exists() else path
        if not resolved.exists():
            continue
        if resolved == root:
            continue  # the consumer is the whole quota tree: nothing to break down
        if root not in resolved.parents:
            outside = _Walker(os.lstat(resolved).st_dev)
            consumers.append((f"{label} (outside quota)", outside.size(resolved)))
            continue
        if any(Path(other) in resolved.parents or Path(other) == resolved for other in inside):
            continue  # nested in a consumer already counted
        inside.add(str(resolved))
        consumers.append((label, walker.size(resolved)))
    other = walker.size(root, skip=inside)
    counted = sum(b for label, b in consumers if not label.endswith("(outside quota)"))
    consumers.append(("other", other))
    consumers.sort(key=lambda c: -c[1])
    return DiskUsage(
        path=str(root),
        used_bytes=counted + other,
        limit_bytes=int(settings.quota_gb * GB),
        safe_bytes=int(settings.safe_gb * GB),
        margin_bytes=int(settings.margin_gb * GB),
        measured_at=time.time(),
        seconds=time.time() - started,
        consumers=consumers,
    )


def write_cache(workspace: Workspace, usage: DiskUsage) -> None:
    """Store ``usage`` in ``.dialsum/disk.json`` atomically (private to the user)."""
    atomic_write_text(workspace.disk_cache_path, json.dumps(asdict(usage), ensure_ascii=False), mode=0o600)


def read_cached(workspace: Workspace) -> DiskUsage | None:
    """Return the last measurement the worker cached, None if there is none (or it is unreadable)."""
    try:
        raw = json.loads(workspace.disk_cache_path.read_text(encoding="utf-8"))
        raw["consumers"] = [(str(label), int(n)) for label, n in raw.get("consumers", [])]
        return DiskUsage(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None


# --- projection ------------------------------------------------------------------------------

_SIZE_HINT = re.compile(r"(?<![a-z0-9])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)
# Hub ids without a size in the name that the team used, and the T5/BART size words.
_KNOWN_PARAMS = {
    "kobart": 124e6,
    "pko-t5-small": 95e6,
    "pko-t5-base": 275e6,
    "pko-t5-large": 820e6,
}
_SIZE_WORDS = {"tiny": 20e6, "small": 100e6, "base": 300e6, "large": 850e6, "xl": 3e9}
UNKNOWN_PARAMS = 1.5e9  # no hint at all: assume a mid-size model rather than a small one
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TOKENIZER_BYTES = 50 * MB  # tokenizer + configs saved next to each checkpoint
PREDICTIONS_BYTES = 20 * MB  # submission + dev predictions CSVs (499 rows each), with slack


def estimate_params(name_or_path: str, root: Path | None = None) -> tuple[float, str]:
    """Estimate a model's parameter count and say where the estimate came from.

    A local directory counts its ``*.safetensors`` bytes (assumed 2 bytes/param unless its
    config.json says float32); a hub id uses a size in the name ("3B", "135M"), a known id, or a
    size word ("base"); otherwise :data:`UNKNOWN_PARAMS`.
    """
    local = Path(name_or_path).expanduser()
    if root is not None and not local.is_absolute():
        local = root / local
    if local.is_dir():
        files = list(local.rglob("*.safetensors")) or list(local.rglob("*.bin"))
        size = sum(f.stat().st_size for f in files)
        if size:
            per = 4 if _stored_dtype(local) == "float32" else 2
            return size / per, f"{size / GB:.2f} GB of weights in {local}"
    lowered = name_or_path.lower()
    hints = _SIZE_HINT.findall(lowered)
    if hints:
        number, unit = hints[-1]
        return float(number) * (1e9 if unit.lower() == "b" else 1e6), f"size '{number}{unit.upper()}' in the name"
    for key, params in _KNOWN_PARAMS.items():
        if key in lowered:
            return params, f"known model {key}"
    for word, params in _SIZE_WORDS.items():
        if re.search(rf"(?<![a-z]){word}(?![a-z])", lowered):
            return params, f"size word '{word}'"
    return UNKNOWN_PARAMS, "no size hint: assumed 1.5B"


def _stored_dtype(directory: Path) -> str | None:
    try:
        cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg.get("torch_dtype") or cfg.get("dtype") if isinstance(cfg, dict) else None


def projected_footprint(cfg: RunConfig, action: str, root: Path | None = None) -> int:
    """Estimate the bytes a run will add to the disk — deliberately on the high side.

    With P the parameter estimate (:func:`estimate_params`), w the bytes per weight of
    ``model.dtype`` (fp32 4, bf16/fp16 2) and N = ``save_total_limit`` (+1 when early stopping
    keeps the best checkpoint too; 0 when ``save_strategy`` is "no"; 3 when unlimited):

    * full fine-tuning: N × (P·w + 8·P Adam moments in fp32 + tokenizer) + final_model (P·w);
    * LoRA: adapter A = P × min(1, 0.0015·r) params in fp32, checkpoints N × (12·A + tokenizer),
      final_model 4·A (or P·w when ``merge_on_save``);
    * infer/evaluate: the prediction CSVs. A pipeline adds both.

    It is an estimate: activations never reach the disk, but optimizer variants (8-bit) and
    extra files do vary.

    Args:
        cfg: the run's validated config.
        action: pipeline | train | infer | evaluate.
        root: the workspace root, to find a local model directory named relatively.
    """
    total = 0
    if action in ("pipeline", "train"):
        params, _why = estimate_params(cfg.model.name_or_path, root)
        w = DTYPE_BYTES[cfg.model.dtype]
        t = cfg.train
        if t.save_strategy == "no":
            n_ckpt = 0
        else:
            n_ckpt = (t.save_total_limit or 3) + (1 if t.early_stopping_patience else 0)
        if cfg.lora.enabled:
            adapter = params * min(1.0, 0.0015 * cfg.lora.r)
            total += n_ckpt * (12 * adapter + TOKENIZER_BYTES)
            total += (params * w if cfg.lora.merge_on_save else 4 * adapter) + TOKENIZER_BYTES
        else:
            total += n_ckpt * (params * w + 8 * params + TOKENIZER_BYTES)
            total += params * w + TOKENIZER_BYTES
    if action in ("pipeline", "infer", "evaluate"):
        total += PREDICTIONS_BYTES
    return int(math.ceil(total))
