"""A dev score is compared and ranked only with scores made on the same basis (issue 24: dev rows
removed mid-run changed the basis, n=30 → 29, and the run still got ★): tokenizer, scorer and the
number of dev rows scored. A score on another dev-set size is not starred, says why, and a
comparison across sizes says it is not comparable."""

from __future__ import annotations

import pytest

from dialsum_tui.manager.insights.compare import compare_runs
from dialsum_tui.manager.insights.leaderboard import ranking
from dialsum_tui.manager.insights.results import result_rows
from dialsum_tui.manager.runs.events import ScoreBasis, ranked_basis
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from engine.artifacts import EventWriter
from engine.contract import Event, RunFiles, Stage

from insights_support import NICK_A, make_insight_runs
from support import write_config


@pytest.fixture
def runs(workspace):
    manager = Manager.open(workspace)
    return manager, make_insight_runs(manager)


def _scored(manager: Manager, nickname: str, final: float, n: int) -> int:
    """A finished run whose evaluate stage scored ``n`` dev rows (the dev set had changed)."""
    run = manager.add(str(write_config(manager.workspace, nickname)), check=False)
    with EventWriter(RunFiles(manager.workspace.run_dir(run.id)).events, command=Stage.EVALUATE) as ev:
        ev.emit(Event.STARTED, pid=1, tokenizer="mecab", scorer="competition")
        ev.emit(Event.EVAL, rouge1=final / 100, rouge2=final / 100, rougeL=final / 100, final=final, sum=3 * final,
                tokenizer="mecab", scorer="competition", n=n, split="dev")
        ev.emit(Event.FINISHED, seconds=1.0)
    manager.store.transition(run.id, RunState.RUNNING, stage="evaluate", pid=None)
    manager.store.transition(run.id, RunState.SUCCEEDED, exit_code=0)
    return run.id


def test_the_basis_most_runs_were_scored_on_is_ranked_ties_the_newest() -> None:
    six, five = ScoreBasis("mecab", "competition", 6), ScoreBasis("mecab", "competition", 5)
    assert ranked_basis([(1, six), (2, six), (3, five)]) == six
    assert ranked_basis([(1, six), (3, five)]) == five
    assert ranked_basis([]) is None
    assert six.differs(five) and not six.differs(ScoreBasis("mecab", "competition", None))  # unknown n: any
    assert six.differs(ScoreBasis("char", "competition", 6))


def test_a_score_on_fewer_dev_rows_is_not_starred_and_says_why(runs) -> None:
    manager, made = runs
    fewer = _scored(manager, "행-삭제-후", 99.0, n=5)  # the highest final, on a dev set one row short
    ranked = ranking(manager.workspace, manager.runs())
    assert ranked.best == {("mecab", "competition"): made.a}
    assert "scored on mecab/competition, n=5 dev rows, 2 other run(s) on mecab/competition, n=6" in ranked.unranked[fewer]
    rows = {row.nickname: row for row in result_rows(manager.workspace, manager.runs())}
    assert rows[NICK_A].best and rows[NICK_A].n == 6 and rows[NICK_A].unranked is None
    odd = rows["행-삭제-후"]
    assert not odd.best and odd.n == 5 and odd.rouge_run == fewer and "not ranked" in odd.evidence
    comparison = compare_runs(manager.workspace, [manager.get(made.a), manager.get(fewer)])
    assert comparison.basis_warning() == ("these finals were scored on different dev sets (n=5 vs n=6 rows) "
                                          "and are not comparable")
    assert compare_runs(manager.workspace, [manager.get(made.a), manager.get(made.b)]).basis_warning() is None
