"""Provides the demo workspace: synthetic data, tiny local models, the demo configs, one data set
broken on purpose, and the queueing of the demo's runs (``dialsum-tui init --demo`` / ``dialsum-tui demo``).

Every step is skipped when its output is already complete, so re-running reuses what exists. The
ML work runs as ``python -m engine`` subprocesses: the manager never imports torch.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dialsum_tui.manager import process
from dialsum_tui.manager.errors import OperationFailed
from dialsum_tui.manager.runs.logs import tail_lines
from dialsum_tui.manager.runs.models import Run
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError, init_workspace
from dialsum_tui.manager.workspace.settings import ENV_VARS, SettingsError, env_settings
from engine.artifacts import atomic_write_text
from engine.config import safe_load
from engine.contract import DATA_FILES, DEV_CSV, TEST_CSV, TRAIN_CSV

# Where the demo configs come from: the repository's configs/demo/ (the package is installed editable).
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"
DEMO_CONFIG_DIR = Path("configs") / "demo"  # inside the workspace
BUILD_LOG = "demo-build.log"  # in .dialsum/: the engine steps' output, named in every error

BROKEN_DATA_DIR = "data-broken"
BROKEN_CONFIG = "broken-data.yaml"
# The row of dev.csv that gets the organizers' noise gone wrong: an unescaped quote in a quoted field.
BROKEN_ROW = 7

# LM pre-training of the tiny causal base: LoRA on a random-init base learns next to nothing, so the
# base first learns the corpus (~36 s for 200 steps on 2 cores). Tests lower it through the env var.
PRETRAIN_STEPS_ENV = ENV_VARS["demo_pretrain_steps"]
SECONDS_PER_PRETRAIN_STEP = 0.18  # measured on 2 idle cores; only for the progress line's estimate


@dataclass(frozen=True)
class TinyModel:
    """A tiny local model the demo configs point at (``model.name_or_path``)."""

    path: str  # workspace-relative
    arch: str  # python -m engine tiny-model --arch
    causal: bool


TINY_MODELS = (TinyModel("models/tiny-bart", "bart", False), TinyModel("models/tiny-llama", "llama", True))

# The runs ``dialsum-tui demo`` queues, in order: the fast seq2seq pipeline first (the live curve),
# then the failure (seconds: it stops at data loading), then the LoRA pipeline. The bf16 variant takes
# ~3 minutes on CPU: its config is copied but not queued.
DEMO_RUNS = (("bart-tiny", "bart-tiny.yaml"), ("broken-data", BROKEN_CONFIG), ("llama-tiny-lora", "llama-tiny-lora.yaml"))
# Then a small sweep (docs/sweeps.md): the tiny BART at two learning rates, 200 steps each (~25 s a
# variant on 2 idle cores, plus infer and evaluate), so the queue shows a sweep's group row and the
# results and hand-off name its best (at 1e-3 the random-init model still ignores the dialogue).
DEMO_SWEEP_CONFIG = "bart-tiny.yaml"
DEMO_SWEEP_AXES = ("train.learning_rate=1e-3,3e-3",)
DEMO_SWEEP_SET = ("train.max_steps=200",)
DEMO_SWEEP_NICKNAMES = ("bart-tiny-lr1e-3", "bart-tiny-lr3e-3")

Report = Callable[[str], None]


class DemoBuildError(OperationFailed, RuntimeError):
    """A demo build step failed; the message names the step, its exit status and the log to read."""


# --- engine steps -----------------------------------------------------------------------------


def _engine_env() -> dict[str, str]:
    """Our environment, plus what makes an engine subprocess work offline from any cwd."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("engine")
    if spec is not None and spec.origin:
        # The workspace is the cwd: make sure ``python -m engine`` finds the package we run with.
        root = str(Path(spec.origin).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")  # the demo never downloads
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _engine(ws: Workspace, step: str, *args: str) -> None:
    """Run ``python -m engine ARGS`` in the workspace; raise :class:`DemoBuildError` on failure."""
    log_path = ws.state_dir / BUILD_LOG
    with open(log_path, "a", encoding="utf-8") as fh:  # a header per step, so the log reads in order
        fh.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {step}: python -m engine {' '.join(args)}\n")
    rc = process.run_to_completion([sys.executable, "-m", "engine", *args], ws.root, log_path, _engine_env())
    if rc != 0:
        raise DemoBuildError(
            f"demo build: {step} failed (exit {rc}); full output in {log_path}; last lines:\n{tail_lines(log_path)}\n"
            f"fix the cause and run the same command again: finished steps are reused"
        )


# --- build steps ------------------------------------------------------------------------------


def _data_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in DATA_FILES)


def build_data(ws: Workspace, report: Report) -> None:
    """Write the synthetic competition-schema set into ``data/`` unless all three splits are there."""
    if _data_complete(ws.data_dir):
        report(f"  reusing {ws.data_dir} (train/dev/test.csv)")
        return
    report("  writing synthetic data (competition schema: fname,dialogue,summary,topic)...")
    # synth is deterministic, so a half-written set is simply written again.
    _engine(ws, "synthetic data", "synth", "--out", str(ws.data_dir))


def _model_complete(directory: Path) -> bool:
    # tiny-model writes tiny_model.json last; the directory is renamed into place only after that.
    return (directory / "tiny_model.json").is_file() and (directory / "config.json").is_file()


def pretrain_steps() -> int:
    """Pre-training steps for the tiny causal base: ``$DIALSUM_DEMO_PRETRAIN_STEPS`` or the default.

    Raises:
        WorkspaceError: the variable is not a non-negative integer.
    """
    try:
        return env_settings().demo_pretrain_steps
    except SettingsError as err:
        raise WorkspaceError(str(err)) from None


def build_model(ws: Workspace, model: TinyModel, steps: int, report: Report) -> None:
    """Build one tiny model (tokenizer trained on data/train.csv) unless it is complete already.

    It is built into a hidden sibling and renamed into place, so an interrupted build never looks done.
    """
    final = ws.root / model.path
    if _model_complete(final):
        report(f"  reusing {final}")
        return
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    args = ["tiny-model", "--arch", model.arch, "--data", str(ws.data_dir), "--out", str(partial)]
    if model.causal and steps:
        eta = max(5, round(steps * SECONDS_PER_PRETRAIN_STEP))
        report(f"  building tiny {model.arch} (LM pre-training {steps} steps so LoRA has a base to adapt, ~{eta} s)...")
        args += ["--pretrain-steps", str(steps)]
    else:
        report(f"  building tiny {model.arch} (random init, tokenizer trained on data/train.csv, ~5 s)...")
    _engine(ws, f"tiny {model.arch}", *args)
    if final.exists():  # an incomplete earlier build (no marker): replace it
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, final)


def copy_configs(ws: Workspace, report: Report) -> None:
    """Copy the repository's demo configs into ``configs/demo/``; an existing (maybe edited) copy is kept."""
    if not REPO_CONFIGS.is_dir():
        raise WorkspaceError(
            f"{REPO_CONFIGS}: the demo configs are missing; the demo needs the repository checkout "
            "(install it with `pip install -e .` from the clone)"
        )
    target = ws.root / DEMO_CONFIG_DIR
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(REPO_CONFIGS.glob("*.yaml")):
        dest = target / source.name
        if not dest.exists():
            shutil.copyfile(source, dest)
            report(f"  copied {DEMO_CONFIG_DIR / source.name}")
        elif dest.read_bytes() != source.read_bytes():
            report(f"  kept {DEMO_CONFIG_DIR / source.name} (differs from the repository's; delete it to refresh)")


def broken_dev_csv(dev_csv: Path, row: int = BROKEN_ROW) -> tuple[str, int, str]:
    """Return dev.csv's text with one summary holding an unescaped quote, that record's line and fname.

    That is how a hand edit in a spreadsheet breaks the file: ``"... "좋아요"라고 ..."`` inside a
    quoted field ends the field early, and the parser stops at that record.
    """
    with open(dev_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if len(body) <= row:
        raise DemoBuildError(f"{dev_csv}: only {len(body)} rows; the broken copy needs more than {row}")
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body[:row])
    line = out.getvalue().count("\n") + 1
    fields = dict(zip(header, body[row], strict=True))
    # Inner quotes not doubled: the field ends at the first one and the CSV is broken from here.
    bad = '"' + fields["summary"] + ' 그는 "확인"이라고 답했다."'
    cells = {**{k: _quoted(v) for k, v in fields.items()}, "summary": bad}
    out.write(",".join(cells[k] for k in header) + "\n")
    writer.writerows(body[row + 1 :])
    return out.getvalue(), line, fields["fname"]


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


BROKEN_README = """This copy of data/ is broken on purpose for the demo's `broken-data` run.

dev.csv line {line} (fname {fname}) has a summary with an unescaped '"' inside a quoted field:
a hand edit in a spreadsheet does this. The run fails at data loading and shows as
❌ 실패 (data) with the file, the line and the fix; `python -m engine check-data {dir}` says the same.
"""

BROKEN_CONFIG_HEADER = """\
# broken-data: the bart-tiny run pointed at data-broken/, whose dev.csv has a broken quote on purpose.
# The demo queues it so the failure classification (❌ 실패 (data)) and the hand-off table's states show.
#
#   python -m engine check-data data-broken     # names dev.csv, the line and the fix
#
# Generated by `dialsum-tui init --demo` from configs/demo/bart-tiny.yaml. Paths are workspace-relative.

"""


def build_broken(ws: Workspace, report: Report) -> None:
    """Write ``data-broken/`` (train/test copied, dev.csv with a broken quote) and its config."""
    broken = ws.root / BROKEN_DATA_DIR
    if _data_complete(broken):
        report(f"  reusing {broken} (broken on purpose)")
    else:
        broken.mkdir(parents=True, exist_ok=True)
        for name in (TRAIN_CSV, TEST_CSV):
            shutil.copyfile(ws.data_dir / name, broken / name)
        text, line, fname = broken_dev_csv(ws.data_dir / DEV_CSV)
        atomic_write_text(broken / "README.txt", BROKEN_README.format(line=line, fname=fname, dir=BROKEN_DATA_DIR))
        atomic_write_text(broken / DEV_CSV, text)  # last: its presence marks the copy complete
        report(f"  wrote {BROKEN_DATA_DIR}/ (dev.csv line {line}: a broken quote, for the demo's failure)")
    config = ws.root / DEMO_CONFIG_DIR / BROKEN_CONFIG
    if config.exists():
        return
    tree = safe_load((ws.root / DEMO_CONFIG_DIR / "bart-tiny.yaml").read_text(encoding="utf-8"))
    tree["model"]["nickname"] = "broken-data"
    tree["data"]["dir"] = BROKEN_DATA_DIR
    body = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
    atomic_write_text(config, BROKEN_CONFIG_HEADER + body)
    report(f"  wrote {DEMO_CONFIG_DIR / BROKEN_CONFIG}")


def build_demo(ws: Workspace, report: Report = print) -> None:
    """Build the demo content of ``ws``: data, tiny models, configs and the broken data set.

    Nothing is queued (``dialsum-tui demo`` does that). Steps whose output is complete are reused.

    Args:
        ws: the workspace (already laid out by ``init_workspace``).
        report: receives one progress line per step (default: print).

    Raises:
        DemoBuildError: an engine step failed (the message names the log).
        WorkspaceError: the repository's demo configs are missing, or a setting is invalid.
    """
    steps = pretrain_steps()
    started = time.monotonic()
    report(f"building the demo workspace in {ws.root} (finished steps are reused)")
    build_data(ws, report)
    for model in TINY_MODELS:
        build_model(ws, model, steps, report)
    copy_configs(ws, report)
    build_broken(ws, report)
    report(f"demo workspace ready ({time.monotonic() - started:.0f} s)")


def init_demo_workspace(directory: str | Path, report: Report = print) -> Workspace:
    """``init_workspace(directory)`` and then :func:`build_demo` on it (``dialsum-tui init --demo``, ``demo``).

    Raises:
        WorkspaceError: ``directory`` is a file, or a setting is invalid.
        DemoBuildError: a demo build step failed (its message names the step and the log).
    """
    ws = init_workspace(directory)
    build_demo(ws, report)
    return ws


# --- queueing ---------------------------------------------------------------------------------


def queue_demo_runs(manager: Manager, report: Report = print) -> list[tuple[Run, bool]]:
    """Queue a pipeline for each demo config whose nickname has no run yet, then the demo's sweep.

    Re-running ``make demo`` must not pile up duplicates, so a nickname with any run (queued,
    running or final) is reused and reported instead.

    Returns:
        ``(run, queued_now)`` per demo run, in queue order.
    """
    existing: dict[str, Run] = {}
    for run in manager.runs():
        existing.setdefault(run.nickname, run)  # runs() is in queue order: keep the first
    out: list[tuple[Run, bool]] = []
    for nickname, filename in DEMO_RUNS:
        if nickname in existing:
            run = existing[nickname]
            report(f"reusing run {run.id}: {nickname} ({run.state.value})")
            out.append((run, False))
            continue
        # The broken-data run is there to show a data failure: `add` would refuse it, so the
        # worker's admission preflight fails it instead, before its first step.
        run = manager.add(str(manager.workspace.root / DEMO_CONFIG_DIR / filename), action="pipeline",
                          check=filename != BROKEN_CONFIG)
        report(f"queued run {run.id}: {nickname} (train → infer → evaluate)")
        out.append((run, True))
    return out + queue_demo_sweep(manager, existing, report)


def queue_demo_sweep(manager: Manager, existing: dict[str, Run], report: Report = print) -> list[tuple[Run, bool]]:
    """Queue the demo's sweep unless its variants have runs already (then they are reused and reported)."""
    found = [existing[name] for name in DEMO_SWEEP_NICKNAMES if name in existing]
    if found:
        for run in found:
            report(f"reusing run {run.id}: {run.nickname} ({run.state.value}, sweep {run.sweep or '-'})")
        return [(run, False) for run in found]
    sweep, runs = manager.add_sweep(str(manager.workspace.root / DEMO_CONFIG_DIR / DEMO_SWEEP_CONFIG),
                                    axes=list(DEMO_SWEEP_AXES), overrides=list(DEMO_SWEEP_SET))
    for run in runs:
        report(f"queued run {run.id}: {run.nickname} (sweep {sweep.id}: {sweep.label(run.nickname)}, "
               f"{DEMO_SWEEP_SET[0].split('=')[-1]} steps)")
    return [(run, True) for run in runs]
