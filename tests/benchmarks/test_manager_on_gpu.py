"""benchmarks/manager_on_gpu.py runs its whole code path on the CPU (--cpu): the same workspace build,
the two pipelines queued back to back with `dialsum-tui add`, the detached worker running every stage
as a real process, the memory timeline (through the manager's GPU source: "n/a" here) and the results
table. Its figures are recorded on a GPU in docs/benchmarks.md, never asserted here; what is asserted
is what the worker did, read from the runs' own event files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import GpuDevice, ScriptedGpuSource
from engine.artifacts import read_events
from engine.contract import PIPELINE, Event, RunFiles, load_snapshot
from engine.units import GIB, MIB

from support import CLI, REPO, script_env, stop_workers_of, wait_until

BENCH = REPO / "benchmarks" / "manager_on_gpu.py"


def _bench(*argv: str, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True, env=script_env(),
                          timeout=timeout)


def _stage_times(ws: Path, run_id: int) -> list[tuple[str, float, float]]:
    """(stage, its `started` ts, its `finished` ts) in the order the run's events recorded them."""
    events = read_events(RunFiles(ws / "runs" / str(run_id)).events)
    started = [(e["command"], e["ts"]) for e in events if e["event"] == Event.STARTED]
    finished = {e["command"]: e["ts"] for e in events if e["event"] == Event.FINISHED}
    return [(stage, ts, finished[stage]) for stage, ts in started]


@pytest.mark.slow  # six stage processes of a tiny Llama, one after another (~70 s on a shared 2-core box)
def test_cpu_path_runs_both_pipelines_back_to_back_through_the_worker(tmp_path: Path, synth_data_dir: Path,
                                                                      tiny_llama_dir: Path) -> None:
    root = tmp_path / "mgr"
    ws = root / "ws"
    try:
        proc = _bench("--root", str(root), "--cpu", "--model", str(tiny_llama_dir), "--data", str(synth_data_dir),
                      "--timeout", "300")
    finally:
        stop_workers_of(ws)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    listed = subprocess.run([*CLI, "--workspace", str(ws), "ls", "--json"], capture_output=True, text=True,
                            env=script_env(), check=True)
    runs = sorted(json.loads(listed.stdout), key=lambda r: r["id"])
    assert [(r["nickname"], r["state"]) for r in runs] == [("cpu-llama3b", "succeeded"), ("cpu-qwen3-4b", "succeeded")]
    for run in runs:
        # The shapes' places hold --model, and the run ran with the CPU keys and the short steps.
        cfg = load_snapshot(RunFiles(ws / "runs" / str(run["id"])).config.read_text(encoding="utf-8"))
        assert Path(cfg.model.name_or_path).name in ("llama3b", "qwen3-4b")
        assert (ws / cfg.model.name_or_path).resolve() == tiny_llama_dir.resolve()
        assert (cfg.train.device, cfg.train.max_steps, cfg.train.eval_strategy) == ("cpu", 2, "no")

    # Sequential, as the worker admits them: within a run each stage starts after the previous one
    # finished, and the second run's train starts only after the first run's last stage finished.
    first, second = (_stage_times(ws, r["id"]) for r in runs)
    for stages in (first, second):
        assert [s for s, _, _ in stages] == list(PIPELINE), stages
        assert all(prev_end <= start for (_, _, prev_end), (_, start, _) in zip(stages, stages[1:])), stages
    assert first[-1][2] <= second[0][1], (first, second)

    out = proc.stdout
    assert "memory timeline from: no NVIDIA GPU" in out and "baseline n/a, peak n/a" in out  # said, not faked
    for run in runs:
        for stage in PIPELINE:
            assert f"run {run['id']} {stage:9} finished" in out, stage
    # The results table: one row per model, named by its nickname.
    table = out[out.index("Model "):out.index("ID  NICKNAME")]
    assert [line.split()[0] for line in table.splitlines()[2:] if line.strip()] == ["cpu-llama3b", "cpu-qwen3-4b"]


def test_cpu_path_refuses_qlora_and_incomplete_data(tmp_path: Path) -> None:
    qlora = _bench("--root", str(tmp_path), "--cpu", "--qlora", timeout=120)
    assert qlora.returncode == 2 and "--qlora needs a CUDA GPU" in qlora.stderr, qlora.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("fname,dialogue,summary\n", encoding="utf-8")
    partial = _bench("--root", str(tmp_path), "--cpu", "--data", str(tmp_path / "data"), timeout=120)
    assert partial.returncode == 2 and "dev.csv" in partial.stderr and "test.csv" in partial.stderr, partial.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything was built


def test_memory_timeline_reads_gpu0_through_the_gpu_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH.parent))  # the benchmarks import each other by file name
    from manager_on_gpu import sample_memory, used_at

    def frame(mib: int) -> list[GpuDevice]:
        return [GpuDevice(0, "Scripted H100", mib * MIB, 81559 * MIB, 0, 30),
                GpuDevice(1, "Scripted H100", 9999 * MIB, 81559 * MIB, 0, 30)]

    source = ScriptedGpuSource([frame(480), frame(15020), frame(480)])
    timeline: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(source, stop, timeline), daemon=True)
    sampler.start()
    wait_until(lambda: len(timeline) >= 3, timeout=30, what="three memory samples")
    stop.set()
    sampler.join()
    assert [used for _, used in timeline[:3]] == [480 * MIB, 15020 * MIB, 480 * MIB]  # GPU 0's, not GPU 1's
    # The memory used when an event happened is the last sample before it.
    assert used_at(timeline, timeline[1][0]) == round(15020 * MIB / GIB, 2)
    assert used_at(timeline, timeline[0][0] - 1) == round(480 * MIB / GIB, 2)
    assert used_at([], timeline[0][0]) == "n/a"  # no GPU: said, not a number
