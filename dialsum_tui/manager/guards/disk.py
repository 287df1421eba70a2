"""Provides the disk meter (measured like ``du``, cached for readers) and the footprint a run will
add, which the disk guard checks against the quota before launch.

A container quota is invisible to ``df``, so usage is the allocated size of the quota'd tree, as
``du`` counts it. That walk is slow on big trees: the worker runs :func:`measure` in a background
thread and :func:`write_cache`; everyone else calls :func:`read_cached`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dialsum_tui.manager.workspace import sharing
from engine.artifacts import atomic_write_text
from engine.du import TreeWalker, tree_size
from engine.units import GB, MB, disk_full, disk_stop_bytes, format_bytes, format_used_of, gb_to_bytes

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace
    from engine.config import RunConfig

__all__ = ["GB", "MB", "DiskUsage", "engine_disk_args", "measure", "projected_footprint", "read_cached", "tree_size",
           "write_cache"]


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

    @property
    def stop_bytes(self) -> int:
        """Where the running-disk watch stops a run: the quota less the margin (the engine's limit too)."""
        return self.limit_bytes - self.margin_bytes

    @property
    def full(self) -> bool:
        """Whether the tree has reached :attr:`stop_bytes` (the comparison the engine's guard makes)."""
        return disk_full(self.used_bytes, self.stop_bytes)

    def summary(self) -> str:
        """One line: "141.0 / 150.0 GB used (safe 110.0 GB) on /ws, measured 12s ago"."""
        age = max(0.0, time.time() - self.measured_at)  # a measurement "from the future" is a clock step
        return (
            f"{format_used_of(self.used_bytes, self.limit_bytes)} used (safe {format_bytes(self.safe_bytes)}) "
            f"on {self.path}, measured {age:.0f}s ago"
        )


# Kept for callers outside this package that still import them (cli.py, results): the one
# formatter family is engine.units.
human = format_bytes
used_of_limit = format_used_of


def _in_workspace(workspace: Workspace, value: str) -> Path:
    # Settings paths are relative to the workspace root, like every path stages see (cwd = root).
    path = Path(value).expanduser()
    return path if path.is_absolute() else workspace.root / path


# --- measuring -------------------------------------------------------------------------------


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

    Raises:
        FileNotFoundError: the quota'd tree is not there (the guard then admits nothing).
    """
    started = time.monotonic()  # a duration: immune to clock steps
    settings = workspace.settings()
    root = quota_root(workspace)
    if not root.is_dir():  # an unmounted volume would otherwise measure 0 bytes and admit everything
        raise FileNotFoundError(f"quota_path {root} is not a directory (unmounted?); fix quota_path in "
                                f"{workspace.settings_path}")
    walker = TreeWalker.for_path(root)
    consumers: list[tuple[str, int]] = []
    inside: set[str] = set()
    for label, path in consumer_dirs(workspace):
        resolved = path.resolve() if path.exists() else path
        if not resolved.exists():
            continue
        if resolved == root:
            continue  # the consumer is the whole quota tree: nothing to break down
        if root not in resolved.parents:
            consumers.append((f"{label} (outside quota)", tree_size(resolved)))
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
        limit_bytes=gb_to_bytes(settings.quota_gb),
        safe_bytes=gb_to_bytes(settings.safe_gb),
        margin_bytes=gb_to_bytes(settings.margin_gb),
        measured_at=time.time(),
        seconds=time.monotonic() - started,
        consumers=consumers,
    )


def quota_root(workspace: Workspace) -> Path:
    """The tree the quota covers (settings ``quota_path``, relative to the workspace root), resolved."""
    return _in_workspace(workspace, workspace.settings().quota_path).resolve()


def engine_disk_args(workspace: Workspace) -> list[str]:
    """The engine ``train`` flags that hand it the workspace's disk limit.

    The engine's in-run guard then stops at the same byte count as :func:`measure`'s
    ``DiskUsage.stop_bytes`` (both :func:`engine.units.disk_stop_bytes` of the settings).

    Returns:
        ``["--disk-root", "/ws", "--disk-stop-bytes", "145000000000"]``; the worker appends them to a
        train stage's argv.
    """
    settings = workspace.settings()
    stop = disk_stop_bytes(settings.quota_gb, settings.margin_gb)
    return ["--disk-root", str(quota_root(workspace)), "--disk-stop-bytes", str(stop)]


def write_cache(workspace: Workspace, usage: DiskUsage) -> None:
    """Store ``usage`` in ``.dialsum/disk.json`` atomically (private to the user)."""
    atomic_write_text(workspace.disk_cache_path, json.dumps(asdict(usage), ensure_ascii=False), mode=sharing.file_mode())


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
            return size / per, f"{format_bytes(size)} of weights in {local}"
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
