"""The run-file contract: typed event records, names checked where written, one hint per failure
kind, the quota keys that left the run config, the snapshot loader and the engine's env settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.artifacts import EventWriter, read_events
from engine.config import ConfigError, config_from_dict, load_config
from engine.contract import (
    HINTS,
    Eval,
    Event,
    Failed,
    FailureKind,
    Phase,
    PhaseChanged,
    Started,
    load_snapshot,
    parse_event,
)
from engine.failures import SIGNATURES, classify_exception, match_text
from engine.profile_settings import profile_settings
from engine.units import GB, disk_full, disk_stop_bytes, format_bytes, format_gib, format_used_of

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"model": {"name_or_path": "digit82/kobart-summarization", "nickname": "kobart", "kind": "seq2seq"}}


def test_parse_event_gives_typed_records(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path, command="train") as ev:
        ev.emit(Event.STARTED, nickname="kobart", model="m", pid=7, world_size=1)
        ev.emit(Event.PHASE, name=Phase.TRAIN)
        ev.emit(Event.EVAL, step=4, rouge1=0.4, rouge2=0.2, rougeL=0.3, final=30.0, tokenizer="mecab", split="dev")
        ev.emit(Event.FAILED, kind=FailureKind.OOM, message="CUDA out of memory", hint=FailureKind.OOM.hint)
    started, phase, evaluation, failed = (parse_event(raw) for raw in read_events(path))
    assert isinstance(started, Started) and started.nickname == "kobart" and started.pid == 7
    assert started.command == "train" and started.v == 1 and started.ts > 0
    assert isinstance(phase, PhaseChanged) and phase.name == Phase.TRAIN
    assert isinstance(evaluation, Eval) and evaluation.final == 30.0 and evaluation.rougeL == 0.3
    assert isinstance(failed, Failed) and FailureKind(failed.kind) is FailureKind.OOM
    # Readers ignore fields they do not know and events they do not know (docs/events.md).
    newer = parse_event({"event": "progress", "step": 3, "total": 9, "from_the_future": 1})
    assert newer.step == 3 and not hasattr(newer, "from_the_future")
    assert parse_event({"event": "no-such-event"}) is None and parse_event({}) is None


def test_the_writer_refuses_names_and_fields_outside_the_contract(tmp_path: Path) -> None:
    with EventWriter(tmp_path / "events.jsonl") as ev:
        with pytest.raises(ValueError, match="unknown event 'progres'"):
            ev.emit("progres", step=1)
        with pytest.raises(ValueError, match=r"event 'progress': unknown field\(s\) stpe.*engine/contract.py"):
            ev.emit(Event.PROGRESS, stpe=1)
        written = ev.emit("progress", step=1)  # a plain string naming a known event is fine
    assert written["event"] == "progress"


def test_each_failure_kind_has_exactly_one_hint_and_everyone_uses_it() -> None:
    assert set(HINTS) == set(FailureKind)
    assert len(set(HINTS.values())) == len(HINTS), "two kinds share a hint"
    assert all(hint == kind.hint for kind, _pattern, hint in SIGNATURES)
    assert match_text("torch.OutOfMemoryError: CUDA out of memory").hint == FailureKind.OOM.hint
    assert classify_exception(KeyboardInterrupt()).hint == FailureKind.INTERRUPTED.hint
    assert classify_exception(ValueError("weird")).hint == FailureKind.UNKNOWN.hint
    assert FailureKind.parse("disk") is FailureKind.DISK and FailureKind.parse(None) is FailureKind.UNKNOWN
    # No other module spells a hint: one wording per kind (the interrupt hint once had four).
    sources = [p for top in ("engine", "dialsum_tui") for p in (REPO / top).rglob("*.py") if p.name != "contract.py"]
    for kind, hint in HINTS.items():
        head = hint[:40]
        spelled = [str(p.relative_to(REPO)) for p in sources if head in p.read_text(encoding="utf-8")]
        assert not spelled, f"{kind} hint spelled outside engine/contract.py in {spelled}"


@pytest.mark.parametrize("key", ["disk_quota_gb", "disk_margin_gb", "disk_quota_path"])
def test_the_quota_keys_left_the_run_config(tmp_path: Path, key: str) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("model: {name_or_path: m, nickname: n, kind: seq2seq}\npaths:\n  " + f"{key}: 150\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and f"paths.{key}" in text
    assert "the disk quota moved to the workspace's settings.yaml (" in text
    if key != "disk_quota_path":
        assert "(quota_gb, margin_gb)" in text
    with pytest.raises(ConfigError, match=f"paths.{key}"):
        config_from_dict(MINIMAL, overrides={f"paths.{key}": 1})


def test_a_snapshot_from_before_the_move_still_loads() -> None:
    # Snapshots are the engine's own record of old runs (the store keeps them): they stay readable.
    old = config_from_dict(MINIMAL).to_yaml().replace(
        "paths:\n", "paths:\n  disk_quota_gb: 150.0\n  disk_quota_path: .\n  disk_margin_gb: 5.0\n"
    )
    cfg = load_snapshot(old, source="run 3 config snapshot")
    assert cfg.model.nickname == "kobart" and cfg.paths.checkpoints == "checkpoints"
    with pytest.raises(ConfigError, match="run 3 config snapshot: unknown key 'train.bacth_size'"):
        load_snapshot(old + "train: {bacth_size: 4}\n", source="run 3 config snapshot")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_snapshot("model: [", source="run 3")


def test_no_shipped_config_states_a_quota() -> None:
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        assert not re.search(r"^\s*disk_(quota|margin)", path.read_text(encoding="utf-8"), re.M), path


def test_units_are_decimal_for_disk_and_binary_for_gpu() -> None:
    # The defaults: the engine once stopped at 155.7e9 bytes (GiB) while the manager stopped at 145e9.
    assert disk_stop_bytes(150, 5) == 145 * GB == 145_000_000_000
    assert disk_full(145 * GB, disk_stop_bytes(150, 5)) and not disk_full(145 * GB - 1, disk_stop_bytes(150, 5))
    assert format_bytes(512) == "512 B" and format_bytes(9_800_000_000) == "9.8 GB"
    assert format_used_of(12_300_000_000, 150 * GB) == "12.3 / 150.0 GB"
    assert format_used_of(300_000, 2_000_000) == "0.3 / 2.0 MB"  # small test quotas stay readable
    assert format_gib(14.2 * 2**30) == "14.2 GiB"


def test_profile_variables_are_validated() -> None:
    assert profile_settings({}).out_dir is None
    on = profile_settings({"DIALSUM_TORCH_PROFILE": "/tmp/prof", "DIALSUM_TORCH_PROFILE_START": "7"})
    assert on.out_dir == Path("/tmp/prof") and on.start == 7
    with pytest.raises(ConfigError, match=r"\$DIALSUM_TORCH_PROFILE_START='abc'.*fix or unset it"):
        profile_settings({"DIALSUM_TORCH_PROFILE_START": "abc"})


def test_docs_events_md_lists_every_field_of_every_record() -> None:
    from dataclasses import fields

    from engine.contract import RECORDS, EventRecord

    common = {f.name for f in fields(EventRecord)}
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*)$", (REPO / "docs" / "events.md").read_text(), re.M)}
    for event, record in RECORDS.items():
        assert event.value in rows, f"docs/events.md has no row for {event.value}"
        missing = [f.name for f in fields(record) if f.name not in common and f"`{f.name}`" not in rows[event.value]]
        assert not missing, f"docs/events.md, {event.value}: {missing}"
