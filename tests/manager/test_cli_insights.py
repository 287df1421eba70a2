"""``dialsum-tui compare | samples | submit | lb`` as users run them (real processes): their output,
the exact ``--json`` keys, and exit status 2 with a clear message for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dialsum_tui.manager.service import Manager

from insights_support import NICK_A, NICK_B, make_insight_runs

CLI = [sys.executable, "-m", "dialsum_tui"]


@pytest.fixture
def cli(workspace):
    manager = Manager.open(workspace)
    made = make_insight_runs(manager)

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*CLI, "--workspace", str(workspace.root), *args], capture_output=True, text=True,
                              timeout=120, cwd=workspace.root)
        assert done.returncode == code, done.stdout + done.stderr
        return done

    return run, made, workspace


def test_compare_text_and_json(cli) -> None:
    run, made, _ws = cli
    text = run("compare", str(made.a), str(made.b)).stdout
    assert f"{NICK_A} #{made.a}" in text and "generation.num_beams: 4 | 1" in text and "74.69" in text
    body = json.loads(run("compare", str(made.a), str(made.b), "--json").stdout)
    assert list(body) == ["runs", "metrics", "config_diff", "curves"]
    assert [m["tokenizer"] for m in body["metrics"]] == ["mecab", "mecab"]


def test_samples_text_json_worst_and_filter(cli) -> None:
    run, made, _ws = cli
    body = json.loads(run("samples", str(made.a), "--vs", str(made.b), "--worst", "2", "--json").stdout)
    assert {"runs", "tokenizer", "scorer", "counts", "rules", "samples"} <= set(body)
    assert len(body["samples"]) == 2 and body["sort"] == "worst"
    assert body["samples"][0]["scores"][0]["final"] <= body["samples"][1]["scores"][0]["final"]
    assert body["counts"]["foreign"] == [0, 2]
    foreign = json.loads(run("samples", str(made.b), "--filter", "foreign", "--json").stdout)
    assert sorted(s["fname"] for s in foreign["samples"]) == ["dev_3", "dev_4"]
    text = run("samples", str(made.a), "--vs", str(made.b), "--sort", "diff", "--limit", "1").stdout
    assert "── dev_1" in text and "B: (empty)" in text and f"B = {NICK_B} #{made.b}" in text


def test_submit_and_lb(cli, tmp_path) -> None:
    run, made, ws = cli
    out = run("submit", str(made.a), "--to", str(tmp_path)).stdout
    assert "valid (3 rows, test order, no empty summary)" in out
    assert len(list(tmp_path.glob(f"koBART-요약_run{made.a}_*.csv"))) == 1
    assert "LB 47.52" not in run("results").stdout
    assert "dev 74.69 (mecab/competition)" in run("lb", str(made.a), "47.52").stdout
    assert "74.69 (mecab) ★ · LB 47.52" in run("results").stdout
    assert (ws.run_dir(made.a) / "leaderboard.json").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "1"], "two or more different run ids"),
    (["compare", "1", "99"], "no run 99"),
    (["samples", "99"], "no run 99"),
    (["samples", "1", "--sort", "diff"], "needs a second run: pass --vs ID"),
    (["samples", "1", "--worst", "0"], "--worst 0: give a count of 1 or more"),
    (["lb", "1", "abc"], "'abc' is not a number"),
    (["lb", "1", "470"], "outside 0..100"),
    (["submit", "2"], "empty summary"),
])
def test_bad_input_exits_2_with_a_message(cli, args, message) -> None:
    run, _made, _ws = cli
    assert message in run(*args, code=2).stderr


def test_samples_of_a_run_without_dev_predictions(cli) -> None:
    run, made, _ws = cli
    made.predictions_b.unlink()
    err = run("samples", str(made.b), code=2).stderr
    assert "no dev predictions" in err and f"dialsum-tui retry {made.b} --action infer" in err
