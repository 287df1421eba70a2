"""Provides ``dialsum-tui serve``: the same TUI in a browser tab, through textual-serve.

Each open tab starts its own ``dialsum-tui`` app process (textual-serve's model), which reads the
same workspace and can do whatever the TUI does, cancelling runs included. So the server listens on
loopback unless the caller names another host *and* passes :data:`PUBLIC_FLAG`; from a laptop the
page is reached through an SSH tunnel (docs/serve.md).

Loopback alone is not private on a shared server (every local user can connect to 127.0.0.1), and
textual-serve checks nobody: any web page open in the user's browser could open a websocket to the
tunnel. So every request but the static assets needs the workspace's token (``.dialsum/serve-token``,
0600, shown in the URL printed at start), which the page keeps as a same-site cookie, and a websocket
from another origin is refused.
"""

from __future__ import annotations

import ipaddress
import secrets
import shlex
import signal
import sys
from pathlib import Path

from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import atomic_write_text

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Long on purpose: binding beyond loopback hands the queue to anyone who can reach the port.
PUBLIC_FLAG = "--i-know-the-page-can-cancel-runs"
TOKEN_FILE = "serve-token"  # in the workspace's private state dir; kept across restarts so a bookmark works
DESCRIPTION = (f"Serve the TUI to browser tabs on http://{DEFAULT_HOST}:{DEFAULT_PORT}/ (one app process per "
               f"tab). From a laptop: ssh -L {DEFAULT_PORT}:{DEFAULT_HOST}:{DEFAULT_PORT} SERVER, then open "
               f"http://localhost:{DEFAULT_PORT}/. The page can do what the TUI does, cancelling runs included.")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def check_host(host: str, allow_public: bool) -> str | None:
    """Refuse a non-loopback ``host`` unless ``allow_public``; return the warning to print, if any.

    Raises:
        ValueError: naming the flag that allows it (the CLI turns it into exit code 2).
    """
    if is_loopback(host):
        return None
    if not allow_public:
        raise ValueError(
            f"--host {host} would let anyone who can reach this machine open the page, and the page can "
            f"cancel runs; keep the default {DEFAULT_HOST} and use an SSH tunnel (docs/serve.md), or add "
            f"{PUBLIC_FLAG} if that is really meant"
        )
    return (f"WARNING: serving on {host} over plain HTTP: anyone who can reach this port and sees the token "
            "(it travels unencrypted) gets the full TUI, cancelling runs included; prefer 127.0.0.1 with an SSH tunnel.")


def default_public_url(host: str, port: int) -> str:
    """The URL the page uses to reach the websocket: the bound address, or this machine's name when
    bound to every interface (a browser cannot connect to 0.0.0.0)."""
    import socket

    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL
    return f"http://{host}:{port}"


def app_command(workspace_root: Path) -> str:
    """The command textual-serve runs for each tab.

    textual-serve starts it through a shell (``create_subprocess_shell``), hence one quoted string.
    The interpreter is this one, so the tab runs the same installation as the server.
    """
    return shlex.join([sys.executable, "-m", "dialsum_tui", "--workspace", str(workspace_root)])


def read_or_create_token(ws: Workspace) -> str:
    """The workspace's serve token: read from ``.dialsum/serve-token``, created (0600) the first time.
    Delete the file to revoke every browser that has it."""
    path = ws.state_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(24)
        atomic_write_text(path, token + "\n", mode=0o600)
    return token


def serve(ws: Workspace, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, public_url: str | None = None) -> int:
    """Serve the TUI over HTTP until Ctrl+C / SIGTERM; returns the exit code.

    Args:
        ws: the workspace every tab opens (its state dir holds the token).
        host: address to bind; check it with :func:`check_host` first.
        port: TCP port to bind.
        public_url: the URL browsers use (behind a proxy); default from ``host`` and ``port``.

    Raises:
        RuntimeError: when the port cannot be bound (in use, or not permitted).
    """
    from dialsum_tui.serve_http import TokenServer  # aiohttp + textual-serve: ~0.5 s, only for this command

    server = TokenServer(app_command(ws.root), token=read_or_create_token(ws), token_hint=str(ws.state_dir / TOKEN_FILE),
                         follow_host=public_url is None,
                         host=host, port=port, title=f"dialsum-tui — {ws.root.name}",
                         public_url=(public_url or default_public_url(host, port)).rstrip("/"))
    # The console script restores SIGPIPE's default (so `ls | head` ends quietly); a server must not
    # die when a browser hangs up mid-response: back to Python's EPIPE-as-exception.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        server.serve()
    except OSError as err:
        raise RuntimeError(f"cannot listen on {host}:{port} ({err.strerror or err}); "
                           "pick another port with --port") from None
    return 0
