"""Sweeps on the command line: ``add --sweep/--seeds/--sweep-file/--priority`` with ``--json``, one bad
value refusing the whole sweep (exit 2), ``ls`` grouping a sweep's runs under its line (and
``--collapse``), ``cancel --sweep``, ``retry --sweep --failed``, ``compare --sweep`` with only the swept
keys, and ``check`` exiting 1 while a failure streak holds runs. The CLI's ``main`` in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dialsum_tui.cli import main
from dialsum_tui.cli_output import ls_table
from dialsum_tui.manager.runs.streaks import FailurePause
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace
from engine.contract import ExitCode

from support import wait_until


@pytest.fixture
def cli(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``cli(*args, code=0, json_=True)`` → (stdout, parsed when --json, stderr); asserts the exit code."""

    def run(*args: str, code: int = 0, json_: bool = True) -> tuple[Any, str]:
        got = main(["--workspace", str(workspace.root), *args, *(["--json"] if json_ else [])])
        out, err = capsys.readouterr()
        assert code is None or got == code, (out, err)
        return (json.loads(out) if json_ else out), err

    yield run
    Manager.open(workspace).stop_worker()


def test_add_sweep_json_ls_groups_and_cancel_sweep(workspace: Workspace, make_config, cli) -> None:
    cli("pause")
    config = str(make_config("kobart"))
    added, _ = cli("add", config, "--sweep", "train.learning_rate=1e-4,2e-4", "--sweep", "lora.r=8,16",
                   "--action", "train")
    assert added["sweep"]["id"] == "s1" and added["sweep"]["total"] == 4 and added["sweep"]["progress"] == "0/4 done"
    assert [r["nickname"] for r in added["runs"]] == ["kobart-lr1e-4-r8", "kobart-lr1e-4-r16", "kobart-lr2e-4-r8",
                                                      "kobart-lr2e-4-r16"]
    assert added["run"] == added["runs"][0] and {r["sweep"] for r in added["runs"]} == {"s1"}
    high, _ = cli("add", config, "--priority", "high", "--set", "train.max_steps=3", "--action", "train")
    assert high["run"]["priority"] == 1 and high["run"]["nickname"] == "kobart"
    listed, _ = cli("ls")
    assert [r["id"] for r in listed] == [5, 1, 2, 3, 4] and [r["sweep"] for r in listed] == [None] + ["s1"] * 4

    table = ls_table(Manager.open(workspace).runs(), width=120, sweeps=Manager.open(workspace).sweeps())
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["ID", "NICKNAME", "ACTION", "STAGE", "STATE", "PRIO"]
    group = next(i for i, line in enumerate(lines) if line.startswith("s1 "))
    assert "kobart ×4" in lines[group] and "0/4 done" in lines[group] and "sweep of lr × r" in lines[group]
    assert [line.split()[:2] for line in lines[group + 1:]] == [["1", "lr1e-4-r8"], ["2", "lr1e-4-r16"],
                                                                ["3", "lr2e-4-r8"], ["4", "lr2e-4-r16"]]
    collapsed, _ = cli("ls", "--collapse", json_=False)
    assert "s1 " in collapsed and "kobart-lr1e-4-r8" not in collapsed

    cancelled, _ = cli("cancel", "--sweep", "s1")
    assert cancelled["stop_requested"] == [] and {r["state"] for r in cancelled["runs"]} == {"cancelled"}
    assert cancelled["sweep"]["progress"] == "4/4 done, 4 cancelled"
    err, _ = cli("cancel", "3", "--sweep", "s1", code=ExitCode.BAD_INPUT)
    assert "a run id or --sweep ID (not both)" in err["error"]
    missing, _ = cli("cancel", "--sweep", "s9", code=ExitCode.BAD_INPUT)
    assert "no sweep s9 in this workspace" in missing["error"]


def test_a_bad_value_refuses_the_whole_sweep_and_queues_nothing(workspace: Workspace, make_config, cli,
                                                                tmp_path: Path) -> None:
    cli("pause")
    config = str(make_config("kobart"))
    err, _ = cli("add", config, "--sweep", "train.learning_rate=1e-4,0", code=ExitCode.BAD_INPUT)
    assert "variant kobart-lr0" in err["error"] and "train.learning_rate" in err["error"]
    assert cli("ls")[0] == []
    grid = tmp_path / "grid.yaml"
    grid.write_text("- {lora.r: 8}\n- {lora.r: 16, name: wide}\n", encoding="utf-8")
    added, _ = cli("add", config, "--sweep-file", str(grid), "--seeds", "2", "--action", "train")
    assert [r["nickname"] for r in added["runs"]] == ["kobart-r8-seed42", "kobart-r8-seed43", "kobart-wide",
                                                      "kobart-wide-v4"]


def test_retry_sweep_failed_and_compare_sweep(workspace: Workspace, make_config, cli,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "kobart-r16/evaluate:crash")
    added, _ = cli("add", str(make_config("kobart")), "--sweep", "lora.r=8,16,32")
    manager = Manager.open(workspace)
    wait_until(lambda: manager.sweep("s1").ended, 90, "the sweep to end")
    compared, _ = cli("compare", "--sweep", "s1")
    assert [row["key"] for row in compared["config_diff"]] == ["lora.r"]
    assert compared["sweep"]["best"]["nickname"] in {"kobart-r8", "kobart-r32"} and len(compared["runs"]) == 3
    text, _ = cli("compare", "--sweep", "1", json_=False)
    assert text.startswith("sweep s1: kobart ×3 (r), 3/3 done, 1 failed") and "swept keys:" in text

    manager.stop_worker()  # the next worker (started by retry) runs its stages without the failure
    monkeypatch.delenv("FAKE_FAIL")
    retried, _ = cli("retry", "--sweep", "s1", "--failed")
    assert [r["nickname"] for r in retried["runs"]] == ["kobart-r16"] and retried["runs"][0]["sweep"] == "s1"
    assert retried["retry_of"] == [added["runs"][1]["id"]]
    wait_until(lambda: manager.sweep("s1").ended, 90, "the retried variant to end")
    status = manager.sweep("s1")
    assert status.progress_text == "3/3 done" and len(status.members) == 4
    nothing, _ = cli("retry", "--sweep", "s1", "--failed", code=ExitCode.BAD_INPUT)
    assert "no variant failed" in nothing["error"]
    assert "add --failed" in cli("retry", "--sweep", "s1", code=ExitCode.BAD_INPUT)[0]["error"]


def test_check_exits_1_while_a_failure_pause_holds_runs_and_resume_lifts_it(workspace: Workspace, make_config,
                                                                              cli) -> None:
    cli("pause")
    manager = Manager.open(workspace)
    pause = FailurePause("data", {"data": str(workspace.data_dir)}, (1, 2, 3), 0.0, 600.0, "fix the row")
    manager.store.add_failure_pause(pause)
    checked, _ = cli("check", code=ExitCode.ERROR)
    assert checked["failure_pauses"][0]["runs"] == [1, 2, 3]
    assert any(line.startswith("queue paused for data dir") for line in checked["attention"])
    text, _ = cli("ls", json_=False)
    assert "queue paused for data dir" in text and "`dialsum-tui resume`" in text
    resumed, _ = cli("resume")
    assert resumed["lifted"][0]["kind"] == "data" and manager.failure_pauses() == []
    assert not any("queue paused for" in line for line in manager.attention())
