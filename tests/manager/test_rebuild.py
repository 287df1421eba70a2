"""A lost, replaced or broken state.db, with real processes (the CLI, the detached worker, the fake
engine) and real SQLite: the store is rebuilt from runs/, ids continue, the worker whose file went
away stops admitting, a broken store names `dialsum-tui repair`, and `init` adopts the team's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dialsum_tui.manager.runs.identity import run_key
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.store.integrity import STORE_PROBLEM_FILE
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import final_model_dir, is_complete_model

from support import stop_workers_of, wait_until

CLI = [sys.executable, "-m", "dialsum_tui"]
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(workspace: Workspace) -> Iterator[Cli]:
    """``dialsum-tui --workspace WS ARGS`` as a user runs it; expects exit ``rc`` (0 by default)."""

    def run(*args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*CLI, "--workspace", str(workspace.root), *args], capture_output=True, text=True,
                              timeout=60, cwd=workspace.root)
        assert rc is None or done.returncode == rc, (args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    yield run
    stop_workers_of(workspace.root)


def _runs(cli: Cli) -> dict[int, dict]:
    return {r["id"]: r for r in json.loads(cli("ls", "--json").stdout)}


def _db_files(ws: Workspace) -> list[Path]:
    return [p for p in ws.state_dir.iterdir() if p.name.startswith("state.db")]


def test_rm_state_db_while_a_run_trains(workspace: Workspace, make_config, cli: Cli,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    gate = workspace.root / "train-may-end"
    monkeypatch.setenv("FAKE_GATE", str(gate))  # run 1 trains until the test has looked at it
    cli("add", str(make_config("코바트")))
    wait_until(lambda: _runs(cli)[1]["state"] == "running" and _runs(cli)[1]["progress"].get("step"))
    snapshot = (workspace.run_dir(1) / "config.yaml").read_bytes()
    for path in _db_files(workspace):
        path.unlink()

    listed = cli("ls", "--json")
    assert "state.db rebuilt from runs/: 1 run(s) restored" in listed.stderr  # never a silent empty store
    restored = json.loads(listed.stdout)[0]
    assert (restored["id"], restored["state"], restored["stage"], restored["nickname"]) == (1, "running", "train", "코바트")
    assert restored["pid"]  # the live stage was found by its --run-dir
    assert "rebuilt from runs/" in workspace.worker_log.read_text(encoding="utf-8")

    # The old worker still holds the removed file: it says so and admits nothing new.
    wait_until(lambda: (workspace.state_dir / STORE_PROBLEM_FILE).exists())
    assert "was removed" in cli("check").stderr and "worker stop && dialsum-tui worker start" in cli("ls").stderr
    added = cli("add", str(make_config("라마")))
    assert "queued run 2:" in added.stdout  # ids continue above runs/1
    assert _runs(cli)[2]["state"] == "queued"
    assert (workspace.run_dir(1) / "config.yaml").read_bytes() == snapshot  # the old run is not overwritten

    cli("worker", "stop")
    cli("worker", "start")  # a fresh worker on the current file re-adopts run 1, then runs run 2
    gate.touch()
    wait_until(lambda: all(r["state"] == "succeeded" for r in _runs(cli).values()), timeout=60)
    log = workspace.worker_log.read_text(encoding="utf-8")
    # Run 1 was followed on (re-adopted), never retrained.
    assert log.count("run 1: launched train") == 1 and "run 1: re-adopted train stage" in log and "run 1: train done" in log
    manager = Manager.open(workspace)
    for run in manager.runs():
        assert is_complete_model(final_model_dir(workspace.checkpoints_dir, run_key(run)))
    assert not (workspace.state_dir / STORE_PROBLEM_FILE).exists()


def test_a_corrupt_store_names_repair_on_every_command_and_repair_restores_the_runs(
        workspace: Workspace, make_config, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "라마/train:oom")
    for nick in ("코바트", "라마"):
        cli("add", str(make_config(nick)))
    wait_until(lambda: all(r["state"] in ("succeeded", "failed") for r in _runs(cli).values()), timeout=60)
    before = _runs(cli)
    cli("worker", "stop")
    for path in _db_files(workspace):
        path.unlink()
    workspace.db_path.write_bytes(b"this is not a database\n" * 100)

    for args in (("ls",), ("results",), ("check",), ("handoff",), ("add", str(make_config("x"))), ("cancel", "1")):
        done = cli(*args, rc=2)
        assert "not a usable database" in done.stderr and "dialsum-tui repair" in done.stderr
    assert "no worker was running" in cli("worker", "stop").stdout  # needs only the lock file

    repaired = cli("repair")
    assert "2 run(s) restored" in repaired.stdout
    backups = list(workspace.state_dir.glob("state.db.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(b"this is not a database")
    after = _runs(cli)
    for rid in (1, 2):
        for key in ("nickname", "state", "stage", "failure_kind", "failed_stage"):
            assert after[rid][key] == before[rid][key], (rid, key)
    assert after[1]["metrics"]["final"] == before[1]["metrics"]["final"]
    assert after[2]["failure_kind"] == "oom" and after[2]["failure_hint"]
    assert "state.db" in cli("repair").stdout  # a healthy store is left alone


def test_a_malformed_store_gets_the_same_message(workspace: Workspace, make_config, cli: Cli) -> None:
    cli("add", str(make_config("코바트")))
    wait_until(lambda: _runs(cli)[1]["state"] == "succeeded", timeout=60)
    cli("worker", "stop")
    Store(workspace.db_path).close()  # checkpoint the WAL into the file
    data = bytearray(workspace.db_path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # keep the header, wreck every page
    workspace.db_path.write_bytes(bytes(data))
    for path in _db_files(workspace):
        if path != workspace.db_path:
            path.unlink()  # no WAL left to serve the pages from
    done = cli("ls", rc=2)
    assert "dialsum-tui repair" in done.stderr


def test_init_on_a_directory_whose_dialsum_is_gone_restores_history_and_ids(workspace: Workspace, make_config,
                                                                          cli: Cli) -> None:
    cli("add", str(make_config("코바트")))
    wait_until(lambda: _runs(cli)[1]["state"] == "succeeded", timeout=60)
    before = _runs(cli)[1]
    cli("worker", "stop")
    subprocess.run(["rm", "-rf", str(workspace.state_dir)], check=True)
    done = subprocess.run([*CLI, "init", str(workspace.root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "1 run(s) restored" in done.stderr
    workspace.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\n", encoding="utf-8")
    after = _runs(cli)[1]
    assert (after["state"], after["metrics"]["final"]) == ("succeeded", before["metrics"]["final"])
    rows = json.loads(cli("results", "--format", "json").stdout)
    assert [(r["nickname"], r["code"]) for r in rows] == [("코바트", "done")]  # ROUGE restored, not ❓
    assert "queued run 2:" in cli("add", str(make_config("라마"))).stdout


def test_ids_start_above_the_highest_run_directory(workspace: Workspace, make_config) -> None:
    (workspace.runs_dir / "41").mkdir()  # a run directory the store does not know (a foreign copy, say)
    (workspace.runs_dir / "notes").mkdir()
    manager = Manager.open(workspace)
    assert manager.add(str(make_config("코바트"))).id == 42


def test_init_adopts_the_team_layout_one_row_per_model(tmp_path: Path) -> None:
    root = tmp_path / "dialogue-summarization"
    team = root / "checkpoints" / "llm_finetuning"
    (team / "Llama-3.2-Korean-3B-bf16" / "final_model").mkdir(parents=True)
    (team / "Llama-3.2-Korean-3B-bf16" / "final_model" / "adapter_config.json").write_text("{}")
    (team / "Llama-3.2-Korean-3B-fp16").mkdir()  # empty: OOM
    (team / "Qwen3-4B-Instruct" / "checkpoint-758").mkdir(parents=True)
    (team / "Qwen3-4B-Instruct" / "checkpoint-758" / "trainer_state.json").write_text(
        json.dumps({"global_step": 758, "max_steps": 780}))
    (team / "koBART-summarization" / "final_model").mkdir(parents=True)
    (team / "koBART-summarization" / "eval_results.json").write_text(json.dumps({"eval_rouge_final": 94.51}))
    (team / "submissions").mkdir()
    (team / "submissions" / "Llama-3.2-Korean-3B-bf16_submission.csv").write_text("fname,summary\ntest_0,요약\n")
    done = subprocess.run([*CLI, "init", str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "found 4 model folder(s)" in done.stdout, done.stdout + done.stderr
    results = subprocess.run([*CLI, "-w", str(root), "results", "--format", "json"], capture_output=True, text=True,
                             timeout=60)
    rows = {r["nickname"]: r for r in json.loads(results.stdout)}
    assert set(rows) == {"Llama-3.2-Korean-3B-bf16", "Llama-3.2-Korean-3B-fp16", "Qwen3-4B-Instruct",
                         "koBART-summarization"}  # never one row called llm_finetuning
    assert rows["koBART-summarization"]["final"] == pytest.approx(94.51)
    assert "eval_results.json" in rows["koBART-summarization"]["evidence"]
    assert rows["Llama-3.2-Korean-3B-bf16"]["submission_rows"] == 1
    assert "checkpoint-758: 758/780 steps" in rows["Qwen3-4B-Instruct"]["evidence"]


def test_restored_run_states_follow_their_events(workspace: Workspace, make_config) -> None:
    manager = Manager.open(workspace)
    never = manager.add(str(make_config("대기")))
    cancelled = manager.add(str(make_config("취소")))
    manager.cancel(cancelled.id)
    manager.store.close()
    for path in _db_files(workspace):
        path.unlink()
    reopened = Manager.open(workspace)
    assert reopened.rebuilt is not None and reopened.rebuilt.paused and reopened.is_paused()
    states = {r.id: r.state for r in reopened.runs()}
    assert states == {never.id: RunState.QUEUED, cancelled.id: RunState.CANCELLED}


def test_a_store_replaced_by_an_older_copy_gets_the_unknown_runs_back(workspace: Workspace, make_config,
                                                                     cli: Cli) -> None:
    cli("add", str(make_config("코바트")))
    wait_until(lambda: _runs(cli)[1]["state"] == "succeeded", timeout=60)
    cli("worker", "stop")
    older = workspace.root / "older.db"
    Store(older).close()  # an empty store of the same schema stands in for yesterday's copy
    older.replace(workspace.db_path)
    for path in _db_files(workspace):
        if path != workspace.db_path:
            path.unlink()
    listed = cli("ls", "--json")
    assert "did not know some run directories" in listed.stderr
    assert [(r["id"], r["state"]) for r in json.loads(listed.stdout)] == [(1, "succeeded")]
    assert "queued run 2:" in cli("add", str(make_config("라마"))).stdout
