"""Holds the stand-in engine (tests/fake_engine.py) to the real one: every argument the worker puts on
a stage's command line must be accepted by the real ``python -m engine`` parser and by the fake's,
with the same values, and the fake may not accept a flag the real engine does not have. Otherwise a
worker test could pass against the fake while the real stage exits 2 on its first argument.
"""

from __future__ import annotations

import argparse

import pytest

from dialsum_tui.manager.guards.gpu import GpuDevice, ScriptedGpuSource
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.launching import run_config, stage_command
from dialsum_tui.manager.workspace.layout import Workspace
from engine.__main__ import build_parser as real_parser
from engine.contract import PIPELINE, Stage

import fake_engine

ENGINE_PREFIX = 3  # [python, -m, engine]


def engine_args(argv: list[str], stage: Stage) -> list[str]:
    """The engine's own arguments in a stage's argv; ``accelerate launch``'s are checked by its parser."""
    if "accelerate.commands.launch" not in argv:
        assert argv[1:ENGINE_PREFIX] == ["-m", "engine"], argv
        return argv[ENGINE_PREFIX:]
    from accelerate.commands.launch import launch_command_parser  # heavy (torch): only for this case

    launched = launch_command_parser().parse_args(argv[ENGINE_PREFIX:])
    assert launched.module and launched.training_script == "engine", argv
    assert launched.num_processes == 2 and launched.multi_gpu
    assert launched.training_script_args[0] == stage
    return launched.training_script_args


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("stage", PIPELINE)
def test_every_stage_argument_the_worker_passes_is_accepted_by_the_real_and_the_fake_engine(
        stage: Stage, workspace: Workspace, make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIALSUM_ENGINE")  # the real command line, as a run on the server gets it
    # Two GPUs: the train stage runs under `accelerate launch` with 2 ranks; infer/evaluate stay single.
    two_gpus = ScriptedGpuSource([[GpuDevice(i, "H100", 0, 80 * 2**30, 0, 30) for i in (0, 1)]])
    run = Manager(workspace, Manager.open(workspace).store, two_gpus).add(str(make_config("args")), action="pipeline",
                                                                          gpus="0,1")
    argv, _env = stage_command(workspace, run, stage, run_config(run))
    args = engine_args(argv, stage)

    real = vars(real_parser().parse_args(args))
    fake = vars(fake_engine.build_parser().parse_args(args))
    assert real["command"] == fake["command"] == stage
    shared = sorted(real.keys() & fake.keys())
    assert {k: real[k] for k in shared} == {k: fake[k] for k in shared}
    assert {"run_dir"} <= set(shared)


def test_the_fake_engine_accepts_no_flag_the_real_engine_lacks() -> None:
    real = subparsers(real_parser())
    real_options = {opt: type(action) for name in PIPELINE for action in real[name]._actions
                    for opt in action.option_strings}
    for action in fake_engine.build_parser()._actions:
        if not action.option_strings:
            assert action.dest == "command" and set(action.choices) == set(PIPELINE)
            continue
        for opt in action.option_strings:
            if opt in ("-h", "--help"):
                continue
            assert opt in real_options, f"fake_engine takes {opt}, which `python -m engine` does not"
            assert real_options[opt] is type(action), f"{opt}: {type(action).__name__} in the fake, " \
                                                      f"{real_options[opt].__name__} in the engine"
