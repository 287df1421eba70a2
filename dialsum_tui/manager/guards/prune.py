"""Provides the prune plan (what can be deleted to free the quota, with sizes and reasons) and the
deletion itself, which never touches anything outside the workspace or the configured HF caches.

What can go: intermediate ``checkpoint-*`` directories of nicknames whose final_model is complete
and that have no active run (the best checkpoint is kept), and HF hub/xet cache entries
(``models--org--name``) of models no queued, waiting or running run needs.

Only what this workspace owns: its ``checkpoints/`` and HF caches inside the workspace. A cache
outside it (``~/.cache/huggingface``) is shared with other workspaces and users, whose runs this
store cannot see, so its models are offered only with ``include_shared=True``
(``prune --include-shared-cache``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.runs.identity import model_key, run_key
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.runs.retry import protected_checkpoints
from engine.artifacts import final_model_dir, is_complete_model, safe_name
from engine.config import ConfigError
from engine.contract import CHECKPOINT_PREFIX, FINAL_MODEL_DIR, load_snapshot
from engine.du import tree_size
from engine.units import format_bytes

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

_ACTIVE = (RunState.QUEUED, RunState.WAITING, RunState.RUNNING)
_HF_CACHE_PREFIX = "models--"  # huggingface_hub's cache layout: models--org--name
_PRUNABLE_PREFIXES = (CHECKPOINT_PREFIX, _HF_CACHE_PREFIX)


@dataclass(frozen=True)
class PruneItem:
    """One directory that may be deleted; ``root`` is the tree it must stay inside."""

    path: Path
    bytes: int
    reason: str
    root: Path | None = None

    def line(self) -> str:
        """``"   12.3 GB  checkpoints/kobart-r3/checkpoint-400  (intermediate checkpoint of …)"``: how the
        CLI and the TUI's confirm dialog list it (sizes right-aligned, so a list of them lines up)."""
        return f"{format_bytes(self.bytes):>9}  {self.path}  ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        """``path``, ``bytes``, ``reason``, ``root`` (the tree it stays inside; null when unknown)."""
        return {"path": str(self.path), "bytes": self.bytes, "reason": self.reason,
                "root": str(self.root) if self.root is not None else None}


def _inside(path: Path, root: Path) -> bool:
    """True if ``path`` (not a symlink) resolves strictly inside ``root``."""
    if path.is_symlink():
        return False
    resolved, base = path.resolve(), root.resolve()
    return resolved != base and base in resolved.parents


def _hub_id(run: Run) -> str | None:
    try:
        return load_snapshot(run.config_yaml or "", source=f"run {run.id} config snapshot").model.name_or_path
    except ConfigError:
        return None  # an unreadable snapshot protects nothing; its run's checkpoints are guarded by nickname


def _best_checkpoint(checkpoints: list[Path]) -> str | None:
    """Name of the best checkpoint per the newest trainer_state.json (Trainer's best_model_checkpoint)."""
    def step(p: Path) -> int:
        tail = p.name.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    for ckpt in sorted(checkpoints, key=step, reverse=True):
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        best = state.get("best_model_checkpoint") if isinstance(state, dict) else None
        if best:
            return Path(best).name
    return None


def cache_dirs(workspace: Workspace) -> list[tuple[Path, bool]]:
    """The configured HF caches that exist, each with whether it is shared (outside the workspace)."""
    found = []
    for raw in workspace.settings().hf_cache_dirs:
        cache = Path(raw).expanduser()
        cache = cache if cache.is_absolute() else workspace.root / cache
        if cache.is_dir():
            found.append((cache, not _inside(cache, workspace.root)))
    return found


def shared_caches(workspace: Workspace) -> list[Path]:
    """HF caches outside the workspace: prune leaves them alone unless told (``--include-shared-cache``)."""
    return [cache for cache, shared in cache_dirs(workspace) if shared]


def prune_plan(workspace: Workspace, runs: list[Run], include_shared: bool = False) -> list[PruneItem]:
    """List what can be deleted, biggest first, each with its size and why it is safe.

    Args:
        workspace: its checkpoints and settings (hf_cache_dirs).
        runs: every run; active ones protect their checkpoints and their model's cache.
        include_shared: also offer models of HF caches outside the workspace (other workspaces' runs
            are invisible here, so they may still need them).
    """
    items: list[PruneItem] = []
    # A run's directory is checkpoints/<slug>-r<id> (manager.identity); an active run also protects the
    # model it loads and its nickname's old-layout directory.
    active_keys = {k for r in runs if r.state in _ACTIVE for k in (run_key(r), model_key(r), safe_name(r.nickname))}
    keep = protected_checkpoints(workspace, runs)  # what a stopped run would resume from
    root = workspace.checkpoints_dir
    nick_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) if root.is_dir() else []
    for nick_dir in nick_dirs:
        if nick_dir.name in active_keys or not is_complete_model(final_model_dir(root, nick_dir.name)):
            continue  # a run still writes here, or the checkpoints are the only copy of the training
        ckpts = [p for p in nick_dir.rglob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and not p.is_symlink() and FINAL_MODEL_DIR not in p.parts]
        best = _best_checkpoint(ckpts)
        for ckpt in ckpts:
            if ckpt.name == best or not _inside(ckpt, root) or ckpt.resolve() in keep:
                continue
            why = f"intermediate checkpoint of {nick_dir.name} (final_model complete; best {best or 'not recorded'} kept)"
            items.append(PruneItem(ckpt, tree_size(ckpt), why, root))
    needed = {f"{_HF_CACHE_PREFIX}{hub.replace('/', '--')}" for r in runs if r.state in _ACTIVE and (hub := _hub_id(r))}
    for cache, shared in cache_dirs(workspace):
        if shared and not include_shared:
            continue
        for entry in sorted(cache.glob(f"{_HF_CACHE_PREFIX}*")):
            if entry.name in needed or not entry.is_dir() or not _inside(entry, cache):
                continue
            model = entry.name.removeprefix(_HF_CACHE_PREFIX).replace("--", "/")
            why = f"HF cache of {model}: no queued or running run of this workspace needs it"
            if shared:
                why += " (SHARED cache: other workspaces or users may still use it)"
            items.append(PruneItem(entry, tree_size(entry), why, cache))
    return sorted(items, key=lambda i: -i.bytes)


def prune_kept(workspace: Workspace, runs: list[Run]) -> list[PruneItem]:
    """Intermediate checkpoints prune does not offer, each with why (nothing leaves the list unsaid):
    a run of that key is queued or running, or a stopped run would resume from it."""
    active = {k: r for r in runs if r.state in _ACTIVE for k in (run_key(r), model_key(r), safe_name(r.nickname))}
    keep = protected_checkpoints(workspace, runs)
    root = workspace.checkpoints_dir
    kept: list[PruneItem] = []
    for nick_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) if root.is_dir() else []:
        ckpts = [p for p in nick_dir.rglob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and not p.is_symlink()
                 and FINAL_MODEL_DIR not in p.parts and _inside(p, root)]
        for ckpt in ckpts:
            if nick_dir.name in active:
                run = active[nick_dir.name]
                why = f"kept: run {run.id} ({run.nickname}, {run.state.value}) may still need it"
            elif ckpt.resolve() in keep:
                why = "kept: a stopped run would resume from it (`dialsum-tui retry ID --resume`)"
            else:
                continue
            kept.append(PruneItem(ckpt, tree_size(ckpt), why, root))
    return sorted(kept, key=lambda i: -i.bytes)


def quota_effect(freed_bytes: int, used_bytes: int | None, limit_bytes: int | None) -> str:
    """What deleting ``freed_bytes`` does to the quota: ``"12.3 GB can go: 141.0 → 128.7 GB of 150.0 GB"``."""
    text = f"{format_bytes(freed_bytes)} can go"
    if used_bytes is None or not limit_bytes:
        return text + " (the disk is not measured yet)"
    after = max(0, used_bytes - freed_bytes)
    return f"{text}: {format_bytes(used_bytes)} → {format_bytes(after)} of {format_bytes(limit_bytes)} used"


def prune(items: list[PruneItem]) -> int:
    """Delete the planned directories and return the bytes freed.

    Each item is re-checked first: it must be a real directory (not a symlink) named
    ``checkpoint-*`` or ``models--*`` that resolves inside its ``root``; anything else is skipped.
    """
    freed = 0
    for item in items:
        path = Path(item.path)
        if item.root is None or not path.name.startswith(_PRUNABLE_PREFIXES):
            continue
        if not path.is_dir() or not _inside(path, item.root):
            continue
        size = tree_size(path)
        shutil.rmtree(path)
        freed += size
    return freed
