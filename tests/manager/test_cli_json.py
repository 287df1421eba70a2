"""Every ``dialsum-tui`` verb scripted: ``--json`` on each (the keys docs/cli.md documents), ``move``
reordering the queue, and exit codes that say whether it worked — errors as ``{error, exit_code}`` on
stdout too. Real SQLite, the CLI's ``main`` in this process, the detached worker paused."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dialsum_tui.cli import exit_code, main
from dialsum_tui.cli_parser import build_parser
from dialsum_tui.manager.errors import DialsumError, OperationFailed
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace
from engine.config import ConfigError
from engine.contract import ExitCode

RUN_KEYS = {"id", "nickname", "action", "state", "stage", "gpus", "after", "position", "reason", "note",
            "failure_kind", "failure_message", "failure_hint", "failed_stage", "progress", "metrics", "user", "backend"}
NO_JSON = {"demo", "serve"}  # one opens the TUI, the other serves it


@pytest.fixture
def cli(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, Any, str]]]:
    """``cli(*args, code=0)`` → (exit code, parsed stdout JSON, stderr); asserts the exit code."""

    def run(*args: str, code: int = 0) -> tuple[int, Any, str]:
        got = main(["--workspace", str(workspace.root), *args, "--json"])
        out, err = capsys.readouterr()
        assert got == code, (out, err)
        return got, json.loads(out), err

    yield run
    Manager.open(workspace).stop_worker()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_verb_but_demo_and_serve_takes_json() -> None:
    subs = _subcommands()
    assert {"move", "add", "cancel", "retry", "pause", "resume", "prune", "handoff", "repair", "worker", "submit",
            "lb", "init", "ls", "check", "compare", "samples", "results", "logs"} <= set(subs)
    without = {name for name, p in subs.items() if not any("--json" in a.option_strings for a in p._actions)}
    assert without == NO_JSON


def test_docs_cli_md_lists_every_verb() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("### `")]
    for name in _subcommands():
        assert any(f"`{name} " in h or f"`{name}`" in h for h in headings), name


def test_queue_verbs_print_json_and_move_reorders(workspace: Workspace, make_config, cli) -> None:
    assert cli("pause")[1] == {"paused": True}
    added = [cli("add", str(make_config(f"m{i}")), "--action", "train")[1] for i in range(4)]
    assert RUN_KEYS <= set(added[0]["run"]) and "config_yaml" not in added[0]["run"]
    assert added[0]["run"]["state"] == "queued" and added[0]["worker_pid"] > 0
    assert [a["run"]["id"] for a in added] == [1, 2, 3, 4]

    assert cli("move", "3", "--top")[1] == {"id": 3, "position": 1, "pending": [3, 1, 2, 4]}
    assert cli("move", "1", "--bottom")[1]["pending"] == [3, 2, 4, 1]
    assert cli("move", "1", "--before", "2")[1]["pending"] == [3, 1, 2, 4]
    assert cli("move", "4", "--to", "2")[1] == {"id": 4, "position": 2, "pending": [3, 4, 1, 2]}
    assert [r["id"] for r in cli("ls")[1]] == [3, 4, 1, 2]  # ls and the worker read the same order
    assert [r.id for r in Manager.open(workspace).runs()] == [3, 4, 1, 2]

    cancelled = cli("cancel", "2")[1]
    assert cancelled["run"]["state"] == "cancelled" and cancelled["stop_requested"] is False
    _, err, _ = cli("move", "2", "--top", code=ExitCode.BAD_INPUT)
    assert err["exit_code"] == 2 and "run 2 is cancelled; only queued or waiting runs can be moved" in err["error"]
    assert "--to 9: the queue has 3 pending run(s)" in cli("move", "1", "--to", "9", code=2)[1]["error"]
    assert "--before 2: run 2 is cancelled" in cli("move", "1", "--before", "2", code=2)[1]["error"]

    status = cli("worker", "status")[1]
    assert status["op"] == "status" and status["running"] is True and status["attention"] == []
    assert cli("resume")[1]["paused"] is False
    assert cli("pause")[1] == {"paused": True}
    stopped = cli("worker", "stop")[1]
    assert stopped["op"] == "stop" and stopped["stopped"] is True and stopped["pid"] == status["pid"]
    assert cli("worker", "stop")[1] == {"op": "stop", "stopped": False, "pid": None}
    assert cli("worker", "status", code=ExitCode.ERROR)[1]["running"] is False
    assert cli("worker", "start")[1]["running"] is True


def test_workspace_verbs_print_json(workspace: Workspace, cli, tmp_path) -> None:
    body = cli("init", str(tmp_path / "new"))[1]
    assert body["workspace"] == str(tmp_path / "new") and body["demo"] is False and body["share"] is None
    assert "disk quota counts" in body["quota"] and body["model_folders"] == [] and body["rebuilt"] is None

    repair = cli("repair")[1]
    assert repair["repaired"] is False and repair["backup"] is None and "nothing to repair" in repair["note"]

    handoff = cli("handoff", "--out", str(tmp_path / "HANDOFF.md"))[1]
    assert handoff["out"] == str(tmp_path / "HANDOFF.md") and handoff["markdown"].startswith("#")
    assert (tmp_path / "HANDOFF.md").read_text(encoding="utf-8") == handoff["markdown"]

    ckpt = workspace.checkpoints_dir / "m-r1" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    prune = cli("prune")[1]
    assert set(prune) == {"items", "total_bytes", "deleted", "freed_bytes", "not_touched", "kept", "used_bytes", "limit_bytes"}
    assert prune["items"] == [] and prune["deleted"] is False  # no complete final_model: the checkpoint is the only copy

    results = cli("results")[1]
    assert isinstance(results, list | dict)


def test_errors_are_json_too_and_keep_their_exit_codes(workspace: Workspace, cli, capsys) -> None:
    _, body, err = cli("cancel", "42", code=ExitCode.BAD_INPUT)
    assert body == {"error": "no run 42 in this workspace; see `dialsum-tui ls`", "exit_code": 2}
    assert "dialsum-tui: no run 42" in err  # people still read stderr
    assert main(["--workspace", str(workspace.root), "logs", "1", "--json", "--follow"]) == 2
    assert "drop --follow" in capsys.readouterr().err


@pytest.mark.parametrize(("err", "code"), [
    (DialsumError("bad"), ExitCode.BAD_INPUT),
    (OperationFailed("could not"), ExitCode.ERROR),
    (ConfigError("unknown key"), ExitCode.BAD_INPUT),
    (ValueError("not a number"), ExitCode.BAD_INPUT),  # as the CLI always had it
    (RuntimeError("worker did not start"), ExitCode.ERROR),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
])
def test_one_place_maps_errors_to_exit_codes(err: BaseException, code: ExitCode) -> None:
    assert exit_code(err) is code


def test_cancel_of_a_queued_run_and_of_a_finished_one(workspace: Workspace, make_config, cli) -> None:
    mgr = Manager.open(workspace)
    mgr.pause()
    run = mgr.add(str(make_config("m")), action="train")
    assert cli("cancel", str(run.id))[1]["run"]["reason"] == "cancelled before it started"
    again = cli("cancel", str(run.id))[1]  # already final: said, not an error
    assert again["run"]["state"] == RunState.CANCELLED.value and again["stop_requested"] is False
