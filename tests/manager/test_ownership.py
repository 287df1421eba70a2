"""What the workspace owns: the quota'd tree is chosen at `init` (settings quota_path), and `prune`
touches only the workspace's checkpoints and caches unless told about shared ones. Real CLI processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from dialsum_tui.manager.guards.prune import prune_plan
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace, init_workspace

CLI = [sys.executable, "-m", "dialsum_tui"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_init_records_the_quota_tree_explicitly(tmp_path: Path) -> None:
    server = tmp_path / "Competition"
    root = server / "NLP" / "dialogue-summarization"
    done = _cli("init", str(root))
    assert done.returncode == 0 and f"disk quota counts {root}" in done.stdout
    assert yaml.safe_load((root / ".dialsum" / "settings.yaml").read_text())["quota_path"] == "."
    (root / ".dialsum" / "settings.yaml").write_text("quota_path: .\nsafe_gb: 100\n")
    done = _cli("init", str(root), "--quota-path", str(server))
    assert done.returncode == 0 and f"disk quota counts {server}" in done.stdout
    assert yaml.safe_load((root / ".dialsum" / "settings.yaml").read_text()) == {"quota_path": str(server), "safe_gb": 100}
    from dialsum_tui.manager.guards.disk import quota_root

    assert quota_root(Workspace(root)) == server.resolve()
    bad = _cli("init", str(root), "--quota-path", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "--quota-path" in bad.stderr and "not a directory" in bad.stderr
    assert "Traceback" not in bad.stderr


def _model(cache: Path, name: str) -> Path:
    entry = cache / f"models--org--{name}" / "blobs"
    entry.mkdir(parents=True)
    (entry / "a").write_bytes(b"\0" * 8192)
    return entry.parent


def test_prune_leaves_a_shared_hf_cache_alone_unless_told(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    shared, own = tmp_path / "home" / ".cache" / "huggingface" / "hub", ws.root / "hf-cache"
    ws.settings_path.write_text(f"hf_cache_dirs: ['{shared}', hf-cache]\n")
    theirs, mine = _model(shared, "other-teams-7B"), _model(own, "old-1B")
    Manager.open(ws).store.close()
    assert {i.path for i in prune_plan(ws, [])} == {mine}
    done = _cli("-w", str(ws.root), "prune")
    assert done.returncode == 0 and f"not touched: {shared} is a shared HF cache" in done.stdout
    assert str(theirs) not in done.stdout and str(mine) in done.stdout
    done = _cli("-w", str(ws.root), "prune", "--include-shared-cache")
    assert str(theirs) in done.stdout and "SHARED cache" in done.stdout
    assert _cli("-w", str(ws.root), "prune", "--yes").returncode == 0
    assert theirs.exists() and not mine.exists()
