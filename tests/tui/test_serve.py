"""``dialsum-tui serve`` as a teammate uses it: a real server on a loopback port, the page opened in
headless Chromium, the queue read off the terminal, ``r`` for the results table, and the tab's app
process gone once the tab is closed. Also the refusals: a public host without the flag, a busy port.

The browser test needs Chromium (Debian's ``chromium``; ``make install`` adds it) and the
``playwright`` package, which drives that executable (``playwright install`` downloads nothing here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dialsum_tui import serve
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace

from support import wait_until, write_config

CLI = [sys.executable, "-m", "dialsum_tui"]
NICKNAMES = ("koBART-요약", "라마-한국어-3B")
CHROMIUM = os.environ.get("DIALSUM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
START_S = 90.0  # the server, then one app process per tab, on a CI box shared with the rest of the suite

# textual-serve keeps its xterm.js Terminal in a closure; catch it when its wrapper assigns
# `this.terminal = new Terminal(...)`, so the test reads the terminal's own buffer (what is drawn on
# the canvas) instead of the raw byte stream.
CAPTURE_TERMINAL = """
window.__terminals = [];
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    if (value && value.buffer && value.buffer.active) window.__terminals.push(value);
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
  },
});
"""
READ_SCREEN = """() => {
  const term = window.__terminals[0];
  if (!term) return "";
  const buf = term.buffer.active, rows = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buf.getLine(buf.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _tab_processes(server: subprocess.Popen) -> list[psutil.Process]:
    """The app processes textual-serve started for open tabs (children of the server, via a shell)."""
    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "dialsum_tui" in cmdline and "serve" not in cmdline and child.status() != psutil.STATUS_ZOMBIE:
            out.append(child)
    return out


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A workspace with two finished runs, served on a free loopback port: (base URL, server process)."""
    mgr = Manager.open(workspace)
    for nick in NICKNAMES:
        mgr.add(str(write_config(workspace, nick)))
    mgr.ensure_worker()
    wait_until(lambda: all(r.state.is_final for r in mgr.runs()), timeout=60, what="the runs to finish")
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")  # closed in the finally below; read on failure
    server = subprocess.Popen([*CLI, "--workspace", str(workspace.root), "serve", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: _accepts(port) or server.poll() is not None, timeout=START_S, what="the server to listen")
        assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
        yield f"http://127.0.0.1:{port}/", server
    finally:
        server.send_signal(signal.SIGTERM)  # textual-serve's graceful exit: closes every tab's app
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session we started for it, nobody else's
            server.wait(timeout=10)
        log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (Debian: apt-get install chromium; make install does)")
def test_browser_tab_shows_the_queue_and_opens_results(served: tuple[str, subprocess.Popen],
                                                       workspace: Workspace) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
    url, server = served
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])  # root: no user namespace sandbox
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # Loopback only: the page also asks for a web font, which must not leave the machine.
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                       else route.abort())
            page.add_init_script(CAPTURE_TERMINAL)
            page.goto(f"{url}?token={_token(workspace)}")  # the URL the server prints

            def screen() -> str:
                return page.evaluate(READ_SCREEN)

            queue = wait_until(lambda: all(n in (s := screen()) for n in NICKNAMES) and s, timeout=START_S,
                               what="the queue to show both runs in the page")
            assert "상태" not in queue  # the results table's column: not open yet
            assert len(_tab_processes(server)) == 1  # one app process for this tab

            page.focus(".xterm-helper-textarea")  # where xterm.js takes keys
            page.keyboard.press("r")
            results = wait_until(lambda: "상태" in (s := screen()) and "완료" in s and s, timeout=30,
                                 what="the results table after pressing r")
            assert all(n in results for n in NICKNAMES)

            page.close()
            wait_until(lambda: not _tab_processes(server), timeout=30, what="the tab's app process to exit")
        finally:
            browser.close()


def _token(ws: Workspace) -> str:
    return (ws.state_dir / serve.TOKEN_FILE).read_text(encoding="utf-8").strip()


async def test_only_the_token_holder_gets_the_page_and_the_websocket(served: tuple[str, subprocess.Popen],
                                                                     workspace: Workspace) -> None:
    import aiohttp

    url, server = served
    token_file = workspace.state_dir / serve.TOKEN_FILE
    assert token_file.stat().st_mode & 0o777 == 0o600
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # unsafe: IP hosts
        async with session.get(url) as resp:
            assert resp.status == 403 and "?token=" in await resp.text()
        async with session.get(f"{url}?token=wrong") as resp:
            assert resp.status == 403
        async with session.get(f"{url}static/js/textual.js") as resp:
            assert resp.status == 200  # assets carry no workspace data
        async with session.get(f"{url}?token={_token(workspace)}", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/"
            cookie = resp.cookies["dialsum_serve_token"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        # Opened as localhost instead of 127.0.0.1: the page's websocket follows the address used.
        local = url.replace("127.0.0.1", "localhost")
        async with session.get(local, cookies={"dialsum_serve_token": _token(workspace)}) as resp:
            assert resp.status == 200 and f'data-session-websocket-url="{local.replace("http", "ws")}ws"' in await resp.text()
        # Another site's page, in a browser that holds the cookie, must not reach the TUI.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{url}ws", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
    # Browsers hang up mid-response (a reload, a closed tab): the server must not die of SIGPIPE.
    port = int(url.rsplit(":", 1)[1].strip("/"))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /static/js/textual.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    async with aiohttp.ClientSession() as session, session.get(f"{url}static/css/xterm.css") as resp:
        assert resp.status == 200 and server.poll() is None


def test_public_host_needs_the_explicit_flag(workspace: Workspace) -> None:
    done = subprocess.run([*CLI, "--workspace", str(workspace.root), "serve", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and serve.PUBLIC_FLAG in done.stderr and "SSH tunnel" in done.stderr
    assert serve.check_host("127.0.0.1", False) is None and serve.check_host("localhost", False) is None
    assert serve.check_host("::1", False) is None
    assert "cancelling runs" in serve.check_host("0.0.0.0", True)
    with pytest.raises(ValueError, match=serve.PUBLIC_FLAG):
        serve.check_host("gpu-server.lan", False)


def test_busy_port_is_a_clear_error(workspace: Workspace) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*CLI, "--workspace", str(workspace.root), "serve", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port" in done.stderr


def test_each_tab_runs_this_interpreter_on_this_workspace(tmp_path: Path) -> None:
    command = serve.app_command(tmp_path / "my ws")
    assert command.startswith(sys.executable) and command.endswith(f"--workspace '{tmp_path / 'my ws'}'")
    assert serve.default_public_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert serve.default_public_url("::1", 8000) == "http://[::1]:8000"
