"""Provides the scale figures of issue 26: what a 200-run sweep costs the front ends — ``add`` of the
whole sweep (every variant validated and preflighted), ``ls`` with its group line, and the TUI's first
board snapshot (``snapshot.SnapshotSource``) — on competition-sized data (12,457 train rows).

Run: ``python benchmarks/sweep_scale.py [--variants 200] [--repeat 3] [--dir DIR]``. Nothing trains:
the queue is paused. Prints one line per figure, then one JSON line with all of them; asserts nothing
(the figures depend on the machine and belong in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = """\
model: {name_or_path: models/tiny, nickname: kobart, kind: seq2seq}
data: {dir: data}
train: {device: cpu, max_steps: 10}
"""


def _axes(variants: int) -> list[str]:
    """Two --sweep axes whose grid has exactly ``variants`` runs (learning rates × LoRA ranks)."""
    ranks = next(r for r in range(int(math.sqrt(variants)), 0, -1) if variants % r == 0)
    rates = variants // ranks
    return [f"train.learning_rate={','.join(f'{(i + 1)}e-5' for i in range(rates))}",
            f"lora.r={','.join(str(4 * (j + 1)) for j in range(ranks))}"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    for name in ("DIALSUM_WORKSPACE", "DIALSUM_FAKE_GPU"):
        env.pop(name, None)
    return env


def _cli(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dialsum_tui", "--workspace", str(root), *args], capture_output=True,
                          text=True, env=_env(), cwd=root, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"dialsum-tui {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, done


def _workspace(root: Path, train_rows: int) -> Path:
    from dialsum_tui.manager.workspace.layout import init_workspace

    ws = init_workspace(root)
    subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(ws.data_dir), "--train", str(train_rows),
                    "--dev", "499", "--test", "499"], check=True, capture_output=True, env=_env(), timeout=600)
    (ws.configs_dir / "kobart.yaml").write_text(CONFIG, encoding="utf-8")
    return ws.root


def measure(base: Path, variants: int, repeat: int, train_rows: int) -> dict[str, object]:
    """Every figure, the median of ``repeat`` fresh workspaces for ``add`` (a sweep is added once per workspace)."""
    from dialsum_tui.cli_output import ls_table
    from dialsum_tui.manager.guards.gpu import open_gpu_source
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.snapshot import SnapshotSource
    from dialsum_tui.manager.workspace.layout import Workspace

    axes = _axes(variants)
    add_api, add_cli = [], []
    root = None
    for i in range(repeat):
        root = _workspace(base / f"ws{i}", train_rows)
        manager = Manager.open(Workspace(root))
        manager.pause()  # nothing trains: the bench times the queue, not the stages
        started = time.perf_counter()
        sweep, runs = manager.add_sweep(str(root / "configs" / "kobart.yaml"), axes=axes, action="train")
        add_api.append(time.perf_counter() - started)
        assert len(runs) == variants, len(runs)
        args = [f"--sweep={axis}" for axis in axes]
        seconds, _done = _cli(root, "add", str(root / "configs" / "kobart.yaml"), *args, "--action", "train",
                              "--json")  # a second sweep of the same size, through the CLI (a new process)
        add_cli.append(seconds)
        _cli(root, "worker", "stop")
    assert root is not None
    manager = Manager.open(Workspace(root))
    total = len(manager.runs())
    ls_api = []
    for _ in range(repeat):
        started = time.perf_counter()
        ls_table(manager.runs(), width=120, sweeps=manager.sweeps())
        ls_api.append(time.perf_counter() - started)
    ls_cli = [_cli(root, "ls")[0] for _ in range(repeat)]
    ls_collapsed = [_cli(root, "ls", "--collapse")[0] for _ in range(repeat)]
    first, again = [], []
    gpu = open_gpu_source()
    for _ in range(repeat):
        source = SnapshotSource(Manager.open(Workspace(root)), gpu)
        started = time.perf_counter()
        board = source.board()
        first.append(time.perf_counter() - started)
        assert board is not None and len(board.runs) == total and len(board.sweeps) == 2
        started = time.perf_counter()
        source.board()
        again.append(time.perf_counter() - started)
    return {
        "variants": variants, "runs_in_store": total, "train_rows": train_rows, "repeat": repeat,
        "add_sweep_api_s": statistics.median(add_api), "add_sweep_cli_s": statistics.median(add_cli),
        "ls_table_api_s": statistics.median(ls_api), "ls_cli_s": statistics.median(ls_cli),
        "ls_collapse_cli_s": statistics.median(ls_collapsed),
        "tui_first_board_s": statistics.median(first), "tui_next_board_s": statistics.median(again),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=12457, help="rows of the synthetic train.csv (competition: 12457)")
    parser.add_argument("--dir", type=Path, help="where the workspaces go (removed after); default a temporary dir")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sweep-scale-", dir=args.dir))
    try:
        figures = measure(base, args.variants, args.repeat, args.train_rows)
    finally:
        for root in base.glob("ws*"):  # never leave a worker behind
            subprocess.run([sys.executable, "-m", "dialsum_tui", "--workspace", str(root), "worker", "stop"],
                           capture_output=True, env=_env(), timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    print(f"add of a {figures['variants']}-variant sweep: {figures['add_sweep_api_s']:.2f} s in-process "
          f"(validate + preflight + queue), {figures['add_sweep_cli_s']:.2f} s as `dialsum-tui add` (a new process)")
    print(f"ls with {figures['runs_in_store']} runs: table {figures['ls_table_api_s'] * 1000:.0f} ms in-process, "
          f"`dialsum-tui ls` {figures['ls_cli_s']:.2f} s, `ls --collapse` {figures['ls_collapse_cli_s']:.2f} s")
    print(f"TUI board snapshot: first {figures['tui_first_board_s'] * 1000:.0f} ms, "
          f"unchanged {figures['tui_next_board_s'] * 1000:.0f} ms")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
