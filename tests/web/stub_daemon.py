"""A scripted daemon for page features the real server does not offer yet (presets in ``hello``,
the ``checkin`` command): it serves the page's files with the daemon's Content-Security-Policy,
says the ``hello`` a test gives it, answers every command ``ok`` and records what the page sent.

It is the page's counterpart in the tests, not a model of the daemon: ``status`` returns whatever
the test put in :attr:`StubDaemon.status`, and events go out only when the test pushes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from musicmed_stream.emotion import load_vocabulary

# The daemon's page policy (musicmed_stream/control/server.py): the page must work under it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
TYPES = {".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".css": "text/css; charset=utf-8"}


class StubDaemon:
    def __init__(self, hello: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        self.hello = {"type": "hello", "protocol_version": 1, "daemon_version": "stub"}
        self.hello |= {"auth_required": False}
        self.hello |= hello
        self.status: dict[str, Any] = status or {"state": "idle", "volume": 0.8, "plan": None}
        self.received: list[dict[str, Any]] = []
        self.clients: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def page_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def __aenter__(self) -> StubDaemon:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._http)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """The messages of type ``kind`` the page sent, in order."""
        return [m for m in self.received if m.get("type") == kind]

    async def wait_sent(self, kind: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent(kind)) < count:
                await asyncio.sleep(0.05)
        return self.sent(kind)

    async def push(self, event: str, **data: Any) -> None:
        """An ``event`` message to every connected page."""
        message = json.dumps({"type": "event", "event": event, "time": 0.0, "data": data})
        for ws in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return None
        if path == "/emotions.json":
            labels = [{"name": e.name, "valence": e.valence, "arousal": e.arousal} for e in load_vocabulary()]
            return _response(200, json.dumps(labels).encode(), "application/json")
        name = "index.html" if path == "/" else path.lstrip("/")
        web = resources.files("musicmed_stream.control.web")
        if "/" in name or not web.joinpath(name).is_file():
            return _response(404, b"not found\n", "text/plain")
        suffix = "." + name.rsplit(".", 1)[-1]
        kind = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return _response(200, web.joinpath(name).read_bytes(), kind)

    async def _handle(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        try:
            await ws.send(json.dumps(self.hello))
            async for raw in ws:
                message = json.loads(raw)
                self.received.append(message)
                result = self.status if message.get("type") == "status" else {}
                reply = {"type": "ok", "id": message.get("id"), "command": message.get("type")}
                await ws.send(json.dumps(reply | {"result": result}))
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", CSP),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, body)
