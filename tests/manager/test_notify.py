"""The notify hook with real subprocesses: what the command receives, a hanging one killed at the
timeout (with what it started), a missing binary logged, and the worker never waiting for either."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.notify import (
    BlockedWatch,
    expand_argv,
    notify_blocked,
    notify_run_ended,
    payload_for,
)
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.sections import NotifySettings

from support import wait_until

# Writes what the hook received (stdin and the DIALSUM_* variables) and its argv to the file argv[1].
RECORDER = """
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("DIALSUM_")}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"stdin": sys.stdin.read(), "env": env, "argv": sys.argv[2:]}, fh, ensure_ascii=False)
"""
# Starts a grandchild in its own process group's reach, records both pids, then hangs.
HANGER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
time.sleep(120)
"""
JOIN_S = 30.0  # bounds every wait for a hook thread; the hooks themselves finish far sooner


def _run(state: RunState = RunState.SUCCEEDED, **fields) -> Run:
    base = dict(id=7, nickname="코바트-요약", config_path="configs/k.yaml", config_yaml="", action=Action.PIPELINE,
                state=state, stage="evaluate", metrics={"final": 29.4712, "rouge1": 0.42, "rouge2": 0.116,
                                                        "rougeL": 0.348, "tokenizer": "mecab"})
    return Run(**(base | fields))


def _settings(*argv: str, timeout_s: float = 20.0) -> NotifySettings:
    return NotifySettings(command=list(argv), timeout_s=timeout_s)


def _joined(thread) -> None:
    assert thread is not None, "nothing was sent"
    thread.join(JOIN_S)
    assert not thread.is_alive(), f"the hook thread did not finish within {JOIN_S} s"


def test_finished_run_reaches_the_command_as_json_env_and_placeholders(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    settings = _settings(sys.executable, "-c", RECORDER, str(out), "{message}", '{"raw": "{json}"}')
    _joined(notify_run_ended(settings, _run(), tmp_path))
    got = json.loads(out.read_text(encoding="utf-8"))
    payload = json.loads(got["stdin"])
    assert payload["event"] == "finished" and payload["run_id"] == 7 and payload["nickname"] == "코바트-요약"
    assert payload["rouge"] == "29.47" and payload["rouge1"] == "42.00" and payload["rougeL"] == "34.80"
    assert payload["text"] == "run 7 코바트-요약 finished: ROUGE 29.47"
    assert got["env"]["DIALSUM_RUN_ID"] == "7" and got["env"]["DIALSUM_RUN_STATE"] == "succeeded"
    assert got["env"]["DIALSUM_NICKNAME"] == "코바트-요약" and got["env"]["DIALSUM_ROUGE"] == "29.47"
    assert got["env"]["DIALSUM_EVENT"] == "finished" and got["env"]["DIALSUM_FAILURE_KIND"] == ""
    # {message} is filled in; other braces pass through untouched (no shell, no str.format).
    assert got["argv"] == ["run 7 코바트-요약 finished: ROUGE 29.47", '{"raw": "{json}"}']


def test_failed_run_names_kind_stage_and_first_line(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    run = _run(RunState.FAILED, metrics={}, failure_kind="oom", failed_stage="train",
               failure_message="CUDA out of memory. Tried to allocate 2.00 GiB\nTraceback ...")
    _joined(notify_run_ended(_settings(sys.executable, "-c", RECORDER, str(out)), run, tmp_path))
    got = json.loads(out.read_text(encoding="utf-8"))
    assert got["env"]["DIALSUM_MESSAGE"] == "run 7 코바트-요약 failed (oom) in train: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert got["env"]["DIALSUM_ROUGE"] == "" and json.loads(got["stdin"])["failure_kind"] == "oom"


def test_cancelled_runs_and_an_empty_command_send_nothing(tmp_path: Path) -> None:
    assert notify_run_ended(_settings(sys.executable, "-c", "pass"), _run(RunState.CANCELLED), tmp_path) is None
    assert notify_run_ended(NotifySettings(), _run(), tmp_path) is None


def test_hanging_command_is_killed_with_its_children_and_never_blocks(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dialsum.worker.notify")
    pids_file = tmp_path / "pids"
    thread = notify_run_ended(_settings(sys.executable, "-c", HANGER, str(pids_file), timeout_s=1.0),
                              _run(), tmp_path)
    # The call returned while the command still runs: the worker's loop is not held up.
    assert thread is not None and thread.is_alive()
    pids = wait_until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2 and pids_file.read_text(),
                      what="the hook to start")
    hook_pid, grandchild_pid = map(int, pids.split())
    _joined(thread)
    assert "killed it (notify.timeout_s)" in caplog.text
    for pid in (hook_pid, grandchild_pid):
        wait_until(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                   what=f"pid {pid} to be killed")


def test_missing_binary_and_bad_exit_are_logged(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dialsum.worker.notify")
    _joined(notify_run_ended(_settings(str(tmp_path / "no-such-notifier")), _run(), tmp_path))
    assert "cannot start" in caplog.text and "no-such-notifier" in caplog.text
    failing = "import sys; sys.stderr.write('webhook said 403'); sys.exit(3)"
    _joined(notify_run_ended(_settings(sys.executable, "-c", failing), _run(), tmp_path))
    assert "exited 3: webhook said 403" in caplog.text


def test_blocked_ping_carries_the_reason_and_wait(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    run = _run(RunState.WAITING, metrics={}, stage=None, reason="pid 4711 (not ours) holds 14.2 GiB on GPU 0")
    _joined(notify_blocked(_settings(sys.executable, "-c", RECORDER, str(out)), run, tmp_path, waited_s=3725.4))
    payload = json.loads(json.loads(out.read_text(encoding="utf-8"))["stdin"])
    assert payload["event"] == "blocked" and payload["waited_s"] == 3725
    assert payload["text"] == "run 7 코바트-요약 is still waiting: pid 4711 (not ours) holds 14.2 GiB on GPU 0"


def test_blocked_watch_pings_once_per_spell_and_forgets_runs_that_left_waiting() -> None:
    watch = BlockedWatch(after_s=60)
    waiting = _run(RunState.WAITING, id=1)
    watch.held_back(1, now=0)
    assert watch.due([waiting], now=59) == []
    watch.held_back(1, now=59)  # later refusals do not restart the clock
    assert [(r.id, w) for r, w in watch.due([waiting], now=61)] == [(1, 61)]
    assert watch.due([waiting], now=500) == []  # once
    # A run that never got a guard refusal (paused queue, --after) starts no spell.
    assert watch.due([_run(RunState.WAITING, id=2)], now=1000) == []
    # Leaving `waiting` ends the spell: a new refusal counts from zero.
    watch.held_back(3, now=0)
    assert watch.due([_run(RunState.RUNNING, id=3)], now=30) == []
    watch.held_back(3, now=40)
    assert watch.due([_run(RunState.WAITING, id=3)], now=90) == []
    assert [r.id for r, _ in watch.due([_run(RunState.WAITING, id=3)], now=100)] == [3]


def test_settings_refuse_a_shell_string_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="must be a list of arguments"):
        NotifySettings.model_validate({"command": "curl -d @- https://example.invalid"})
    with pytest.raises(ValidationError, match="timeout"):
        NotifySettings.model_validate({"command": ["true"], "timeout": 5})
    with pytest.raises(ValidationError, match="greater than 0"):
        NotifySettings.model_validate({"command": ["true"], "timeout_s": 0})
    assert NotifySettings.model_validate({"command": ["notify-send", "x"]}).blocked_after_s == 3600.0


def test_payload_of_a_real_finished_run(workspace: Workspace, make_config, tmp_path: Path) -> None:
    mgr = Manager.open(workspace)
    mgr.add(str(make_config("koBART-요약")))
    mgr.ensure_worker()
    try:
        run = wait_until(lambda: (r := mgr.get(1)).state.is_final and r, timeout=60, what="run 1 to finish")
    finally:
        mgr.stop_worker()
    assert run.state is RunState.SUCCEEDED
    payload = payload_for("finished", run, workspace.root)
    assert payload["rouge"] == f"{run.metrics['final']:.2f}" and payload["stage"] == "evaluate"
    assert expand_argv(["{nickname}:{rouge}"], payload) == [f"koBART-요약:{payload['rouge']}"]


def test_the_worker_pings_when_a_run_finishes_and_when_a_guard_holds_one_back(workspace: Workspace, make_config,
                                                                              tmp_path: Path) -> None:
    from dialsum_tui.manager.guards.gpu import MIB, GpuDevice, GpuProcess, ScriptedGpuSource
    from dialsum_tui.manager.worker.loop import Worker

    out_dir = tmp_path / "pings"
    out_dir.mkdir()
    # One file per ping, named by event and run, so both pings are kept.
    recorder = ("import json, os, sys; e = os.environ; "
                "open(os.path.join(sys.argv[1], e['DIALSUM_EVENT'] + '-' + e['DIALSUM_RUN_ID']), 'w').write(sys.stdin.read())")
    settings = workspace.settings_path.read_text(encoding="utf-8")
    workspace.settings_path.write_text(
        settings + f"notify:\n  command: {json.dumps([sys.executable, '-c', recorder, str(out_dir)])}\n"
        "  blocked_after_s: 0.01\n", encoding="utf-8")
    manager = Manager.open(workspace)
    busy = GpuDevice(0, "Scripted H100", 15000 * MIB, 81559 * MIB, 0, 30,
                     (GpuProcess(pid=999_999, gpu_index=0, used_bytes=14500 * MIB),))
    idle = GpuDevice(0, "Scripted H100", 480 * MIB, 81559 * MIB, 0, 30)
    source = ScriptedGpuSource([[idle], [busy], [busy], [busy], [idle]])
    source.devices()  # the idle baseline
    manager._gpu = ScriptedGpuSource([[idle]])  # what `add` sees: GPU 0 exists (its preflight)
    run = manager.add(str(make_config("코바트")), action="train", gpus="0")
    worker = Worker(workspace, poll_s=0.05, gpu_source=source)

    def step() -> bool:
        worker.tick()
        return manager.get(run.id).state.is_final and (out_dir / f"finished-{run.id}").exists()

    wait_until(step, 60, "the run to finish and its ping to arrive")
    blocked = json.loads(wait_until(lambda: (out_dir / f"blocked-{run.id}").exists()
                                    and (out_dir / f"blocked-{run.id}").read_text(encoding="utf-8"), what="blocked ping"))
    assert "pid 999999" in blocked["text"]
    finished = json.loads((out_dir / f"finished-{run.id}").read_text(encoding="utf-8"))
    assert finished["state"] == "succeeded" and finished["nickname"] == "코바트"
