"""A team workspace with real Unix users: two members of one group and an outsider, each running the
CLI as themselves (``setpriv``), their detached workers and the stages they launch running as them.

Needs root (``useradd``, ``groupadd``, ``setpriv``), as CI has. The users, their group and the
workspace are made for the module and removed after it. The users must be able to run this
checkout's Python: where a directory on the way is closed to them (the interpreter under a 0700
``/root``, or a CI clone in root's home), their commands run in a private mount namespace in which
only that directory is opened, by a tmpfs over it holding bind mounts of what is needed (nothing
changes for the rest of the machine). Where that cannot be done either, the module is skipped and
says why.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace
from engine import artifacts

from support import FAKE_ENGINE, GOOD_DATA, REPO, SESSION_ENV, run_cli, wait_until, write_config

CLI_TIMEOUT_S = 120


@dataclass(frozen=True)
class Team:
    """The users (``a``, ``b`` in ``group``; ``outsider`` not), the directory the workspace lives in,
    and the shell line that starts a command as one of them."""

    a: str
    b: str
    outsider: str
    group: str
    base: Path
    wrap: tuple[str, ...]  # unshare … sh -c SCRIPT sh, or () when the users reach the checkout as it is

    @property
    def ws(self) -> Path:
        return self.base / "ws"

    def run(self, user: str, *args: str, expect: int | None = 0, **env: str) -> subprocess.CompletedProcess[str]:
        """``dialsum-tui --workspace WS ARGS`` as ``user``; ``expect``: the exit status to assert."""
        return self.as_user(user, sys.executable, "-m", "dialsum_tui", "--workspace", str(self.ws), *args,
                            expect=expect, **env)

    def as_user(self, user: str, *argv: str, expect: int | None = 0, **env: str) -> subprocess.CompletedProcess[str]:
        entry = pwd.getpwnam(user)
        environment = {
            "PATH": "/usr/bin:/bin", "HOME": str(self.base / f"home-{user}"), "USER": user, "LOGNAME": user,
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", SESSION_ENV: os.environ[SESSION_ENV],
            "DIALSUM_ENGINE": shlex.join([sys.executable, str(FAKE_ENGINE)]), "DIALSUM_WORKER_POLL_S": "0.1",
            "DIALSUM_STOP_GRACE": "2,2", "FAKE_STEP_S": "0.05", "FAKE_STEPS": "4", **env,
        }
        setpriv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "env", "-i",
                   *(f"{k}={v}" for k, v in environment.items()), *argv]
        done = subprocess.run([*self.wrap, *setpriv], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              cwd=self.base)
        if expect is not None:
            assert done.returncode == expect, (argv, done.returncode, done.stdout, done.stderr)
        return done


def _needed() -> list[Path]:
    """What a test user must reach: the interpreter, the venv, the standard library, the checkout."""
    found = {Path(os.path.realpath(sys.executable)), Path(sys.prefix), Path(sys.base_prefix), REPO}
    found |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return sorted(found)


def _closed_dirs(paths: list[Path]) -> list[Path]:
    """Directories on the way to ``paths`` that other users may not enter (no o+x), top first."""
    closed = set()
    for path in paths:
        for directory in (*reversed(path.parents), path):
            try:
                mode = directory.stat().st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                closed.add(directory)
    return sorted(closed, key=lambda d: len(d.parts))


def _opening_script(closed: list[Path], needed: list[Path], stage: Path) -> str:
    """sh lines that, in a private mount namespace, cover each closed directory with a tmpfs others
    may enter, holding bind mounts of only its children on the way to ``needed``."""
    lines = ["set -e", "mount --make-rprivate /"]
    for n, directory in enumerate(closed):
        children = sorted({p.relative_to(directory).parts[0] for p in needed
                           if p != directory and p.is_relative_to(directory)})
        for k, child in enumerate(children):
            spot = stage / f"{n}-{k}"
            lines.append(f"mkdir -p {shlex.quote(str(spot))}")
            lines.append(f"mount --bind {shlex.quote(str(directory / child))} {shlex.quote(str(spot))}")
        lines.append(f"mount -t tmpfs -o mode=0711 dialsum-test {shlex.quote(str(directory))}")
        for k, child in enumerate(children):
            spot = stage / f"{n}-{k}"
            lines.append(f"mkdir {shlex.quote(str(directory / child))}")
            lines.append(f"mount --move {shlex.quote(str(spot))} {shlex.quote(str(directory / child))}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _remove_users(names: list[str], group: str) -> None:
    for name in names:
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
        procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for proc in procs:  # processes the test started as that user (workers, stages), by pid
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)  # its own group (useradd -U), if left
    subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates Unix users and a group (CI runs as root)")
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed")
    tag = f"{os.getpid() % 100000}{os.urandom(2).hex()}"
    a, b, outsider, group = f"dsa{tag}", f"dsb{tag}", f"dso{tag}", f"dsteam{tag}"
    base = Path(tempfile.mkdtemp(prefix="dialsum-team-", dir="/tmp"))
    os.chmod(base, 0o711)  # everyone may pass, nobody may list
    try:
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        for name in (a, b):
            subprocess.run(["useradd", "-M", "-U", "-G", group, "-s", "/usr/sbin/nologin", name], check=True,
                           capture_output=True)
        subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", outsider], check=True, capture_output=True)
        for name in (a, b, outsider):
            home = base / f"home-{name}"
            home.mkdir(mode=0o700)
            os.chown(home, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
        # The workspace directory is a's, as if a had made it: `init` runs as a.
        ws = base / "ws"
        ws.mkdir(mode=0o700)
        os.chown(ws, pwd.getpwnam(a).pw_uid, pwd.getpwnam(a).pw_gid)
        needed = _needed()
        closed = _closed_dirs(needed)
        wrap: tuple[str, ...] = ()
        if closed:
            if shutil.which("unshare") is None:
                pytest.skip(f"{', '.join(map(str, closed))} closed to other users and `unshare` is not installed")
            stage = base / "stage"
            stage.mkdir(mode=0o700)
            wrap = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                    _opening_script(closed, needed, stage), "sh")
        made = Team(a, b, outsider, group, base, wrap)
        probe = made.as_user(a, sys.executable, "-c", "import dialsum_tui.cli, engine.artifacts, yaml, psutil",
                             expect=None)
        if probe.returncode != 0:
            pytest.skip(f"a test user cannot run this checkout's Python ({sys.executable}; closed on the way: "
                        f"{[str(d) for d in closed] or 'nothing'}; files must be world-readable): {probe.stderr[-500:]}")
        yield made
    finally:
        _remove_users([a, b, outsider], group)
        shutil.rmtree(base, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _give(team: Team, path: Path, owner: str) -> None:
    """Make ``path`` (a file copied in by the test) ``owner``'s, shared as the workspace shares files."""
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(team.group).gr_gid)
    os.chmod(path, 0o2770 if path.is_dir() else 0o660)


@pytest.fixture(scope="module")
def shared(team: Team) -> Team:
    """The workspace, made by a with ``init --share-group``, with data and a config."""
    said = team.run(team.a, "init", str(team.ws), "--share-group", team.group).stdout
    assert f"shared with group {team.group}" in said
    for csv in GOOD_DATA.glob("*.csv"):
        shutil.copyfile(csv, team.ws / "data" / csv.name)
        _give(team, team.ws / "data" / csv.name, team.a)
    model = team.ws / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}\n", encoding="utf-8")
    for path in (team.ws / "models", model, model / "config.json"):
        _give(team, path, team.a)
    for nickname in ("alpha", "beta"):
        config = team.ws / "configs" / f"{nickname}.yaml"
        config.write_text(f"model: {{name_or_path: models/tiny, nickname: {nickname}, kind: seq2seq}}\n"
                          "train: {device: cpu}\n", encoding="utf-8")
        _give(team, config, team.a)
    return team


def _ls(team: Team, user: str) -> dict[int, dict]:
    return {run["id"]: run for run in json.loads(team.run(user, "ls", "--json").stdout)}


def _add(team: Team, user: str, config: str, **env: str) -> int:
    """Queue ``config`` as ``user`` (their worker starts if none runs); the run's id."""
    return int(json.loads(team.run(user, "add", config, "--json", **env).stdout)["run"]["id"])


def _worker_stop(team: Team, user: str) -> None:
    team.run(user, "worker", "stop")


def test_settings_and_models_of_a_shared_workspace_are_the_groups(shared: Team) -> None:
    team = shared
    settings = team.ws / ".dialsum" / "settings.yaml"
    assert _mode(settings) == 0o660, oct(_mode(settings))  # was 0600: every teammate's command crashed
    team.run(team.b, "ls")  # b reads the settings and the store

    team.run(team.a, "add", str(team.ws / "configs" / "alpha.yaml"))  # a's worker runs it, as a
    wait_until(lambda: _ls(team, team.b)[1]["state"] == "succeeded", 60, "a's run")
    final_model = team.ws / "checkpoints" / "alpha-r1" / "final_model"
    assert _mode(final_model) == 0o2770  # was 2700 (mkdtemp): b saw a complete model as missing
    for path in (final_model / "dialsum_model.json", final_model / "model.safetensors",
                 team.ws / "submissions" / "alpha-r1_submission.csv"):
        assert _mode(path) == 0o660, (path, oct(_mode(path)))
    for path in (team.ws, *team.ws.rglob("*")):
        assert _mode(path) & 0o007 == 0, f"{path} is open to everyone ({oct(_mode(path))})"
        assert path.lstat().st_gid == grp.getgrnam(team.group).gr_gid, path

    # b re-infers from a's model: the preflight (as b) and the stage (a's worker) both read it.
    done = team.run(team.b, "retry", "1", "--action", "infer")
    assert "queued run 2" in done.stdout, done.stdout
    wait_until(lambda: _ls(team, team.b)[2]["state"] == "succeeded", 60, "b's re-infer")
    assert "alpha" in team.run(team.b, "results").stdout
    _worker_stop(team, team.a)


def test_a_cancel_reaches_the_stage_or_is_refused_at_once_naming_who_can(shared: Team) -> None:
    team = shared
    gate = team.base / "gate"  # the train stage waits for it after its steps: it runs until the test says
    gate.unlink(missing_ok=True)
    beta = str(team.ws / "configs" / "beta.yaml")

    # 1. a's worker launched the stage (it runs as a); b cancels: the worker stops it, at once.
    first = _add(team, team.a, beta, FAKE_GATE=str(gate))
    wait_until(lambda: _ls(team, team.a)[first]["pid"], 60, "a's stage")
    started = time.monotonic()
    team.run(team.b, "cancel", str(first))
    wait_until(lambda: _ls(team, team.b)[first]["state"] == "cancelled", 30, "the cancel")
    assert time.monotonic() - started < 20
    assert _ls(team, team.b)[first]["reason"] == "cancelled during train"
    _worker_stop(team, team.a)

    # 2. a's stage re-adopted by b's worker: neither b nor b's worker may signal it.
    second = _add(team, team.a, beta, FAKE_GATE=str(gate))
    stage_pid = wait_until(lambda: _ls(team, team.a)[second]["pid"], 60, "a's second stage")
    _worker_stop(team, team.a)  # the stage keeps running, as a
    team.run(team.b, "worker", "start", FAKE_GATE=str(gate))
    refused = team.run(team.b, "cancel", str(second), expect=1)
    assert f"runs as {team.a}" in refused.stderr and f"ask {team.a} to run `dialsum-tui cancel {second}`" \
        in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    run = _ls(team, team.b)[second]
    assert run["state"] == "running" and not run["cancel_requested"]  # nothing was half-done
    assert psutil.pid_exists(stage_pid)

    # The other user's `worker stop`: refused, naming whose worker runs (never "no worker was running").
    refused = team.run(team.a, "worker", "stop", expect=1)
    assert f"runs as {team.b}" in refused.stderr and "worker stop" in refused.stderr, refused.stderr
    assert team.run(team.a, "worker", "status").returncode == 0  # b's worker still serves

    # A cancel flagged behind the CLI's back (an older dialsum-tui, a script): b's worker may not deliver
    # it and says so on the run, instead of "sending" SIGINT into EPERM while the stage trains on.
    team.as_user(team.b, sys.executable, "-c", "import sys; from dialsum_tui.manager.store.database import Store; "
                 "Store(sys.argv[1]).request_cancel(int(sys.argv[2]))", str(team.ws / ".dialsum" / "state.db"),
                 str(second))
    noted = wait_until(lambda: "only" in (_ls(team, team.b)[second]["reason"] or "") and _ls(team, team.b)[second],
                       30, "b's worker's note")
    assert f"runs as {team.a} and this worker as {team.b}" in noted["reason"], noted["reason"]
    assert noted["state"] == "running" and psutil.pid_exists(stage_pid)

    # a owns the stage: a's cancel stops it from a's side, and the run says who could not.
    done = team.run(team.a, "cancel", str(second))
    wait_until(lambda: _ls(team, team.a)[second]["state"] == "cancelled", 30, "a's cancel")
    assert not psutil.pid_exists(stage_pid) or psutil.Process(stage_pid).status() == psutil.STATUS_ZOMBIE
    reason = _ls(team, team.a)[second]["reason"]
    assert reason.startswith("cancelled during train"), (reason, done.stdout)
    _worker_stop(team, team.b)
    gate.touch()


def test_an_outsider_is_told_whose_workspace_it_is_without_a_traceback(shared: Team) -> None:
    team = shared
    for args in (("ls",), ("worker", "stop"), ("add", str(team.ws / "configs" / "alpha.yaml"))):
        done = team.run(team.outsider, *args, expect=2)
        assert "Traceback" not in done.stderr, done.stderr
        assert f"shared with Unix group {team.group!r}" in done.stderr and f"owner {team.a}" in done.stderr
        assert f"sudo usermod -aG {team.group} {team.outsider}" in done.stderr, done.stderr


def test_a_member_meeting_a_private_file_is_told_who_fixes_it(shared: Team) -> None:
    team = shared
    settings = team.ws / ".dialsum" / "settings.yaml"
    os.chmod(settings, 0o600)  # as an older dialsum-tui left it
    try:
        done = team.run(team.b, "ls", expect=2)
        assert "Traceback" not in done.stderr
        assert f"owner {team.a}" in done.stderr and "mode 0600" in done.stderr
        assert f"--share-group {team.group}" in done.stderr, done.stderr
    finally:
        os.chmod(settings, 0o660)


# --- a private workspace, one user ---------------------------------------------------------------


def test_a_private_workspace_keeps_every_file_its_owners(workspace: Workspace) -> None:
    """Before: submissions/*.csv were 0644 in a 0755 directory, readable by every user of the server."""
    for made in (workspace.root, workspace.checkpoints_dir, workspace.submissions_dir, workspace.runs_dir):
        assert _mode(made) == 0o700, (made, oct(_mode(made)))
    run_cli(workspace, "add", str(write_config(workspace, "koBART")))
    run_cli(workspace, "ls")
    wait_until(lambda: '"succeeded"' in run_cli(workspace, "ls", "--json").stdout, 60, "the run")
    written = [p for tree in (workspace.state_dir, workspace.runs_dir, workspace.checkpoints_dir,
                              workspace.submissions_dir) for p in (tree, *tree.rglob("*"))]
    assert any(p.name.endswith("_submission.csv") for p in written)
    written.remove(workspace.settings_path)  # written by the test's fixture, not by dialsum-tui
    for path in written:
        assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"


@pytest.mark.parametrize(("umask", "file", "directory"), [(sharing.PRIVATE_UMASK, 0o600, 0o700),
                                                           (sharing.SHARED_UMASK, 0o660, 0o2770)])
def test_the_engines_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, file: int, directory: int) -> None:
    """mkstemp and mkdtemp make 0600/0700 whatever the umask: the engine's atomic writes (a model's
    marker, a submission, a final_model directory) are chmod-ed to what the umask gives."""
    parent = tmp_path / "checkpoints"
    parent.mkdir()
    os.chmod(parent, 0o2770 if directory & stat.S_ISGID else 0o700)  # a shared workspace's dirs are setgid
    old = os.umask(umask)
    try:
        artifacts.atomic_write_text(parent / "alpha_submission.csv", "fname,summary\n")
        with artifacts.atomic_directory(parent / "alpha-r1" / "final_model") as tmp:
            (tmp / "model.safetensors").write_bytes(b"\0")
            artifacts.write_final_model_meta(tmp, {"nickname": "alpha"})
        assert artifacts.current_umask() == umask
    finally:
        os.umask(old)
    final = parent / "alpha-r1" / "final_model"
    assert _mode(parent / "alpha_submission.csv") == file
    assert _mode(final / "dialsum_model.json") == file
    assert _mode(final) == directory
