"""Provides the whole competition pipeline timed through the product (issue 16, items 3 and 4):
train 3 epochs on competition-shaped data → infer dev and test → evaluate, for the shipped KoBART
and 3B-LoRA configs, queued with `dialsum-tui add` and run by the detached worker with its real guards.

It reports, per run: each stage's wall clock (the worker's launch → the worker seeing it exit), the
gaps between stages (one stage's exit → the next one's launch, as the worker logged them), inside each
stage the time to its first useful event (imports to `started`, then data and model loading to the
`train`/`generate`/`score` phase), the in-training evaluations' total time and share of the train
stage (the `eval` events' `seconds`), GPU utilisation and idle share per stage and overall (NVML at
10 Hz in a detached sampler process; "n/a" on a CPU) and the end-to-end time, against the goal of
the 3B pipeline under 15 minutes on one H100.

One device command may run 10 minutes and the 3B pipeline takes longer, so it runs in two calls on the
same machine; the worker and the sampler start their own sessions and outlive the first call:

    python benchmarks/pipeline.py --root /tmp/pipe --only llama3b --start --wait --max-wait 540
    python benchmarks/pipeline.py --root /tmp/pipe --wait --max-wait 540 --out pipeline.json   # again
    python benchmarks/pipeline.py --root /tmp/cpu --cpu --only kobart --epochs 1 --train-rows 48  # CPU

Data: `engine synth --profile competition` at the competition's size (12,457 / 499 / 499); models: the
random-init real shapes of benchmarks/common.py (built by its CLI, so no CUDA context stays here). The
whole machine is the benchmark's: run nothing else on the GPU meanwhile (the guard would wait for it).
tests/benchmarks/test_pipeline_bench.py runs the same code path on the CPU with a tiny model.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dialsum_tui.manager.runs.models import RunState  # noqa: E402
from engine.artifacts import read_events  # noqa: E402
from engine.contract import PIPELINE, Event, Phase, RunFiles, Stage  # noqa: E402

from common import bench_env, make_data, sh  # noqa: E402
from util_sampler import gpu_window, read_samples, sample_forever  # noqa: E402

CLI = [sys.executable, "-m", "dialsum_tui"]
SHIPPED = {"kobart": "configs/kobart.yaml", "llama3b": "configs/llama-3.2-korean-3b-h100.yaml"}
# The tiny stand-in of each shape on the CPU (qwen3-4b: benchmarks/manager_on_gpu.py --cpu).
TINY_ARCH = {"kobart": "bart", "llama3b": "llama", "qwen3-4b": "qwen3"}
# A CPU has no AMP, no fused CUDA optimizer and no Liger (Triton) kernels, and compiling the layers
# there costs minutes for nothing measured: the only other keys --cpu changes.
CPU_KEYS = {"model.dtype": "float32", "train.device": "cpu", "train.precision": "fp32", "train.optim": "adamw_torch",
            "train.use_liger_kernel": False, "train.compile": False}
# The phase that marks a stage's first useful work: what comes before it is imports and loading.
WORK_PHASE = {Stage.TRAIN: Phase.TRAIN, Stage.INFER: Phase.GENERATE, Stage.EVALUATE: Phase.SCORE}
GOAL_S = {"llama3b": 15 * 60}  # issue 16: the 3B pipeline under 15 minutes end to end on one H100
DEFINITIONS = {
    "wall_s": "the worker's launch of the stage process -> the worker seeing it exit (worker.log)",
    "gap_before_s": "the previous stage's exit -> this stage's launch, as the worker saw them (admission, guards)",
    "import_s": "launch -> the stage's `started` event (interpreter, torch and transformers imports)",
    "load_s": "`started` -> the first work phase (train: `train`, infer: `generate`, evaluate: `score`): data, model",
    "work_s": "first work phase -> `finished` event; exit_s: `finished` -> the worker seeing the exit",
    "idle_share": "1 - mean NVML utilisation over the window (utilisation = share of time a kernel ran), GPU 0; "
                  "gpu: the stage's wall window, gpu_work: its first work phase -> `finished`",
    "in_training_eval": "sum of the train stage's `eval` events' `seconds` (loss pass + generation + scoring)",
    "end_to_end_s": "train launch -> the run's end; queued_to_end_s: `add` -> the run's end",
}
LOG_LINE = re.compile(r"^(\S+ \S+) INFO run (\d+): (?:launched (\w+) pid \d+|(\w+) done, next \w+)$")


# --- set-up and start -----------------------------------------------------------------------------


def cli(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # The worker and its stages get a user's environment: the benchmarks' TOKENIZERS_PARALLELISM=false
    # (which quiets tokenizers' fork warning in their own processes) would make the train stage
    # tokenize the 12,457 dialogues on one core where a user's run uses them all.
    env = {k: v for k, v in bench_env().items() if k != "TOKENIZERS_PARALLELISM"}
    done = subprocess.run([*CLI, "--workspace", str(ws), *args], capture_output=True, text=True, env=env)
    if check and done.returncode:
        raise RuntimeError(f"dialsum-tui {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def set_key(tree: dict, dotted: str, value) -> bool:
    """Set ``section.key`` in ``tree``; True when that changed it."""
    section, key = dotted.split(".")
    changed = tree.setdefault(section, {}).get(key, object()) != value
    tree[section][key] = value
    return changed


def derive_config(ws: Path, shape: str, model: Path, data: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The shipped config with only the model path, data dir and epochs (and the --train-rows and
    --cpu keys) changed, written into the workspace; returns it and the keys that changed."""
    tree = yaml.safe_load((ROOT / SHIPPED[shape]).read_text(encoding="utf-8"))
    keys = {"model.name_or_path": str(model), "data.dir": str(data), "train.epochs": args.epochs}
    if args.train_rows:
        keys["data.max_train_samples"] = args.train_rows
    if args.cpu:
        keys.update(CPU_KEYS)
    for pair in args.set:  # reported with the rest: a changed key is never silent
        key, _, value = pair.partition("=")
        keys[key] = yaml.safe_load(value)
    changed = [k for k, v in keys.items() if set_key(tree, k, v)]
    path = ws / "configs" / f"pipeline-{shape}.yaml"
    header = f"# {SHIPPED[shape]} as shipped, except (benchmarks/pipeline.py): {', '.join(changed)}\n"
    path.write_text(header + yaml.safe_dump(tree, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path, changed


def model_for(root: Path, shape: str, data: Path, args: argparse.Namespace) -> Path:
    """The model a shape's pipeline trains: --model, a tiny one (--cpu), or the random-init real shape."""
    if args.model:
        return args.model.resolve()
    if not args.cpu:
        # In a process of its own: a CUDA context left in this one would hold the GPU for the whole
        # wait, and the worker's guard would rightly refuse to start any stage beside it.
        sh([sys.executable, Path(__file__).resolve().parent / "common.py", "--root", root, "--shapes", shape], cwd=ROOT)
        return root / "models" / shape
    out = root / "models" / f"tiny-{shape}"
    if not (out / "config.json").exists():
        subprocess.run([sys.executable, "-m", "engine", "tiny-model", "--arch", TINY_ARCH[shape], "--data", str(data),
                        "--out", str(out)], check=True, env=bench_env(), cwd=ROOT)
    return out


def start(root: Path, args: argparse.Namespace) -> dict:
    """A fresh workspace, the sampler, and `dialsum-tui add` per shape (which starts the worker);
    returns the state the later calls read. A second --start on the same root changes nothing."""
    state_file = root / "pipeline.json"
    if state_file.exists():
        print(f"already started ({state_file}); continuing", flush=True)
        return json.loads(state_file.read_text(encoding="utf-8"))
    t0 = time.time()
    ws = root / "ws"
    data = args.data.resolve() if args.data else make_data(root, n_train=12457, n_dev=499, n_test=499)
    models = {shape: model_for(root, shape, data, args) for shape in args.only}
    subprocess.run([*CLI, "init", str(ws)], check=True, capture_output=True, env=bench_env())
    samples = root / "gpu_samples.txt"
    with (root / "sampler.log").open("ab") as log:  # its own session: it outlives this call, like the worker
        sampler = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--sample", str(samples)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=bench_env(),
                                   start_new_session=True)
    state = {"workspace": str(ws), "setup_s": round(time.time() - t0, 1), "sampler_pid": sampler.pid,
             "samples": str(samples), "runs": {}}
    for shape in args.only:
        config, changed = derive_config(ws, shape, models[shape], data, args)
        print(f"{shape}: {SHIPPED[shape]} with {', '.join(changed)} overridden -> {config}", flush=True)
        out = cli(ws, "add", str(config)).stdout
        run_id = int(re.search(r"queued run (\d+)", out).group(1))
        state["runs"][shape] = {"id": run_id, "config": str(config), "overridden": changed, "model": str(models[shape])}
    state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")
    return state


# --- wait and report ------------------------------------------------------------------------------


def runs_by_id(ws: Path) -> dict[int, dict]:
    return {r["id"]: r for r in json.loads(cli(ws, "ls", "--json").stdout)}


def wait(state: dict, deadline: float) -> dict[int, dict]:
    """Poll the product's own read path (`ls --json`) until every run is final or the deadline."""
    ws = Path(state["workspace"])
    ids = [r["id"] for r in state["runs"].values()]
    runs = runs_by_id(ws)
    unfinished = not all(RunState(runs[i]["state"]).is_final for i in ids)
    if unfinished and cli(ws, "worker", "status", check=False).returncode:
        # Only when the machine ended our detached processes between calls: a worker start re-adopts
        # stages still alive and marks vanished ones interrupted (the product's own repair).
        print("the worker was not running: starting it (it re-adopts or marks interrupted)", flush=True)
        state["worker_restarted"] = True
        cli(ws, "worker", "start")
    while not all(RunState(runs[i]["state"]).is_final for i in ids) and time.time() < deadline:
        time.sleep(2)
        runs = runs_by_id(ws)
    return runs


def worker_times(ws: Path) -> dict[tuple[int, str], dict[str, float]]:
    """(run, stage) → when the worker launched it and when it saw it exit (its log's own clock)."""
    out: dict[tuple[int, str], dict[str, float]] = {}
    log = ws / ".dialsum" / "worker.log"
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []:
        m = LOG_LINE.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            key = (int(m.group(2)), m.group(3) or m.group(4))
            out.setdefault(key, {})["launched" if m.group(3) else "exited"] = when
    return out


def first(events: list[dict], stage: Stage, event: Event, name: str | None = None) -> float | None:
    return next((e["ts"] for e in events if e.get("command") == stage and e["event"] == event
                 and (name is None or e.get("name") == name)), None)


def span(a: float | None, b: float | None) -> float | None:
    return round(b - a, 2) if a is not None and b is not None else None


def stage_rows(run: dict, events: list[dict], times: dict, samples: list) -> list[dict]:
    rows, previous_exit = [], None
    launched_stages = [s for s in PIPELINE if "launched" in times.get((run["id"], s.value), {})]
    for stage in launched_stages:
        t = times[(run["id"], stage.value)]
        launched = t["launched"]
        # A run's last stage (evaluate, or the one that failed) ends with the run: the worker records
        # the run's end instead of logging "done".
        exited = t.get("exited") or (run["finished_at"] if stage == launched_stages[-1] else None)
        started, work = first(events, stage, Event.STARTED), first(events, stage, Event.PHASE, WORK_PHASE[stage])
        finished = first(events, stage, Event.FINISHED)
        evals = [e["seconds"] for e in events if e.get("command") == stage and e["event"] == Event.EVAL and e.get("seconds")]
        row = {"stage": stage.value, "wall_s": span(launched, exited), "gap_before_s": span(previous_exit, launched),
               "import_s": span(launched, started), "load_s": span(started, work), "to_first_work_s": span(launched, work),
               "work_s": span(work, finished), "exit_s": span(finished, exited),
               "gpu": gpu_window(samples, launched, exited or time.time()),
               "gpu_work": gpu_window(samples, work, finished) if work and finished else None}
        if stage == Stage.TRAIN:
            total = round(sum(evals), 2)
            wall = row["wall_s"]
            row["in_training_eval"] = {"count": len(evals), "seconds": total,
                                       "share_of_train": round(total / wall, 3) if wall else None}
        rows.append(row)
        previous_exit = exited
    return rows


def report(state: dict, runs: dict[int, dict]) -> dict:
    ws = Path(state["workspace"])
    times = worker_times(ws)
    device, samples = read_samples(Path(state["samples"]))
    out = {"workspace": str(ws), "device": device, "setup_s": state["setup_s"], "gpu_sampled": bool(samples),
           "definitions": DEFINITIONS,
           "worker_restarted": state.get("worker_restarted", False), "runs": {}}
    for shape, meta in state["runs"].items():
        run = runs[meta["id"]]
        events = read_events(RunFiles(ws / "runs" / str(run["id"])).events)
        stages = stage_rows(run, events, times, samples)
        first_launch = times.get((run["id"], Stage.TRAIN.value), {}).get("launched")
        end = run["finished_at"] if RunState(run["state"]).is_final else None
        e2e = span(first_launch, end)
        out["runs"][shape] = {
            "run": run["id"], "state": run["state"], "failure": run.get("failure_message"),
            "overridden": meta["overridden"], "end_to_end_s": e2e, "queued_to_end_s": span(run["created_at"], end),
            "gaps_s": [s["gap_before_s"] for s in stages[1:]], "stages": stages,
            "gpu_overall": gpu_window(samples, first_launch, end or time.time()) if first_launch else None,
            "goal_s": GOAL_S.get(shape), "goal_met": (e2e < GOAL_S[shape]) if shape in GOAL_S and e2e else None,
        }
    return out


def fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def print_report(rep: dict) -> None:
    print(f"device: {rep['device']}; setup (data, models, workspace) {rep['setup_s']} s")
    for shape, r in rep["runs"].items():
        print(f"\n{shape}: run {r['run']} {r['state']}" + (f" ({r['failure']})" if r["failure"] else "")
              + f"; overridden: {', '.join(r['overridden'])}")
        print("| stage | wall s | gap before s | import s | load s | to first work s | work s | exit s | "
              "GPU util % | GPU idle share | peak GiB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for s in r["stages"]:
            g = s["gpu"]
            print(f"| {s['stage']} | {fmt(s['wall_s'])} | {fmt(s['gap_before_s'])} | {fmt(s['import_s'])} | "
                  f"{fmt(s['load_s'])} | {fmt(s['to_first_work_s'])} | {fmt(s['work_s'])} | {fmt(s['exit_s'])} | "
                  f"{fmt(g['util_mean'])} | {fmt(g['idle_share'])} | {fmt(g['peak_gib'])} |")
            if "in_training_eval" in s:
                e = s["in_training_eval"]
                print(f"|   in-training eval: {e['count']} evals, {fmt(e['seconds'])} s, "
                      f"{fmt(e['share_of_train'])} of the train stage | | | | | | | | | | |")
        overall = r["gpu_overall"] or {}
        goal = r["goal_s"]
        verdict = "" if goal is None else f"; goal < {goal // 60} min: " + (
            "met" if r["goal_met"] else "not met" if r["goal_met"] is False else "not finished")
        print(f"end to end (train launch → run end): {fmt(r['end_to_end_s'])} s, queued → end {fmt(r['queued_to_end_s'])} s, "
              f"gaps {r['gaps_s']}; GPU overall util {fmt(overall.get('util_mean'))} %, idle share "
              f"{fmt(overall.get('idle_share'))}{verdict}")


def stop_sampler(state: dict) -> None:
    """End our own sampler (by pid, after checking it is still that process), once every run is final."""
    import psutil

    try:
        proc = psutil.Process(state["sampler_pid"])
        if "--sample" in proc.cmdline() and state["samples"] in proc.cmdline():
            proc.terminate()
    except psutil.Error:
        pass  # already gone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/pipe"), help="scratch dir: data, models, workspace ws/")
    parser.add_argument("--only", choices=sorted(SHIPPED), help="one pipeline (default: kobart, then llama3b)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--train-rows", type=int, help="train on the first N rows (data.max_train_samples)")
    parser.add_argument("--start", action="store_true", help="set up, queue, start the worker (then --wait or return)")
    parser.add_argument("--wait", action="store_true", help="wait for the runs (re-runnable), then report")
    parser.add_argument("--max-wait", type=float, default=3600, help="this command returns after at most S seconds")
    parser.add_argument("--out", type=Path, help="report JSON (default ROOT/pipeline_report.json)")
    parser.add_argument("--cpu", action="store_true", help="CPU keys (fp32, no Liger) and a tiny model unless --model")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one more config key (e.g. generation.max_new_tokens=16); reported as overridden")
    parser.add_argument("--model", type=Path, help="train this model instead of the random-init shape (needs --only)")
    parser.add_argument("--data", type=Path, help="use this data dir instead of the synthetic competition set")
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)  # internal: the detached NVML sampler
    args = parser.parse_args()
    if args.sample:
        return sample_forever(args.sample, max_s=4 * 3600)
    if args.model and not args.only:
        parser.error("--model needs --only kobart|llama3b (one model for one pipeline)")
    bad = [p for p in args.set if "=" not in p or p.partition("=")[0].count(".") != 1]
    if bad:
        parser.error(f"--set {bad[0]!r}: expected section.key=value, e.g. --set generation.max_new_tokens=16")
    deadline = time.time() + args.max_wait
    args.only = [args.only] if args.only else ["kobart", "llama3b"]
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    state_file = root / "pipeline.json"
    if args.start or not args.wait:
        start(root, args)
        if args.start and not args.wait:
            print(f"started; `python benchmarks/pipeline.py --root {root} --wait` reports", flush=True)
            return 0
    if not state_file.exists():
        parser.error(f"{state_file}: nothing started under --root {root}; run with --start first")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    runs = wait(state, deadline)
    rep = report(state, runs)
    done = all(RunState(r["state"]).is_final for r in rep["runs"].values())
    rep["complete"] = done
    if done:  # nothing left to run or measure: leave no process of ours behind
        stop_sampler(state)
        cli(Path(state["workspace"]), "worker", "stop", check=False)
    out = args.out or root / "pipeline_report.json"
    out.write_text(json.dumps(rep, indent=2, ensure_ascii=False), encoding="utf-8")
    print_report(rep)
    print(f"\nreport: {out}" + ("" if done else f"; not finished: run `--wait` again on --root {root}"))
    if not done:
        return 3
    return 0 if all(r["state"] == RunState.SUCCEEDED for r in rep["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
