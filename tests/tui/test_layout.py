"""Tests of the layout at every terminal size (issue 17): queue columns fitted to the width, the detail
line, one panel at a time under 60×20, the footer's keys per width, the add dialog's GPU/after fields."""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from textual.widgets import Input, OptionList, Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.procfs import current_user
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.screens.add_run import parse_after, parse_gpus
from dialsum_tui.screens.help import HelpScreen
from dialsum_tui.screens.main import KEYS, MainScreen, footer_actions
from dialsum_tui.widgets.formatting import fit_cell
from dialsum_tui.widgets.key_bar import KeyBar
from dialsum_tui.widgets.queue_table import QueueTable, layout_columns

from tui_support import scripted_gpu, wait_for, write_config

NICKS = ("한국어-요약-koBART", "Llama-3.2-한국어-3B-bf16", "큐웬3-4B-대화요약")


@pytest.mark.parametrize("width", [30, 46, 58, 78, 118, 158, 198])
def test_queue_columns_fit_every_width_and_keep_the_essentials(width) -> None:
    columns = layout_columns(width, longest_nickname=24)
    keys = [key for key, _, _ in columns]
    assert keys[:3] == ["id", "state", "model"] and "pct" in keys  # id, state, nickname, progress: always
    used = sum(w + 2 for _, _, w in columns)  # each cell has one cell of padding on both sides
    assert used <= width - 2 or width < 40  # never wider than the table (a scrollbar's room kept)
    if width >= 58:
        assert "note" in keys and dict((k, w) for k, _, w in columns)["note"] >= 12


@pytest.mark.parametrize("largest_id", [7, 99, 999, 1000, 12345, 1_000_000])
@pytest.mark.parametrize("width", [46, 78, 198])
def test_run_ids_of_any_length_fit_their_column(width, largest_id) -> None:
    widths = {k: w for k, _, w in layout_columns(width, 24, largest_id)}
    assert widths["id"] >= len(f"●{largest_id}")  # run 1000 marked for compare reads "●1000", never "10…"
    assert fit_cell(f"●{largest_id}", widths["id"]) == f"●{largest_id}"


def test_one_key_table_feeds_the_bindings_the_footer_and_the_help() -> None:
    from dialsum_tui.app import key_table

    bindings = {b.key: b for b in MainScreen.BINDINGS}
    assert [k.key for k in KEYS] == list(bindings)  # one binding per row of the table, nothing else
    assert all(bindings[k.key].description == k.label and bindings[k.key].tooltip == k.help for k in KEYS)
    helped = dict(key_table())
    assert "HANDOFF.md" in helped["h"] and "nothing new starts" in helped["space"]  # filled in from the manager
    assert not any("{" in line for line in helped.values())


def test_wider_tables_add_columns_and_give_the_note_the_rest() -> None:
    narrow = {k: w for k, _, w in layout_columns(78, 24)}
    wide = {k: w for k, _, w in layout_columns(198, 24)}
    assert set(narrow) == {"id", "state", "model", "pct", "note"}
    assert set(wide) >= {"eta", "user", "step", "stage"}
    assert wide["note"] >= 52  # "waiting for the running run(s) on the same device(s)" whole
    assert layout_columns(46, 24)[1][2] == 2  # the state shrinks to its icon before anything vanishes


def test_parse_gpu_and_after_say_what_to_type() -> None:
    assert parse_gpus(" 0, 1 ") == "0,1" and parse_gpus("") is None
    with pytest.raises(ValueError, match="type device indices such as 0 or 0,1"):
        parse_gpus("cuda:0")
    assert parse_after("#3") == 3 and parse_after(" ") is None
    with pytest.raises(ValueError, match="type a run id from the queue's ID column"):
        parse_after("three")


def _queue(workspace, manager) -> list[int]:
    ids = [manager.add(str(write_config(workspace, nick))).id for nick in NICKS]
    manager.store.transition(ids[1], RunState.WAITING, reason="waiting for the running run(s) on the same device(s)")
    return ids


async def test_80x24_queue_shows_who_and_the_detail_line(workspace, manager) -> None:
    manager.pause()
    ids = _queue(workspace, manager)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.main.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="three runs")
        assert table.column_keys == ["id", "state", "model", "pct", "note"]
        await pilot.press("down")
        await wait_for(pilot, lambda: app.selected_run_id == ids[1], what="run 2 selected")
        detail = str(app.main.query_one("#queue-detail", Static).render())
        assert f"run {ids[1]} · Llama-3.2-한국어-3B-bf16" in detail and f"by {current_user()}" in detail
        assert "waiting for the running run(s) on the same device(s)" in detail  # the note in full
        # ... while the queue's narrow note column says it was cut.
        note_width = dict((k, w) for k, _, w in table._columns)["note"]
        note = table.get_row(str(ids[1]))[table.column_keys.index("note")]
        assert note.endswith("…") and cell_len(note) <= note_width and note.startswith("waiting for the")
        await pilot.resize_terminal(200, 60)
        await wait_for(pilot, lambda: "user" in table.column_keys, what="the By column at 200 columns")
        assert table.get_row(str(ids[0]))[table.column_keys.index("user")] == current_user()


async def test_under_60x20_one_panel_at_a_time_and_v_switches(workspace, manager) -> None:
    manager.pause()
    _queue(workspace, manager)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(50, 16)) as pilot:
        screen = app.main
        await wait_for(pilot, lambda: screen.query_one(QueueTable).row_count == 3, what="three runs")
        assert screen.has_class("-single")

        def shown() -> list[str]:
            return [w for w in ("#queue-panel", "#log", "#progress", "#gpu", "#disk")
                    if screen.query_one(w).display and screen.query_one(w).region.area]

        assert shown() == ["#queue-panel"]
        for expected in (["#log"], ["#progress"], ["#gpu", "#disk"], ["#queue-panel"]):
            await pilot.press("v")
            await pilot.pause()
            assert shown() == expected
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert not screen.has_class("-single")
        assert shown() == ["#queue-panel", "#log", "#progress", "#gpu", "#disk"]  # nothing vanishes at 60×20


@pytest.mark.parametrize(("size", "width_class"), [((50, 16), "-tiny"), ((60, 20), "-narrow"), ((80, 24), "-narrow"),
                                                   ((120, 36), "-medium"), ((200, 60), "-wide")])
async def test_footer_shows_the_keys_chosen_for_the_width(workspace, manager, size, width_class) -> None:
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.main
        assert isinstance(screen, MainScreen)
        bar = screen.query_one(KeyBar)
        shown = [action for _, _, action in bar.keys]
        assert shown == footer_actions(width_class) and shown  # the one key table says which
        assert "app.move(-1)" not in shown  # ctrl+up/down: in help and the palette, never the footer
        text = bar.render().plain
        assert cell_len(text) <= size[0] - 1 and text.startswith(bar.keys[0][0])  # one line, no key cut in half
        await pilot.click(KeyBar, offset=(bar.render().plain.index("? Help") + 2, 0))  # a key is a button too
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help opened by a click")


async def test_add_dialog_takes_gpu_and_after_and_says_what_is_wrong(workspace, manager) -> None:
    manager.pause()
    first = manager.add(str(write_config(workspace, "한국어-요약-koBART")))
    manager._gpu = scripted_gpu()  # what add's preflight sees: GPU 0 exists
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen.query(OptionList), what="the add-run dialog")
        app.screen.query_one("#gpus", Input).value = "gpu0"
        app.screen.query_one("#after", Input).value = str(first.id)
        app.screen.query_one(OptionList).focus()
        await pilot.press("enter")
        error = app.screen.query_one("#dialog-error")
        await wait_for(pilot, lambda: error.has_class("-shown"), what="the error under the fields")
        assert "type device indices such as 0 or 0,1" in str(app.screen.query_one("#dialog-error-text", Static).render())
        app.screen.query_one("#gpus", Input).value = "0"
        app.screen.query_one(OptionList).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(manager.runs()) == 2, what="the second run")
        run = manager.runs()[-1]
        assert (run.gpus, run.after, run.user) == ("0", first.id, current_user())


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("short", 8, "short"),
    ("killed in train: killed by SIGKILL", 20, "killed in train: ki…"),
    ("한국어-요약-koBART", 9, "한국어-…"),  # Hangul is two cells wide: never half a syllable
])
def test_a_cut_cell_ends_in_an_ellipsis_within_its_width(text, width, expected) -> None:
    assert fit_cell(text, width) == expected and cell_len(fit_cell(text, width)) <= width
