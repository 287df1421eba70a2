"""Measures what one open browser tab of ``dialsum-tui serve`` costs the server: the RSS and CPU of the
app process textual-serve starts for it, and of the server itself, while the tab sits idle.

A websocket client stands in for the browser (the browser's own cost is on the laptop). Figures go
to docs/serve.md.

    python benchmarks/serve_tab_cost.py --workspace demo-workspace [--tabs 2] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialsum_tui.manager.workspace.layout import Workspace  # noqa: E402
from dialsum_tui.serve import TOKEN_FILE  # noqa: E402
from dialsum_tui.serve_http import TOKEN_COOKIE  # noqa: E402

SETTLE_S = 10.0  # the app's start-up (imports, first snapshot) is not idle time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _app_processes(server: psutil.Process) -> list[psutil.Process]:
    return [c for c in server.children(recursive=True)
            if "dialsum_tui" in c.cmdline() and "serve" not in c.cmdline()]


def _sample(procs: list[psutil.Process]) -> dict[str, float]:
    return {"rss_mib": sum(p.memory_info().rss for p in procs) / 2**20,
            "uss_mib": sum(p.memory_full_info().uss for p in procs) / 2**20,
            "cpu_s": sum(sum(p.cpu_times()[:2]) for p in procs)}


async def _hold_tabs(port: int, token: str, tabs: int, seconds: float, server: psutil.Process) -> dict:
    async with aiohttp.ClientSession(cookies={TOKEN_COOKIE: token}) as session:
        sockets = [await session.ws_connect(f"ws://127.0.0.1:{port}/ws?width=160&height=48") for _ in range(tabs)]
        received = [0] * tabs

        async def drain(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    received[i] += len(msg.data)

        readers = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(sockets)]
        await asyncio.sleep(SETTLE_S)
        apps = _app_processes(server)
        before, server_before, t0 = _sample(apps), _sample([server]), time.monotonic()
        bytes_before = sum(received)
        await asyncio.sleep(seconds)
        after, server_after, elapsed = _sample(apps), _sample([server]), time.monotonic() - t0
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
    return {
        "tabs": tabs, "app_processes": len(apps), "idle_s": round(elapsed, 1),
        "apps_rss_mib": round(after["rss_mib"], 1), "apps_uss_mib": round(after["uss_mib"], 1),
        "apps_cpu_percent": round(100 * (after["cpu_s"] - before["cpu_s"]) / elapsed, 2),
        "server_rss_mib": round(server_after["rss_mib"], 1),
        "server_cpu_percent": round(100 * (server_after["cpu_s"] - server_before["cpu_s"]) / elapsed, 2),
        "websocket_bytes_per_s": round((sum(received) - bytes_before) / elapsed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--tabs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "dialsum_tui", "--workspace", args.workspace, "serve",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        token = (Workspace(Path(args.workspace).resolve()).state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
        result = asyncio.run(_hold_tabs(port, token, args.tabs, args.seconds, psutil.Process(server.pid)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
