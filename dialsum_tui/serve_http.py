"""Provides TokenServer: textual-serve's server with a token check in front of every route but the
static assets, and a refusal of websockets opened from another origin (see dialsum_tui/serve.py for why).

Imported only by ``dialsum-tui serve``: aiohttp and textual-serve take ~0.5 s to import.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

TOKEN_COOKIE = "dialsum_serve_token"


class TokenServer(Server):
    """Serves ``command`` (one process per tab) to browsers that present ``token``."""

    def __init__(self, command: str, *, token: str, token_hint: str, follow_host: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.token = token
        self.token_hint = token_hint  # where the token is kept, named when a request has none
        self.follow_host = follow_host  # False when --public-url names the address browsers use

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.check_token)
        return app

    @web.middleware
    async def check_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Let a request through only with the token (query once, then the cookie) and, for the
        websocket, from this page's own origin."""
        if request.path.startswith("/static/"):  # the page's JS, CSS and fonts: no workspace data
            return await handler(request)
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text=f"websocket from another origin ({origin}) refused\n")
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given, self.token):
                raise web.HTTPForbidden(text="wrong token: open the URL `dialsum-tui serve` printed\n")
            # Keep it as a cookie and drop it from the address bar; Strict: no other site sends it.
            found = web.HTTPFound(request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"]))
            found.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
            raise found
        if not hmac.compare_digest(request.cookies.get(TOKEN_COOKIE, ""), self.token):
            raise web.HTTPForbidden(text="open the URL `dialsum-tui serve` printed: it ends with ?token=… "
                                         f"(also in {self.token_hint})\n")
        if request.path == "/" and self.follow_host:
            # The page opens its websocket at public_url. Take it from the address the browser used,
            # so a tunnel to another local port (ssh -L 9000:127.0.0.1:8000) or `localhost` works
            # too. Safe to set here: the index handler reads it before its first await.
            self.public_url = f"{request.scheme}://{request.host}"
        return await handler(request)

    async def on_startup(self, app: web.Application) -> None:
        # Replaces textual-serve's banner, which shows the command but not the URL to open.
        self.console.print(f"dialsum-tui: serving the TUI; open {self.public_url}/?token={self.token}", highlight=False)
        self.console.print("Each open tab runs its own app process. Ctrl+C stops the server and its tabs;"
                           " runs go on in the worker.", highlight=False)
