"""The smaller faults of the hostile pass (issue 24, point 7), each refused or handled where it enters:
a nickname a command line takes for an option, invisible or formatting characters that make two
nicknames look alike, a dangling ``runs/<id>`` link, ``quota_gb: .inf``, and a test that leaves a
process behind. The CLI's ``main`` in-process, the real store, an in-process worker with stage
processes of the stand-in engine."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator

import psutil
import pytest
import yaml

from dialsum_tui.cli import main
from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs import identity
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from engine.contract import ExitCode

from support import drive, leftover_processes, wait_until, write_config

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``cli(*args)`` → (exit code, stdout, stderr) of ``dialsum-tui --workspace WS ARGS``."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--workspace", str(workspace.root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    Manager.open(workspace).stop_worker()


def _config(ws: Workspace, nickname: str) -> str:
    path = ws.configs_dir / "nick.yaml"
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("nickname", ["-rf", "--help", "-"])
def test_a_nickname_starting_with_a_dash_is_refused_at_add(workspace: Workspace, cli: Cli, nickname: str) -> None:
    """Before: it passed add, then reached the stages' argv (--artifact-key -rf-r1) and every stage failed unknown."""
    code, out, err = cli("add", _config(workspace, nickname))
    assert code == ExitCode.BAD_INPUT and "model.nickname" in err and "starts with '-'" in err, err
    assert Manager.open(workspace).runs() == []  # nothing queued


def test_a_retry_cannot_bring_a_dash_nickname_in_with_set(workspace: Workspace, cli: Cli) -> None:
    manager = Manager.open(workspace)
    first = manager.add(str(write_config(workspace, "koBART")))
    manager.cancel(first.id)
    code, _out, err = cli("retry", str(first.id), "--set", "model.nickname=--help")
    assert code == ExitCode.BAD_INPUT and "starts with '-'" in err, err
    assert [run.id for run in manager.runs()] == [first.id]


@pytest.mark.parametrize(("nickname", "named"), [
    ("bart\u202e2v", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("ko\u200bbart", "U+200B ZERO WIDTH SPACE"),
    ("\ufeffkobart", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("ko\u00a0bart", "U+00A0 NO-BREAK SPACE"),
])
def test_an_invisible_or_formatting_character_is_refused_naming_its_code_point(workspace: Workspace, cli: Cli,
                                                                                nickname: str, named: str) -> None:
    """Before: accepted and printed raw, so two runs could look like one nickname."""
    code, out, err = cli("add", _config(workspace, nickname))
    assert code == ExitCode.BAD_INPUT and named in err and "model.nickname" in err, err
    bad = next(ch for ch in nickname if unicodedata.category(ch) in ("Cf", "Zs"))
    assert bad not in out + err  # the message names it; it never prints it raw
    assert Manager.open(workspace).runs() == []


def test_a_decomposed_hangul_nickname_is_refused_as_a_look_alike(workspace: Workspace, cli: Cli) -> None:
    decomposed = unicodedata.normalize("NFD", "코바트")
    assert decomposed != "코바트"
    code, _out, err = cli("add", _config(workspace, decomposed))
    assert code == ExitCode.BAD_INPUT and "not NFC" in err and "'코바트'" in err, err
    cli("add", _config(workspace, "코바트"))  # the same name, composed: fine


def test_a_dangling_run_directory_link_is_skipped_and_never_leaves_a_ghost_run(workspace: Workspace, cli: Cli,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: add crashed on runs/1 (a link to nothing) yet left run 1 queued, and the queue stuck on it."""
    (workspace.runs_dir / "1").symlink_to(workspace.root / "gone")
    code, out, err = cli("add", str(write_config(workspace, "koBART")))
    assert code == ExitCode.OK and "queued run 2" in out, (out, err)
    manager = Manager.open(workspace)  # the worker add started runs it: the queue moves on
    assert wait_until(lambda: (run := manager.get(2)).state.is_final and run, 60).state is RunState.SUCCEEDED

    # Two adds racing for the same free id: the loser's directory cannot be made, and it leaves nothing.
    (workspace.runs_dir / "3").symlink_to(workspace.root / "gone")
    monkeypatch.setattr(identity, "next_free_id", lambda runs_dir: 3)
    code, _out, err = cli("add", str(write_config(workspace, "koBART")))
    assert code == ExitCode.BAD_INPUT and "runs/3 exists and is not a directory" in err, err
    assert [run.id for run in manager.runs()] == [2]


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_an_infinite_or_nan_quota_is_a_settings_error_check_names(workspace: Workspace, cli: Cli, value: str) -> None:
    """Before: `quota_gb: .inf` passed validation, crashed check and worker status, and add still queued."""
    workspace.settings_path.write_text(workspace.settings_path.read_text(encoding="utf-8") + f"quota_gb: {value}\n",
                                       encoding="utf-8")
    code, out, err = cli("check")
    assert code == ExitCode.ERROR and "quota_gb: Input should be a finite number" in out + err, (out, err)
    assert "Traceback" not in out + err
    code, out, err = cli("worker", "status")
    assert code == ExitCode.ERROR and "Traceback" not in out + err
    # add never queues it silently: it names the key, or the worker holds the run saying why.
    code, out, err = cli("add", str(write_config(workspace, "koBART")))
    manager = Manager.open(workspace)
    if code == ExitCode.BAD_INPUT:
        assert "quota_gb: Input should be a finite number" in err and manager.runs() == [], err
        return
    assert code == ExitCode.OK, (out, err)
    Manager.open(workspace).stop_worker()  # the one add started: an in-process worker is watched instead
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    held = drive(worker, manager, 1, lambda r: r.state is RunState.WAITING and "quota_gb" in (r.reason or ""))
    assert "finite" in held.reason


def test_the_suite_finds_a_process_a_test_left_running() -> None:
    """What tests/conftest.py checks after every test: our programs still running that this pytest
    process started, whoever their parent became (a detached worker is adopted by init)."""
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dialsum_tui.manager.worker"],
                            start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        found = wait_until(lambda: leftover_processes(), 10, "the left-behind worker")
        assert ours.pid in found and "dialsum_tui.manager.worker" in found[ours.pid]
        assert other.pid not in found  # not one of ours: a sleeper, a shell
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
    assert ours.pid not in leftover_processes()
    assert not any(p.pid == ours.pid for p in psutil.process_iter())
