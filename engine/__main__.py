"""Provides the ``python -m engine`` command line: one subcommand per pipeline step.

Each subcommand's implementation is imported only when it runs, so ``--help`` never loads torch.
Exit codes (``engine.contract.ExitCode``): 0 success, 2 bad input (config or data: the message names
file, key/row and fix), 130 stopped by a signal, 1 any other failure (recorded as a ``failed`` event
with a kind and a hint).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.contract import Stage

# subcommand -> "module:function"; the function takes the parsed args and returns an exit code.
COMMANDS = {
    "synth": "engine.synthetic:main",
    "check-data": "engine.data:check_data_main",
    "tiny-model": "engine.tiny:main",
    Stage.TRAIN: "engine.train:main",
    Stage.INFER: "engine.inference:main",
    Stage.EVALUATE: "engine.evaluate:main",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a deterministic synthetic Korean dialogue set (competition schema)")
    p.add_argument("--out", required=True, help="directory for train.csv, dev.csv, test.csv")
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--dev", type=int, default=60)
    p.add_argument("--test", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", choices=["demo", "competition"], default="demo",
                   help="demo: short dialogues for CPU; competition: real-set lengths for GPU benchmarks")

    p = sub.add_parser("check-data", help="validate train/dev/test.csv and report what was normalised")
    p.add_argument("dir", help="directory with train.csv, dev.csv, test.csv")
    p.add_argument("--json", action="store_true", help="machine-readable report")

    p = sub.add_parser("tiny-model", help="build a tiny random-init model and a locally trained tokenizer")
    p.add_argument("--arch", required=True, choices=["bart", "t5", "llama", "qwen3"])
    p.add_argument("--data", required=True, help="data directory whose train.csv trains the tokenizer")
    p.add_argument("--out", required=True, help="output directory (loadable with from_pretrained)")
    p.add_argument("--pretrain-steps", type=int, default=0, help="causal only: short LM pre-training on the corpus")
    p.add_argument("--seed", type=int, default=0)

    for name, help_ in ((Stage.TRAIN, "fine-tune a model; writes checkpoints/<key>/final_model"),
                        (Stage.INFER, "generate summaries; writes submissions/<key>_submission.csv")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True, help="YAML run config")
        p.add_argument("--run-dir", required=True, help="run directory for config.yaml, run.log, events.jsonl")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key by dotted path")
        # The manager names every run's files <slug>-r<id> (engine.artifacts.artifact_key), so two runs
        # never share a checkpoint or a submission; a standalone run uses the cleaned nickname.
        p.add_argument("--artifact-key", metavar="KEY",
                       help="name of this run's checkpoints/<KEY>/ and submissions/<KEY>_*.csv (default: the nickname)")
        if name is Stage.TRAIN:
            # The workspace's disk quota, handed over by the manager (dialsum_tui/manager/disk.py:
            # engine_disk_args); without --disk-stop-bytes the in-run guard is off (a standalone run).
            p.add_argument("--disk-root", metavar="PATH", help="tree measured like du against the quota (default: cwd)")
            p.add_argument("--disk-stop-bytes", type=int, metavar="N",
                           help="stop training cleanly before the tree reaches N bytes (quota less margin)")
            p.add_argument("--resume-from", metavar="CHECKPOINT_DIR",
                           help="continue from this checkpoint (or the newest complete checkpoint-* in this "
                                "directory): weights/adapter, optimizer, scheduler, RNG, data order, global step")
        if name is Stage.INFER:
            p.add_argument("--split", choices=["test", "dev", "both"], default="both",
                           help="test writes the submission; dev writes predictions for scoring (default both)")
            p.add_argument("--model-key", metavar="KEY",
                           help="load checkpoints/<KEY>/final_model (the run that trained it; default --artifact-key)")
            p.add_argument("--checkpoint", help="model directory (default checkpoints/<model-key>/final_model)")

    p = sub.add_parser(Stage.EVALUATE, help="Korean ROUGE of predictions against references")
    p.add_argument("--predictions", required=True, help="CSV with fname,summary")
    p.add_argument("--references", required=True, help="CSV with fname and summary[,summary1,summary2,...]")
    p.add_argument("--tokenizer", choices=["mecab", "whitespace", "char"], default="mecab")
    p.add_argument("--scorer", choices=["competition", "baseline"], default="competition")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--run-dir", help="also append an eval event to <run-dir>/events.jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
