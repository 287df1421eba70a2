"""Settings as validated models: settings.yaml typos and bad values, the DIALSUM_* variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialsum_tui.manager.workspace.layout import WorkspaceError, find_workspace, init_workspace
from dialsum_tui.manager.workspace.settings import (
    ENV_VARS,
    EnvSettings,
    Settings,
    SettingsError,
    env_settings,
    load_settings,
    settings_as_dict,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    for model in (Settings, EnvSettings):
        undocumented = [name for name, f in model.model_fields.items() if not (f.description or "").strip()]
        assert not undocumented, f"{model.__name__}: {undocumented}"
    assert set(settings_as_dict(Settings())) == set(Settings.model_fields)


def test_a_typo_names_the_key_the_file_and_the_known_keys(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("quota_gb: 150\nmargin_gbs: 5\n", encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    text = str(err.value)
    assert text.startswith(f"{path}: unknown key 'margin_gbs'") and "margin_gb" in text and "quota_path" in text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("quota_gb: lots\n", r"settings.yaml: quota_gb: .*number.*\(got 'lots'\)"),
        ("quota_gb: -1\n", r"quota_gb: .*greater than 0"),
        ("gpu_samples: 0\n", r"gpu_samples: .*greater than or equal to 1"),
        ("- quota_gb\n", r"expected a mapping such as 'quota_gb: 150'"),
        ("quota_gb: [\n", r"invalid YAML"),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(SettingsError, match=expected):
        load_settings(path)


def test_the_workspace_reads_its_settings_and_reports_them_as_a_workspace_error(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    assert ws.settings() == Settings()  # no file: every default
    ws.settings_path.write_text("", encoding="utf-8")
    assert ws.settings() == Settings()  # empty file: every default
    ws.settings_path.write_text("quota_gb: 80\nmargin_gb: 2.5\nquota_path: /data\n", encoding="utf-8")
    assert (ws.settings().quota_gb, ws.settings().margin_gb, ws.settings().quota_path) == (80.0, 2.5, "/data")
    ws.settings_path.write_text("quota: 80\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="unknown key 'quota'"):
        ws.settings()


def _environment(monkeypatch: pytest.MonkeyPatch, **variables: str) -> EnvSettings:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    return env_settings()


def test_env_variables_are_validated_once_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(monkeypatch)
    assert env == EnvSettings() and env.cpu_procs == 1 and env.engine is None and env.worker_poll_s == 0.5
    env = _environment(monkeypatch, **{
        "DIALSUM_CPU_PROCS": "2", "DIALSUM_ENGINE": "python tests/fake_engine.py --step-s 0.1",
        "DIALSUM_WORKER_POLL_S": "0.05", "DIALSUM_STOP_GRACE": "1.5,3", "DIALSUM_DEMO_PRETRAIN_STEPS": "0",
        "DIALSUM_FAKE_GPU": "gpu.json", "DIALSUM_WORKSPACE": "/ws", "UNRELATED": "x",
    })
    assert env.cpu_procs == 2 and env.engine == ("python", "tests/fake_engine.py", "--step-s", "0.1")
    assert env.worker_poll_s == 0.05 and env.stop_grace == (1.5, 3.0) and env.demo_pretrain_steps == 0
    assert env.fake_gpu == Path("gpu.json") and env.workspace == Path("/ws")
    assert _environment(monkeypatch, DIALSUM_CPU_PROCS="  ").cpu_procs == 1  # blank = unset
    for var, value, expected in [
        ("DIALSUM_CPU_PROCS", "abc", r"\$DIALSUM_CPU_PROCS='abc': .*integer.*train ranks on a CPU-only host"),
        ("DIALSUM_CPU_PROCS", "0", r"\$DIALSUM_CPU_PROCS='0': .*greater than or equal to 1"),
        ("DIALSUM_WORKER_POLL_S", "-1", r"\$DIALSUM_WORKER_POLL_S='-1': .*greater than 0"),
        ("DIALSUM_DEMO_PRETRAIN_STEPS", "many", r"\$DIALSUM_DEMO_PRETRAIN_STEPS='many'"),
        ("DIALSUM_STOP_GRACE", "1,2,3", r"\$DIALSUM_STOP_GRACE='1,2,3': expected 'sigint_s' or 'sigint_s,sigterm_s'"),
    ]:
        with pytest.raises(SettingsError, match=expected) as err:
            _environment(monkeypatch, **{var: value})
        assert str(err.value).endswith("fix or unset it")


def test_every_dialsum_variable_the_manager_reads_is_in_the_model() -> None:
    # grep, so a new variable read somewhere in the manager or the TUI cannot skip validation.
    spelled: set[str] = set()
    for path in (REPO / "dialsum_tui").rglob("*.py"):
        if path.name in ("notify.py", "protocol.py"):  # variables handed to the notify command and to
            continue  # each stage (the launch token): outputs of the manager, not its settings
        spelled |= set(re.findall(r"\bDIALSUM_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    assert spelled <= set(ENV_VARS.values()), sorted(spelled - set(ENV_VARS.values()))


def test_a_bad_workspace_variable_is_a_workspace_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = init_workspace(tmp_path / "ws")
    monkeypatch.setenv("DIALSUM_WORKSPACE", str(ws.root))
    assert find_workspace().root == ws.root
    monkeypatch.setenv("DIALSUM_WORKSPACE", str(tmp_path / "nowhere"))
    with pytest.raises(WorkspaceError, match=r"\$DIALSUM_WORKSPACE .*nowhere: not a dialsum workspace"):
        find_workspace()


def test_a_settings_file_caught_mid_save_is_read_once_the_save_ends(tmp_path: Path) -> None:
    """An editor truncates and rewrites settings.yaml in place; the worker re-reads it every pass.
    The half-written file ('quota_gb: 1') is valid YAML, so a read in between must wait for the end."""
    import threading

    path = tmp_path / "settings.yaml"
    path.write_text("quota_gb: 1", encoding="utf-8")  # the save has begun: the first digits are out
    finished = threading.Event()

    def finish_the_save() -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("00\nmargin_gb: 7\n")
        finished.set()

    writer = threading.Timer(0.05, finish_the_save)
    writer.start()
    try:
        settings = load_settings(path)
    finally:
        writer.join()
    assert finished.is_set()
    assert (settings.quota_gb, settings.margin_gb) == (100, 7)
