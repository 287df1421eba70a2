"""Provides the end-to-end multi-GPU check through the product: a fresh workspace where
`dialsum-tui add CFG --gpu 0,1` and single-GPU runs (`--gpu 0`, `--gpu 1`, ...) are run by the
detached worker with the real NVML guards, on a tiny Llama (the plumbing is under test, not speed).

Phases (each printed as PASS/FAIL with its figures, all in one JSON report):
  ddp      one pipeline on every GPU (`--gpu 0,...,N-1`): train with N ranks, infer, evaluate
  side     N pipelines, one per GPU, at the same time (the TUI is captured while they train)
  cancel   a long N-GPU train, captured in the TUI, then `dialsum-tui cancel`: how long until no
           process and no memory is left on any GPU, and whether every rank is gone
  blocked  a foreign process holds the last GPU: a run for it waits (the reason names the holder)
           while a run for GPU 0 starts and finishes; once the holder exits the waiting run starts
Every stage's launch is checked against the NVML timeline: its devices were idle then.

    python benchmarks/product_multi_gpu.py --root /tmp/prod --out $OUT
    python benchmarks/product_multi_gpu.py --capture WORKSPACE --svg out.svg   # the TUI, headless

The GPU panel is captured from tmux when tmux exists, else rendered headless by Textual
(``App.run_test`` + ``save_screenshot``) to an SVG, with the panel's text in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env  # noqa: E402

CLI = [sys.executable, "-m", "dialsum_tui"]
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
IDLE_MARGIN = 300 * 2**20  # the guard's default gpu_idle_margin_mib
# The foreign "someone else's job" that holds a GPU in the blocked phase.
HOLDER = ("import sys, time, torch; x = torch.empty(2 * 2**30, dtype=torch.uint8, device='cuda'); "
          "print('holding', flush=True); time.sleep(float(sys.argv[1]))")


def cli(ws: Path, *args: str, check: bool = True) -> str:
    out = subprocess.run([*CLI, "--workspace", str(ws), *args], capture_output=True, text=True, env=bench_env())
    if check and out.returncode:
        raise RuntimeError(f"dialsum-tui {' '.join(args)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out.stdout


def runs(ws: Path) -> dict[int, dict]:
    return {r["id"]: r for r in json.loads(cli(ws, "ls", "--json"))}


def wait_for(cond, timeout: float, what: str, every: float = 0.5):
    """Poll ``cond`` until truthy (returned); raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Timeline:
    """NVML samples of every GPU at 10 Hz: (time, used bytes per GPU, compute pids per GPU)."""

    def __init__(self) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.samples: list[tuple[float, list[int], list[list[int]]]] = []
        self._stop = threading.Event()
        self.baseline = self.sample()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> tuple[float, list[int], list[list[int]]]:
        used = [self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles]
        pids = [[p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)] for h in self.handles]
        return time.time(), used, pids

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, ts: float) -> tuple[float, list[int], list[list[int]]]:
        before = [s for s in self.samples if s[0] <= ts]
        return before[-1] if before else self.samples[0]

    def idle(self, gpus: list[int], sample=None) -> bool:
        _t, used, pids = sample or self.sample()
        return all(not pids[i] and used[i] <= self.baseline[i] + IDLE_MARGIN for i in gpus)

    def gib(self, sample) -> list[float]:
        return [round(u / 2**30, 2) for u in sample[1]]


def launches(ws: Path) -> list[tuple[float, int, str, int]]:
    """(time, run id, stage, pid) of every stage launch, from the worker's log."""
    out = []
    for line in (ws / ".dialsum" / "worker.log").read_text(errors="replace").splitlines():
        if ": launched " not in line:
            continue
        stamp, _, rest = line.partition(" INFO ")
        words = rest.split()  # run N: launched STAGE pid P
        when = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((when, int(words[1].rstrip(":")), words[3], int(words[5])))
    return out


def tiny_config(ws: Path, nickname: str, steps: int) -> Path:
    tree = {
        "model": {"name_or_path": "models/tiny-llama", "nickname": nickname, "kind": "causal", "dtype": "bfloat16"},
        "data": {"dir": "data", "max_eval_samples": 8},
        "prompt": {"max_source_length": 256, "max_target_length": 48},
        "lora": {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"max_steps": steps, "batch_size": 8, "learning_rate": 1e-3, "precision": "bf16", "logging_steps": 5,
                  "eval_strategy": "no", "save_strategy": "no", "device": "cuda", "optim": "adamw_torch_fused"},
        "generation": {"batch_size": 32, "num_beams": 1, "max_new_tokens": 16},
    }
    path = ws / "configs" / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def add(ws: Path, config: Path, gpus: str, action: str = "pipeline") -> int:
    out = cli(ws, "add", str(config), "--gpu", gpus, "--action", action)
    return int(out.split("queued run ")[1].split(":")[0])


def final(ws: Path, ids: list[int], timeout: float) -> dict[int, dict]:
    return wait_for(lambda: (lambda rs: rs if all(rs[i]["state"] in FINAL for i in ids) else None)(runs(ws)),
                    timeout, f"runs {ids} to end")


def events(ws: Path, run_id: int) -> list[dict]:
    path = ws / "runs" / str(run_id) / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


# --- the TUI ------------------------------------------------------------------------------------


def capture_tui(ws: Path, svg: Path, expect: list[str], timeout: float = 20.0) -> str:
    """The GPU panel's text once it names ``expect`` (e.g. ["run 3", "run 4"]); the whole screen
    goes to ``svg`` (tmux: a text capture beside it)."""
    if shutil.which("tmux"):
        session = f"dialsum-{os.getpid()}"
        env = bench_env()
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45",
                        shlex_join([*CLI, "--workspace", str(ws)])], check=True, env=env)
        try:
            def screen() -> str | None:
                text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
                return text if all(e in text for e in expect) else None
            try:
                text = wait_for(screen, timeout, f"tmux screen naming {expect}")
            except TimeoutError:
                text = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            svg.with_suffix(".txt").write_text(text)
            return text
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session])
    proc = subprocess.run([sys.executable, __file__, "--capture", str(ws), "--svg", str(svg), "--expect", *expect,
                           "--timeout", str(timeout)], capture_output=True, text=True, env=bench_env())
    if proc.returncode:
        return f"capture failed (exit {proc.returncode}): {proc.stderr[-800:]}"
    return proc.stdout


def shlex_join(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def headless_capture(ws: Path, svg: Path, expect: list[str], timeout: float) -> int:
    """Render the app headless (no terminal needed), wait for the GPU panel to name ``expect``,
    save the screen as SVG and print the panel's text."""
    import asyncio

    from dialsum_tui.app import make_app
    from dialsum_tui.widgets.gpu_panel import GpuPanel

    async def run() -> str:
        app = make_app(ws, poll_interval=0.3)
        async with app.run_test(size=(160, 45)) as pilot:
            deadline = time.monotonic() + timeout
            text = ""
            while time.monotonic() < deadline:
                await pilot.pause(0.3)
                text = str(app.main.query_one(GpuPanel).render())
                if all(e in text for e in expect):
                    break
            app.save_screenshot(filename=svg.name, path=str(svg.parent))
            return text

    print(asyncio.run(run()))
    return 0


# --- phases ---------------------------------------------------------------------------------------


def check_launches(ws: Path, tl: Timeline, gpus_of: dict[int, list[int]]) -> list[dict]:
    """Each stage launch with the memory on its devices just before it (idle = baseline + margin)."""
    out = []
    for when, run_id, stage, pid in launches(ws):
        devices = gpus_of[run_id] if stage == "train" else gpus_of[run_id][:1]
        sample = tl.at(when)
        out.append({"run": run_id, "stage": stage, "pid": pid, "devices": devices, "t": round(when - tl.samples[0][0], 1),
                    "used_gib": [tl.gib(sample)[i] for i in devices], "idle": tl.idle(devices, sample)})
    return out


def main_check(root: Path, out_dir: Path, n_gpus: int | None, phases: list[str]) -> int:
    import torch

    n = n_gpus or torch.cuda.device_count()
    if n < 2:
        print(f"needs at least 2 CUDA GPUs, found {n}", file=sys.stderr)
        return 2
    all_gpus = list(range(n))
    everything = ",".join(map(str, all_gpus))
    ws = root / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    env = bench_env()
    subprocess.run([*CLI, "init", str(ws)], check=True, env=env, capture_output=True)
    # A 5 s launch grace instead of 20 s: tiny models allocate within a second (the guard still
    # needs 3 consecutive idle samples before it admits a stage).
    (ws / ".dialsum" / "settings.yaml").write_text("gpu_grace_s: 5\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(ws / "data"), "--train", "400", "--dev", "16",
                    "--test", "32", "--seed", "3"], check=True, env=env, cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, "-m", "engine", "tiny-model", "--arch", "llama", "--data", str(ws / "data"),
                    "--out", str(ws / "models" / "tiny-llama")], check=True, env=env, cwd=ROOT, capture_output=True)
    tl = Timeline()
    report: dict = {"gpus": n, "baseline_gib": tl.gib((0, tl.baseline, [])), "phases": {}}
    gpus_of: dict[int, list[int]] = {}
    t_start = time.time()
    try:
        # ddp: one pipeline on every GPU.
        if "ddp" in phases:
            rid = add(ws, tiny_config(ws, "ddp-all", 40), everything)
            gpus_of[rid] = all_gpus
            r = final(ws, [rid], 240)[rid]
            started = next((e for e in events(ws, rid) if e["event"] == "started" and e.get("command") == "train"), {})
            report["phases"]["ddp"] = {"run": rid, "state": r["state"], "world_size": started.get("world_size"),
                                       "ok": r["state"] == "succeeded" and started.get("world_size") == n,
                                       "failure": r.get("failure_message")}
            print("ddp", json.dumps(report["phases"]["ddp"]), flush=True)

        # side: one pipeline per GPU at the same time; capture the TUI while all train.
        if "side" in phases:
            ids = [add(ws, tiny_config(ws, f"side-gpu{i}", 400), str(i)) for i in all_gpus]
            gpus_of.update({rid: [i] for rid, i in zip(ids, all_gpus, strict=True)})
            both = wait_for(lambda: (lambda rs: all(rs[i]["stage"] == "train" and rs[i]["state"] == "running" and rs[i]["pid"]
                                                    for i in ids))(runs(ws)), 120, "every side run training")
            panel = capture_tui(ws, out_dir / f"tui_{n}gpu_side.svg", [f"run {i}" for i in ids])
            rs = final(ws, ids, 300)
            report["phases"]["side"] = {"runs": ids, "states": [rs[i]["state"] for i in ids], "all_training_at_once": bool(both),
                                        "ok": all(rs[i]["state"] == "succeeded" for i in ids), "gpu_panel": panel}
            print("side", json.dumps({k: v for k, v in report["phases"]["side"].items() if k != "gpu_panel"}), flush=True)
            print(panel, flush=True)

        # cancel: a long N-GPU train, captured, then cancelled.
        if "cancel" in phases:
            rid = add(ws, tiny_config(ws, "cancel-all", 100000), everything, action="train")
            gpus_of[rid] = all_gpus
            wait_for(lambda: any(e["event"] == "progress" for e in events(ws, rid)), 180, "the long run's first steps")
            held = tl.sample()
            rank_pids = sorted({p for pids in held[2] for p in pids})
            panel = capture_tui(ws, out_dir / f"tui_{n}gpu_ddp.svg", [f"run {rid}"])
            t_cancel = time.time()
            cli(ws, "cancel", str(rid))
            state = final(ws, [rid], 120)[rid]["state"]
            t_final = time.time()
            wait_for(lambda: tl.idle(all_gpus), 60, "every GPU idle after the cancel", every=0.1)
            t_idle = time.time()
            import psutil

            alive = [p for p in rank_pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
            report["phases"]["cancel"] = {
                "run": rid, "state": state, "gpu_pids_before": rank_pids, "used_gib_before": tl.gib(held),
                "cancelled_after_s": round(t_final - t_cancel, 2), "gpus_idle_after_s": round(t_idle - t_cancel, 2),
                "rank_pids_alive_after": alive, "used_gib_after": tl.gib(tl.sample()),
                "ok": state == "cancelled" and not alive and len(rank_pids) >= n, "gpu_panel": panel,
            }
            print("cancel", json.dumps({k: v for k, v in report["phases"]["cancel"].items() if k != "gpu_panel"}), flush=True)
            print(panel, flush=True)

        # blocked: a foreign process holds the last GPU; a run for GPU 0 must not wait for it.
        if "blocked" in phases:
            last = all_gpus[-1]
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, "600"], stdout=subprocess.PIPE, text=True,
                                      env=env | {"CUDA_VISIBLE_DEVICES": str(last)})
            assert holder.stdout is not None and holder.stdout.readline().startswith("holding")
            blocked = add(ws, tiny_config(ws, f"blocked-gpu{last}", 20), str(last), action="train")
            free = add(ws, tiny_config(ws, "free-gpu0", 20), "0", action="train")
            gpus_of.update({blocked: [last], free: [0]})
            rs = final(ws, [free], 180)
            waiting = runs(ws)[blocked]
            t_release = time.time()
            holder.terminate()
            holder.wait()
            rb = final(ws, [blocked], 180)[blocked]
            launched_at = next(w for w, r_id, stage, _ in launches(ws) if r_id == blocked and stage == "train")
            report["phases"]["blocked"] = {
                "holder_pid": holder.pid, "blocked_run": blocked, "free_run": free,
                "free_state": rs[free]["state"], "blocked_state_while_free_ran": waiting["state"],
                "blocked_reason": waiting.get("reason"), "blocked_final": rb["state"],
                "started_after_release_s": round(launched_at - t_release, 2),
                "ok": rs[free]["state"] == "succeeded" and waiting["state"] == "waiting" and str(holder.pid) in
                (waiting.get("reason") or "") and rb["state"] == "succeeded",
            }
            print("blocked", json.dumps(report["phases"]["blocked"]), flush=True)
    finally:
        cli(ws, "worker", "stop", check=False)
        tl.stop()
    stages = check_launches(ws, tl, gpus_of)
    report["stage_launches"] = stages
    report["every_stage_started_on_idle_devices"] = all(s["idle"] for s in stages)
    report["wall_s"] = round(time.time() - t_start, 1)
    (out_dir / f"product_{n}gpu.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(cli(ws, "ls", check=False))
    print("\n| phase | ok |\n|---|---|")
    for name, phase in report["phases"].items():
        print(f"| {name} | {'PASS' if phase['ok'] else 'FAIL'} |")
    print(f"| every stage started on idle devices ({len(stages)} launches) | "
          f"{'PASS' if report['every_stage_started_on_idle_devices'] else 'FAIL'} |")
    bad = [s for s in stages if not s["idle"]]
    if bad:
        print("launched on busy devices:", json.dumps(bad))
    return 0 if all(p["ok"] for p in report["phases"].values()) and not bad else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="scratch directory for the workspace")
    parser.add_argument("--out", type=Path, help="report and screenshots go here (default: --root)")
    parser.add_argument("--gpus", type=int, help="use GPUs 0..N-1 (default: all)")
    parser.add_argument("--phases", default="ddp,side,cancel,blocked", help="which phases to run (comma list)")
    parser.add_argument("--capture", type=Path, metavar="WORKSPACE", help="only render the TUI of WORKSPACE headless")
    parser.add_argument("--svg", type=Path, help="with --capture: the SVG to write")
    parser.add_argument("--expect", nargs="*", default=[], help="with --capture: text the GPU panel must show")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    if args.capture:
        return headless_capture(args.capture, args.svg or Path("tui.svg").resolve(), args.expect, args.timeout)
    if not args.root:
        parser.error("--root is required (or --capture WORKSPACE)")
    root = args.root.resolve()
    out = (args.out or root).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return main_check(root, out, args.gpus, args.phases.split(","))


if __name__ == "__main__":
    sys.exit(main())
