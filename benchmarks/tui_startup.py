"""Provides the TUI performance figures of issues 5 and 25: first frame (and its ratio to a bare
Textual app's, measured the same way in the same run), idle CPU with 1 Hz refresh, the end of a 1 GB
log on screen, key latency while a run writes 10k log lines/s, and End in the queue.

Run: ``python benchmarks/tui_startup.py [--log-gb 1] [--idle-s 10] [--runs 1000]``. The app runs in
a real tmux pane (80×24) for the first figures and headless (Pilot) for the key figures. ``--runs N``
fills the queue with N runs (the issue's 1,000-run case; adding them takes ~70 ms each). Prints
figures; asserts nothing (they depend on the machine and belong in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LAST_LINE = "BENCH-LAST-LINE the end of the big log"


NICKS = ("koBART-summarization", "Qwen3-4B-Instruct", "Llama-3.2-Korean-3B-bf16", "한국어-요약-koBART")


def _setup(root: Path, log_bytes: int, runs: int = 3) -> None:
    """A workspace with one running run whose run.log is ``log_bytes`` long, and ``runs - 1`` queued runs."""
    from dialsum_tui.manager.runs.models import RunState
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.workspace.layout import init_workspace

    ws = init_workspace(root)
    manager = Manager.open(ws)
    manager.pause()  # no worker runs here; a paused queue says so instead of "worker not running" alone
    for nick in NICKS:
        path = ws.configs_dir / f"{nick}.yaml"
        path.write_text(f"model: {{name_or_path: models/tiny, nickname: {nick}, kind: seq2seq}}\n", encoding="utf-8")
    for n in range(max(runs, 1)):  # never run: the bench times the screen, not the stages
        manager.add(str(ws.configs_dir / f"{NICKS[n % len(NICKS)]}.yaml"), check=False)
    manager.store.transition(1, RunState.RUNNING, stage="train", pid=os.getpid(),
                             progress={"step": 60, "total": 780, "eta_s": 3725.0, "tokens_per_s": 5123.0})
    line = b"step 000123/780 loss 0.4321 lr 2e-05 | 7%|######      | 58/780 [01:02<12:34, 1.23it/s]\n"
    block = line * (4 * 1024 * 1024 // len(line))
    with open(manager.log_path(1), "wb") as fh:
        written = 0
        while written < log_bytes:
            fh.write(block)
            written += len(block)
        fh.write((LAST_LINE + "\n").encode())


GPU_FRAMES = {"frames": [[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "used_mib": 15 * 1024, "total_mib": 80 * 1024,
                            "util": 87, "temp": 61}]]}


def _child(root: str, marks: str, seconds: float) -> None:
    """Run the app in this terminal, append ``name time`` marks to ``marks``, exit after ``seconds``.

    The GPU is scripted through ``$DIALSUM_FAKE_GPU``, so the app opens it on its poll thread as it
    opens NVML for the CLI: the first frame pays for exactly what ``dialsum-tui``'s does.
    """
    import json

    gpu_file = Path(root).parent / "gpu.json"
    gpu_file.write_text(json.dumps(GPU_FRAMES), encoding="utf-8")
    os.environ["DIALSUM_FAKE_GPU"] = str(gpu_file)
    from dialsum_tui.app import DialsumApp

    def mark(name: str) -> None:
        with open(marks, "a") as fh:
            fh.write(f"{name} {time.time():.6f}\n")

    class BenchApp(DialsumApp):
        # Textual calls each class's own handler, so these run in addition to the app's.
        def on_mount(self) -> None:
            self.call_after_refresh(mark, "first_frame")
            self.set_timer(seconds, self.exit)

        def on_board_refreshed(self, message) -> None:
            self.call_after_refresh(mark, "queue_shown")

        def on_run_refreshed(self, message) -> None:
            if LAST_LINE in message.snapshot.log_lines:
                self.call_after_refresh(mark, "log_end")

    mark(f"pid{os.getpid()}")
    BenchApp(root, poll_interval=1.0).run()  # as the CLI passes it: the path


def _bare_child(marks: str, seconds: float) -> None:
    """The issue's reference: a bare Textual app (header, a table, footer, 1 Hz update)."""
    from textual.app import App
    from textual.widgets import DataTable, Footer, Header

    class Bare(App):
        def compose(self):
            yield Header()
            yield DataTable()
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("id", "value")
            table.add_row("1", "0")
            self.set_interval(1.0, lambda: table.update_cell_at((0, 1), str(time.time())))
            self.call_after_refresh(lambda: open(marks, "a").write(f"first_frame {time.time():.6f}\n"))
            self.set_timer(seconds, self.exit)

    with open(marks, "a") as fh:
        fh.write(f"pid{os.getpid()} 0\n")
    Bare().run()


def _read_marks(path: Path) -> dict[str, float]:
    marks = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        name, value = line.split()
        marks[name] = float(value)
    return marks


# What the pane shows once each app's screen is drawn: the bare app's header title, the dashboard's queue panel.
PAINTED = {True: "Bare", False: "Queue"}


def _first_paint(tmux: list[str], session: str, marker: str, deadline: float) -> float | None:
    """When ``marker`` first shows in the pane (polled every ~10 ms): the frame as the terminal has it,
    whatever the app's own callbacks say."""
    while time.time() < deadline:
        pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        if marker in pane:
            return time.time()
        time.sleep(0.005)
    return None


def tmux_figures(tmux: list[str], root: Path, idle_s: float, bare: bool = False) -> dict[str, float]:
    """Start the app in a detached tmux pane; time the first frame (the app's after-refresh callback
    and the pane's content) and the log end, sample idle CPU."""
    marks = root / ("bare.txt" if bare else "marks.txt")
    cmd = [sys.executable, __file__, "--bare" if bare else "--child", str(root), str(marks), str(idle_s + 6)]
    session = f"dialsum-bench-{os.getpid()}-{'bare' if bare else 'app'}"
    start = time.time()
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", " ".join(cmd)], check=True)
    try:
        deadline = time.time() + 30
        painted = _first_paint(tmux, session, PAINTED[bare], deadline)
        while ("first_frame" if bare else "log_end") not in _read_marks(marks) and time.time() < deadline:
            time.sleep(0.02)
        got = _read_marks(marks)
        paint = {("bare_first_paint_s" if bare else "first_paint_s"): painted - start if painted else float("nan")}
        pid = next(int(k[3:]) for k in got if k.startswith("pid"))
        proc = psutil.Process(pid)
        time.sleep(2)  # let the first snapshot and the log tail settle
        before, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(idle_s)
        after, t1 = proc.cpu_times(), time.monotonic()
        cpu = (after.user + after.system - before.user - before.system) / (t1 - t0) * 100
        if bare:
            return {"bare_first_frame_s": got["first_frame"] - start, **paint, "bare_idle_cpu_percent": cpu}
        if "log_end" not in got:
            raise SystemExit(f"the app never showed the log's last line within 30 s: marks {got}")
        return {"first_frame_s": got["first_frame"] - start, **paint, "queue_shown_s": got["queue_shown"] - start,
                "log_end_s": got["log_end"] - start, "log_after_queue_s": got["log_end"] - got["queue_shown"],
                "idle_cpu_percent": cpu}
    finally:
        subprocess.run([*tmux, "kill-session", "-t", session], capture_output=True)


async def key_latency(root: Path, lines_per_s: int, presses: int = 20) -> dict[str, float]:
    """Mean and worst time for a key to be handled while a writer appends ``lines_per_s`` to run.log."""
    from dialsum_tui.app import make_app
    from dialsum_tui.manager.guards.gpu import NoGpuSource

    log = root / "runs" / "1" / "run.log"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys,time\nf=open(sys.argv[1],'a')\nn=int(sys.argv[2])//100\n"
        "while True:\n t=time.time()\n f.write(''.join(f'step {i} loss 0.1234 화자1: 요약\\n' for i in range(n)))\n"
        " f.flush()\n time.sleep(max(0,0.01-(time.time()-t)))\n"), str(log), str(lines_per_s)])
    timings = []
    try:
        app = make_app(root, gpu_source=NoGpuSource("benchmark"), poll_interval=1.0)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(2)
            for _ in range(presses):
                t = time.perf_counter()
                await pilot.press("f")
                timings.append(time.perf_counter() - t)
                await pilot.pause(0.1)
    finally:
        writer.kill()
    return {"key_mean_ms": sum(timings) / len(timings) * 1000, "key_max_ms": max(timings) * 1000}


async def queue_keys(root: Path, runs: int, presses: int = 5) -> dict[str, float]:
    """End then Home in the queue: the time each takes and whether End reached the last run."""
    from dialsum_tui.app import make_app
    from dialsum_tui.manager.guards.gpu import NoGpuSource
    from dialsum_tui.widgets.queue_table import QueueTable

    app = make_app(root, gpu_source=NoGpuSource("benchmark"), poll_interval=1.0)
    ends, homes, reached = [], [], True
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.main.query_one(QueueTable)
        deadline = time.monotonic() + 60
        while table.row_count < runs and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(1)
        last = int(table.coordinate_to_cell_key((table.row_count - 1, 0)).row_key.value)
        for _ in range(presses):
            for key, timings in (("end", ends), ("home", homes)):
                t = time.perf_counter()
                await pilot.press(key)
                timings.append(time.perf_counter() - t)
                await pilot.pause(0.1)
                if key == "end":
                    reached = reached and app.selected_run_id == last
    return {"end_key_mean_ms": sum(ends) / len(ends) * 1000, "home_key_mean_ms": sum(homes) / len(homes) * 1000,
            "end_reached_last_run": float(reached)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-gb", type=float, default=1.0)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--lines-per-s", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs in the queue (the issue's large case: 1000)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="leave the project's modules uncompiled (as under PYTHONDONTWRITEBYTECODE=1 with no "
                             "__pycache__: each start then compiles them, ~30 ms on the dev box)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        _bare_child(args.bare[1], float(args.bare[2]))
        return
    if args.child:
        _child(args.child[0], args.child[1], float(args.child[2]))
        return
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed for the terminal figures (apt-get install tmux)")
    if not args.no_bytecode:
        # As a user's every start but the first: Python caches the bytecode of what it imports. Textual's
        # was compiled at install; without this, a checkout run with PYTHONDONTWRITEBYTECODE=1 (the dev
        # box sets it) compiled the project's modules on each start, inside the app's first frame only.
        import compileall

        for package in ("dialsum_tui", "engine"):
            compileall.compile_dir(REPO / package, quiet=1)
    print(f"bytecode: {'not cached' if args.no_bytecode else 'cached (compileall)'}")
    with tempfile.TemporaryDirectory(prefix="dialsum-bench-") as tmp:
        root = Path(tmp) / "ws"
        t = time.time()
        _setup(root, int(args.log_gb * 1024**3), args.runs)
        print(f"setup: {args.runs} runs, {args.log_gb:g} GB log written in {time.time() - t:.1f} s")
        # A tmux server of our own (its socket in the temporary directory): never the user's, and one
        # that outlives each measured pane. On the default server the first pane's session was the
        # last one, so the server was shutting down as the second `new-session` reached it ("server
        # exited unexpectedly", seen once in a loaded CI run).
        tmux = ["tmux", "-S", str(Path(tmp) / "tmux.sock")]
        subprocess.run([*tmux, "new-session", "-d", "-s", "keep", "sleep 3600"], check=True)
        try:
            figures = {**tmux_figures(tmux, root, args.idle_s, bare=True), **tmux_figures(tmux, root, args.idle_s)}
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
        figures["first_frame_ratio"] = figures["first_frame_s"] / figures["bare_first_frame_s"]
        figures["first_paint_ratio"] = figures["first_paint_s"] / figures["bare_first_paint_s"]
        for name, value in figures.items():
            print(f"{name}: {value:.3f}")
        for name, value in {**asyncio.run(key_latency(root, args.lines_per_s)),
                            **asyncio.run(queue_keys(root, args.runs))}.items():
            print(f"{name}: {value:.1f}")


if __name__ == "__main__":
    main()
