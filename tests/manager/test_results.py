"""Tests for the results table and hand-off on a workspace that reproduces the team's hand-off."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import ScriptedGpuSource
from dialsum_tui.manager.insights.handoff import handoff_markdown
from dialsum_tui.manager.insights.results import (
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_OOM,
    STATUS_RUNNING,
    STATUS_TRAINED_INFER_FAILED,
    STATUS_UNKNOWN,
    STATUS_WAITING,
    check_submission,
    format_results,
    result_rows,
)
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.workspace.layout import init_workspace
from engine.artifacts import (
    EventWriter,
    final_model_dir,
    submission_path,
    write_final_model_meta,
)
from engine.config import config_from_dict

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gpu"
TEST_FNAMES = ["test_0", "test_1", "test_2", "test_3"]
KOBART, LLAMA_BF16, LLAMA_FP16, QWEN = (
    "koBART-summarization", "Llama-3.2-Korean-3B-bf16", "Llama-3.2-Korean-3B-fp16", "Qwen3-4B-Instruct")
SCORES = {"rouge1": 0.5660, "rouge2": 0.3675, "rougeL": 0.4719}


def _yaml(nick: str, hub: str, kind: str) -> str:
    return config_from_dict({"model": {"name_or_path": hub, "nickname": nick, "kind": kind}}).to_yaml()


def _complete_model(ws, run):
    nick = run.nickname
    d = final_model_dir(ws.checkpoints_dir, model_key(run))
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    write_final_model_meta(d, {"nickname": nick})


def _submission(ws, run, fnames):
    with open(submission_path(ws.submissions_dir, predictions_key(run)), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["fname", "summary"])
        w.writerows([f, "#Person1#이 호텔을 예약한다."] for f in fnames)


@pytest.fixture
def handoff_ws(tmp_path):
    """The four models of the hand-off, as real files and a real store."""
    ws = init_workspace(tmp_path / "ws")
    with open(ws.data_dir / "test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["fname", "dialogue"])
        w.writerows([f, "#Person1#: 안녕하세요"] for f in TEST_FNAMES)
    store = Store(ws.db_path)

    kobart = store.add(nickname=KOBART, config_path="configs/kobart.yaml", config_yaml=_yaml(KOBART, "digit82/kobart-summarization", "seq2seq"), action="pipeline")
    store.transition(kobart.id, "running", stage="evaluate")
    with EventWriter(ws.run_dir(kobart.id) / "events.jsonl", command="evaluate") as ev:
        ev.emit("started", pid=1)
        ev.emit("eval", **SCORES, final=round(sum(SCORES.values()) / 3 * 100, 4), tokenizer="mecab", split="dev")
        ev.emit("finished", seconds=3.0)
    store.transition(kobart.id, "succeeded", exit_code=0)
    _complete_model(ws, kobart)
    _submission(ws, kobart, TEST_FNAMES)

    bf16 = store.add(nickname=LLAMA_BF16, config_path="configs/llama.yaml", config_yaml=_yaml(LLAMA_BF16, "Bllossom/llama-3.2-Korean-Bllossom-3B", "causal"), action="pipeline")
    store.transition(bf16.id, "running", stage="infer")
    store.transition(bf16.id, "failed", exit_code=1, failure_kind="dtype", failed_stage="infer",
                     failure_message="RuntimeError: expected scalar type BFloat16 but found Float",
                     failure_hint="keep model.dtype, quantization.compute_dtype and train.precision consistent")
    _complete_model(ws, bf16)

    fp16 = store.add(nickname=LLAMA_FP16, config_path="configs/llama.yaml", config_yaml=_yaml(LLAMA_FP16, "Bllossom/llama-3.2-Korean-Bllossom-3B", "causal"), action="pipeline")
    store.transition(fp16.id, "running", stage="train")
    store.transition(fp16.id, "failed", exit_code=1, failure_kind="oom", failed_stage="train",
                     failure_message="torch.OutOfMemoryError: CUDA out of memory", failure_hint="lower batch size")
    (ws.checkpoints_dir / run_key(fp16)).mkdir()

    qwen = store.add(nickname=QWEN, config_path="configs/qwen.yaml", config_yaml=_yaml(QWEN, "Qwen/Qwen3-4B-Instruct-2507", "causal"), action="pipeline")
    store.transition(qwen.id, "running", stage="train", progress={"step": 758, "total": 780, "stage": "train"})
    store.transition(qwen.id, "interrupted")
    ckpt = ws.checkpoints_dir / run_key(qwen) / "trainer" / "checkpoint-758"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 758, "max_steps": 780}))
    (final_model_dir(ws.checkpoints_dir, run_key(qwen))).mkdir()  # exists, but without the completeness marker
    yield ws, store
    store.close()


def test_handoff_four_models(handoff_ws):
    ws, store = handoff_ws
    rows = {r.nickname: r for r in result_rows(ws, store.list())}
    assert rows[KOBART].status == STATUS_DONE
    assert rows[KOBART].final == pytest.approx(sum(SCORES.values()) / 3 * 100, abs=1e-3)
    assert rows[KOBART].rouge_text.endswith("(mecab)") and f"{len(TEST_FNAMES)} rows" in rows[KOBART].evidence
    assert rows[LLAMA_BF16].status == STATUS_TRAINED_INFER_FAILED and "BFloat16" in rows[LLAMA_BF16].evidence
    assert rows[LLAMA_FP16].status == STATUS_OOM and rows[LLAMA_FP16].failure_kind == "oom"
    qwen = rows[QWEN]
    assert qwen.status == STATUS_UNKNOWN
    assert f"run {qwen.run_id} interrupted at 758/780 steps" in qwen.evidence and "no complete final_model" in qwen.evidence
    assert len(rows) == 4


def test_disk_only_nickname_and_statuses_follow_the_store(handoff_ws):
    ws, store = handoff_ws
    ckpt = ws.checkpoints_dir / "koT5" / "trainer" / "checkpoint-120"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 120, "max_steps": 400}))
    running = store.add(nickname="Qwen-retry", config_path="c.yaml", config_yaml=_yaml("Qwen-retry", "Qwen/Qwen3-4B-Instruct-2507", "causal"), action="train")
    store.transition(running.id, "running", stage="train", progress={"step": 12, "total": 780})
    waiting = store.add(nickname="koBART-v2", config_path="c.yaml", config_yaml=_yaml("koBART-v2", "digit82/kobart-summarization", "seq2seq"), action="pipeline")
    store.transition(waiting.id, "waiting", reason="pid 4711 (not ours) holds 14.2 GiB on GPU 0")
    rows = {r.nickname: r for r in result_rows(ws, store.list())}
    assert rows["koT5"].status == STATUS_UNKNOWN and rows["koT5"].run_id is None
    assert "no run in the store" in rows["koT5"].evidence and "checkpoint-120: 120/400 steps" in rows["koT5"].evidence
    assert rows["Qwen-retry"].status == STATUS_RUNNING and "12/780" in rows["Qwen-retry"].evidence
    assert rows["koBART-v2"].status == STATUS_WAITING and "holds 14.2 GiB" in rows["koBART-v2"].evidence


def test_a_cancelled_retrain_leaves_a_done_model_done_and_says_so(handoff_ws):
    ws, store = handoff_ws
    retrain = store.add(nickname=KOBART, config_path="configs/kobart.yaml",
                        config_yaml=_yaml(KOBART, "digit82/kobart-summarization", "seq2seq"), action="train")
    store.transition(retrain.id, "running", stage="train")
    store.transition(retrain.id, "cancelled")
    row = {r.nickname: r for r in result_rows(ws, store.list())}[KOBART]
    assert row.status == STATUS_DONE and f"later run {retrain.id} cancelled" in row.evidence


def test_a_cancelled_first_attempt_is_cancelled(handoff_ws):
    ws, store = handoff_ws
    run = store.add(nickname="koT5", config_path="c.yaml", config_yaml=_yaml("koT5", "paust/pko-t5-base", "seq2seq"),
                    action="pipeline")
    store.transition(run.id, "cancelled")
    assert {r.nickname: r for r in result_rows(ws, store.list())}["koT5"].status == STATUS_CANCELLED


def test_formats(handoff_ws):
    ws, store = handoff_ws
    rows = result_rows(ws, store.list())
    md = format_results(rows, "markdown")
    assert md.splitlines()[0].startswith("| Model | ROUGE (final = mean×100, mecab) | R1/R2/RL ×100 | 상태")
    done = next(r for r in rows if r.final is not None)
    assert f"| {done.parts_text} |" in md and done.parts_text.count("/") == 2
    assert all(f"| {r.nickname} |" in md for r in rows)
    data = json.loads(format_results(rows, "json"))
    assert {d["code"] for d in data} == {"done", "trained_infer_failed", "oom", "unknown"}
    assert next(d for d in data if d["nickname"] == KOBART)["submission_rows"] == len(TEST_FNAMES)
    parsed = list(csv.DictReader(format_results(rows, "csv").splitlines()))
    assert [p["nickname"] for p in parsed] == [r.nickname for r in rows]
    table = format_results(rows, "table").splitlines()
    status_col = table[0].index("상태")
    # Korean and emoji are double width: every status starts in the same terminal column.
    from dialsum_tui.manager.insights.results import _width
    assert all(_width(line[: line.find(r.status)]) == _width(table[0][:status_col]) for line, r in zip(table[2:], rows))
    with pytest.raises(ValueError, match="use one of"):
        format_results(rows, "html")


def test_a_multi_line_failure_stays_on_its_models_row(handoff_ws):
    ws, store = handoff_ws
    run = store.add(nickname="broken-data", config_path="c.yaml", config_yaml=_yaml("broken-data", "gogamza/kobart-base-v2",
                    "seq2seq"), action="pipeline")
    store.transition(run.id, "running", stage="train")
    store.transition(run.id, "failed", failure_kind="data", failure_message=(
        "preflight before train:\n  - data/dev.csv: line 73: broken CSV\n  - data/train.csv: no summary column"))
    rows = result_rows(ws, store.list())
    for fmt in ("markdown", "table"):
        lines = format_results(rows, fmt).splitlines()
        assert len(lines) == 2 + len(rows)  # header, rule, one line per model
        broken = next(line for line in lines if "broken-data" in line)
        assert "line 73: broken CSV" in broken and "no summary column" in broken


def test_check_submission_names_the_problem(tmp_path):
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("fname,dialogue\ntest_0,a\ntest_1,b\n")
    sub = tmp_path / "x_submission.csv"
    sub.write_text(",fname,summary\n0,test_0,요약\n1,test_1,요약\n")  # sample_submission layout
    assert check_submission(sub, test_csv)[0] == 2
    sub.write_text("fname,summary\ntest_1,요약\ntest_0,요약\n")
    rows, detail = check_submission(sub, test_csv)
    assert rows is None and "order differs at row 2" in detail
    sub.write_text("fname,summary\ntest_0,요약\n")
    assert "missing (e.g. test_1)" in check_submission(sub, test_csv)[1]
    sub.write_text("fname,summary\ntest_0,\ntest_1,요약\n")
    assert check_submission(sub, test_csv)[1].endswith("row 2: empty summary")
    sub.write_text("id,text\n")
    assert "expected fname,summary" in check_submission(sub, test_csv)[1]


def test_handoff_markdown(handoff_ws):
    ws, store = handoff_ws
    runs = store.list()
    rows = result_rows(ws, runs)
    src = ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json")
    text = handoff_markdown(ws, runs, rows, src.devices(), src.describe(), None)
    bf16 = next(r for r in rows if r.nickname == LLAMA_BF16)
    for needle in ("## Results", "## GPU", "## Disk", "## Running and waiting", "## Failures", "## Next actions",
                   f"re-infer {LLAMA_BF16}: `dialsum-tui retry {bf16.run_id} --action infer`",
                   "GPU 0: 20.0 GiB held by pid 4194399 (not ours; user alice) — ask alice", "not measured yet", f"submit the best model {KOBART}"):
        assert needle in text, needle


def test_who_queued_a_run_shows_in_results_and_handoff(handoff_ws):
    from dialsum_tui.manager.procfs import current_user
    from dialsum_tui.manager.service import Manager

    ws, store = handoff_ws
    manager = Manager.open(ws)
    config = ws.configs_dir / "who.yaml"
    config.write_text("model: {name_or_path: models/tiny, nickname: 누가-큐에-넣었나, kind: seq2seq}\n"
                      "train: {device: cpu}\n", encoding="utf-8")
    run = manager.add(str(config), check=False)  # this workspace has only test.csv: who, not preflight
    assert run.user == current_user()
    runs = store.list()
    rows = result_rows(ws, runs)
    assert next(r for r in rows if r.nickname == "누가-큐에-넣었나").user == current_user()
    table = format_results(rows, "markdown")
    assert table.splitlines()[0].endswith("| 상태 | By | Evidence |") and f"| {current_user()} |" in table
    text = handoff_markdown(ws, runs, rows, [], "no GPU", None)
    assert f"- run {run.id} 누가-큐에-넣었나 (pipeline, queued by {current_user()}) queued" in text
