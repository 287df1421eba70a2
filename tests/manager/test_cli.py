"""The ``dialsum-tui`` CLI as users run it: real processes, the detached worker, kill -9 and SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator

import psutil
import pytest

from dialsum_tui.manager import process
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace

from support import CLI, run_cli, wait_until


@pytest.fixture
def cli(workspace: Workspace) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Run ``dialsum-tui --workspace WS ARGS``; stops the worker afterwards."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(workspace, *args, expect=0 if check else None)

    yield run
    Manager.open(workspace).stop_worker()


def test_add_ls_results_handoff_end_to_end(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("koBART-summarization")))
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).state.is_final)
    listed = json.loads(cli("ls", "--json").stdout)
    assert listed[0]["state"] == "succeeded" and listed[0]["stage"] == "evaluate"
    table = cli("results").stdout
    assert "koBART-summarization" in table and "✅ 완료" in table
    as_json = json.loads(cli("results", "--format", "json").stdout)
    assert any(row["nickname"] == "koBART-summarization" for row in (as_json if isinstance(as_json, list) else as_json["rows"]))
    out = workspace.root / "HANDOFF.md"
    cli("handoff", "--out", str(out))
    assert "koBART-summarization" in out.read_text(encoding="utf-8")
    assert "[evaluate]" in cli("logs", "1").stdout
    check = json.loads(cli("check", "--json").stdout)
    assert check["worker"]["running"] and check["paused"] is False
    assert check["gpu"]["source"] and check["disk"] is None or check["disk"]["limit_bytes"] > 0


def test_bad_input_exits_2_with_the_reason(workspace: Workspace, make_config, cli) -> None:
    bad = workspace.configs_dir / "bad.yaml"
    bad.write_text("model: {name_or_path: x, nickname: y, kind: seq2seq}\ntrain: {epoch: 3}\n", encoding="utf-8")
    done = cli("add", str(bad), check=False)
    assert done.returncode == 2 and "unknown key 'train.epoch'" in done.stderr
    done = cli("cancel", "42", check=False)
    assert done.returncode == 2 and "no run 42" in done.stderr
    done = cli("add", str(make_config("m")), "--gpu", "zero", check=False)
    assert done.returncode == 2 and "--gpu" in done.stderr


def test_pause_cancel_retry(workspace: Workspace, make_config, cli) -> None:
    cli("pause")
    cli("add", str(make_config("m")), "--action", "train")
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).state is RunState.WAITING)
    assert "paused" in mgr.get(1).reason
    cli("cancel", "1")
    assert mgr.get(1).state is RunState.CANCELLED
    refused = cli("retry", "1", "--action", "infer", check=False)  # nothing trained: nothing to infer from
    assert refused.returncode == 2 and "final_model" in refused.stderr
    assert "retry of run 1" in cli("retry", "1", "--action", "pipeline").stdout
    assert mgr.get(2).action.value == "pipeline" and mgr.get(2).config_yaml == mgr.get(1).config_yaml
    cli("resume")
    wait_until(lambda: mgr.get(2).state.is_final)


def test_worker_killed_minus_9_mid_run_then_restarted_re_adopts(workspace: Workspace, make_config, cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gate = workspace.root / "train-may-end"
    monkeypatch.setenv("FAKE_GATE", str(gate))  # the stage runs until the test has restarted the worker
    cli("add", str(make_config("m")), "--action", "train")
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).pid is not None and bool(mgr.get(1).progress))
    running, worker_pid = mgr.worker_status()
    assert running and worker_pid
    stage = mgr.get(1)
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(lambda: not mgr.worker_status()[0])
    assert process.is_alive(stage.pid, stage.pid_start_time)  # the stage outlived its worker
    assert "worker running" in cli("worker", "start").stdout
    wait_until(lambda: f"re-adopted train stage pid {stage.pid}" in workspace.worker_log.read_text(encoding="utf-8"),
               what="the new worker to re-adopt the live stage")
    gate.touch()
    wait_until(lambda: mgr.get(1).state.is_final)
    done = mgr.get(1)
    assert done.state is RunState.SUCCEEDED and done.pid == stage.pid


def test_worker_survives_sighup_of_the_launching_terminal(workspace: Workspace, make_config, cli) -> None:
    # A "terminal": its own session, starts the worker, then waits like an interactive shell.
    term = subprocess.Popen(["bash", "-c", f"{' '.join(CLI)} --workspace {workspace.root} worker start; sleep 30"],
                            start_new_session=True, stdout=subprocess.DEVNULL)
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.worker_status()[0])
    _, pid = mgr.worker_status()
    os.killpg(term.pid, signal.SIGHUP)
    term.wait(timeout=10)
    # Had the hang-up reached the worker, it would be gone: have it run a whole run first instead.
    cli("add", str(make_config("after-hangup")))
    wait_until(lambda: mgr.runs() and mgr.runs()[0].state.is_final)
    assert mgr.runs()[0].state is RunState.SUCCEEDED
    assert mgr.worker_status() == (True, pid)
    assert "worker running" in cli("worker", "status").stdout and str(pid) in cli("worker", "status").stdout
    assert "worker stopped" in cli("worker", "stop").stdout
    assert mgr.worker_status() == (False, None)


def test_two_clis_adding_at_once(workspace: Workspace, make_config, cli) -> None:
    cli("pause")  # keep the worker from running them; this is about the queue
    paths = [str(make_config(f"m{i}")) for i in range(4)]
    procs = [subprocess.Popen([*CLI, "--workspace", str(workspace.root), "add", p], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for p in paths]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    runs = Manager.open(workspace).runs()
    assert sorted(r.nickname for r in runs) == [f"m{i}" for i in range(4)]

    def workers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline", "status"])
                if "dialsum_tui.manager.worker" in (p.info["cmdline"] or [])
                and str(workspace.root) in p.info["cmdline"] and p.info["status"] != psutil.STATUS_ZOMBIE]

    # Racing CLIs may each spawn one; all but the lock holder give up within their retry window.
    wait_until(lambda: len(workers()) == 1, timeout=15)
    assert workers()[0].pid == Manager.open(workspace).worker_status()[1]
