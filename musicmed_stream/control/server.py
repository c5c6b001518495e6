"""The control server: the websocket at ``/ws`` and the companion web page at ``/``, on one port.

It translates protocol messages (:mod:`musicmed_stream.control.protocol`) into calls on a
:class:`~musicmed_stream.control.api.SessionController` and the controller's events into ``event``
messages. Security, in the order a connection meets it:

1. HTTP handshake: the ``Origin`` header of a browser must be one of ``allowed_origins`` or a page of
   this server, ``http://NAME:PORT`` with this server's port and a name it answers to (the loopback
   names, the bound host, and when bound beyond loopback this machine's host names and addresses:
   never the name a request's ``Host`` claims, against DNS rebinding); else 403. A client without
   ``Origin`` is not a browser and passes.
2. A client address that sent too many wrong tokens (handshake, ``auth`` or ``hello``) is refused
   (429 with ``Retry-After``, its token not even compared): after three in a row for
   ``auth_backoff_seconds``, doubling with each further one up to a minute; a right token, once the
   backoff is over, clears it (:class:`~musicmed_stream.control.ratelimit.AuthBackoff`).
3. A token offered at the handshake (``Authorization: Bearer`` or ``?token=``) must be right (401).
   Without one, every command but ``hello``/``auth`` is refused until an ``auth`` message carries it;
   a wrong token closes the connection (1008).
4. Messages larger than ``max_message_bytes`` close the connection (1009, by ``websockets``); more than
   ``rate_limit_per_second`` (with a burst of twice that) get ``rate_limited`` errors, and a client that
   keeps on is disconnected (1008).

The companion page (the files under ``web/`` and ``/emotions.json``) is static and public by default:
it holds no data, and asks for the token before it sends any command. With ``public_page = false``
and a token, it is served only to a request with the token (``?token=`` or ``Authorization: Bearer``;
401 otherwise), which also gets an HttpOnly, SameSite=Strict cookie (derived from the token, not the
token) that lets the page load its script, style and labels. The token never reaches the logs: the
:mod:`~musicmed_stream.control.redact` filter masks it in ``websockets``' debug lines (request line,
headers, frames) and in this package's.

Bad messages get an ``error`` reply naming the problem; the connection and the playback carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import time
from collections.abc import Iterable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydantic
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from musicmed_stream import __version__
from musicmed_stream.control import protocol as p
from musicmed_stream.control import redact
from musicmed_stream.control.api import SessionController, StartOptions
from musicmed_stream.control.events import Event
from musicmed_stream.control.ratelimit import AuthBackoff, TokenBucket
from musicmed_stream.control.settings import ControlSettings, is_loopback, machine_names
from musicmed_stream.emotion.point import VA
from musicmed_stream.errors import MusicMedError
from musicmed_stream.jsonable import to_jsonable

log = logging.getLogger(__name__)

WS_PATH = "/ws"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
EMOTIONS_PATH = "/emotions.json"
CLOSE_TIMEOUT_S = 1.0  # closing: a client that does not answer the handshake this long is cut off
PAGE_COOKIE = "musicmed-page"  # with public_page = false: lets the page load its own files
PAGE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
)


def emotion_labels() -> bytes:
    """The vocabulary the daemon resolves names with, as JSON for the page's circle labels."""
    from musicmed_stream.emotion import load_vocabulary

    labels = [{"name": e.name, "valence": e.valence, "arousal": e.arousal} for e in load_vocabulary()]
    return json.dumps(labels).encode("utf-8")


class ControlServer:
    """A running control server. Use :func:`start_control_server` to make one."""

    def __init__(self, controller: SessionController, settings: ControlSettings) -> None:
        self.controller = controller
        self.settings = settings
        self._server: Server | None = None
        self._page = {
            path: resources.files("musicmed_stream.control.web").joinpath(name).read_bytes()
            for path, (name, _) in STATIC_FILES.items()
        }
        self._emotions = emotion_labels()
        self.backoff = AuthBackoff(base=settings.auth_backoff_seconds)
        self._page_cookie = (
            hmac.new(settings.token.encode("utf-8"), b"musicmed-stream page", hashlib.sha256).hexdigest()
            if settings.token
            else ""
        )
        self._secret_registered = False

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The websocket URL, e.g. ``ws://127.0.0.1:8765/ws``."""
        return f"ws://{self._url_host()}:{self.port}{WS_PATH}"

    @property
    def page_url(self) -> str:
        """The companion page, e.g. ``http://127.0.0.1:8765/``."""
        return f"http://{self._url_host()}:{self.port}/"

    def _url_host(self) -> str:
        host = self.settings.host if is_loopback(self.settings.host) else "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    async def start(self) -> None:
        # Before the first connection: websockets' debug lines carry the token (request line,
        # Authorization header, auth frames), whatever logging the embedder set up.
        redact.install()
        if self.settings.token and not self._secret_registered:
            redact.REDACTOR.add_secret(self.settings.token)
            self._secret_registered = True
        try:
            if not is_loopback(self.settings.host):
                await asyncio.to_thread(machine_names)  # name lookups, once, off the event loop
            self._server = await serve(
                self._handle,
                self.settings.host or None,
                self.settings.port,
                process_request=self._process_request,
                max_size=self.settings.max_message_bytes,
                max_queue=4,
                server_header=f"musicmed-stream/{__version__}",
            )
        except BaseException:
            self._forget_secret()
            raise
        log.info("control server on %s (page %s)", self.url, self.page_url)

    async def close(self) -> None:
        """Close every connection and stop listening. A client that does not answer the closing
        handshake within :data:`CLOSE_TIMEOUT_S` (it stopped reading: a phone asleep with its
        socket open) is cut off, so that it does not hold up a SIGTERM's fade-out and exit."""
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                for connection in list(self._server.all_connections):
                    connection.transport.abort()
                await self._server.wait_closed()
            self._server = None
        self._forget_secret()

    def _forget_secret(self) -> None:
        if self._secret_registered:
            redact.REDACTOR.discard_secret(self.settings.token)
            self._secret_registered = False

    # --- HTTP: the page, and the websocket handshake checks ----------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path in STATIC_FILES or parts.path == EMOTIONS_PATH:
            return self._page_response(connection, request, parts.path, parts.query)
        if parts.path != WS_PATH:
            return _response(404, b"not found\n", "text/plain; charset=utf-8")
        if not self.settings.origin_allowed(request.headers.get("Origin"), port=self.port):
            log.warning("refused a websocket from origin %s", request.headers.get("Origin"))
            return _response(403, b"origin not allowed\n", "text/plain; charset=utf-8")
        address = client_address(connection)
        refusal = self._backing_off(address)
        if refusal is not None:
            return refusal
        offered = _handshake_token(request.headers, parts.query)
        if offered is not None:
            if not self.settings.token_matches(offered):
                self.wrong_token(address)
                return _unauthorized(b"wrong token\n")
            self.backoff.success(address)
        return None

    def _page_response(
        self, connection: ServerConnection, request: Request, path: str, query: str
    ) -> Response:
        """A page file or the emotion labels; with ``public_page = false`` and a token, only for a
        request that carries the token or the page cookie."""
        body, kind = (
            (self._emotions, "application/json")
            if path == EMOTIONS_PATH
            else (self._page[path], STATIC_FILES[path][1])
        )
        if self.settings.public_page or not self.settings.token_required:
            return _response(200, body, kind, PAGE_HEADERS)
        address = client_address(connection)
        refusal = self._backing_off(address)
        if refusal is not None:
            return refusal
        offered = _handshake_token(request.headers, query)
        cookie = _cookie(request.headers, PAGE_COOKIE)
        if offered is None and cookie is None:
            return _unauthorized(b"this page needs the control token: open it as /?token=TOKEN\n")
        if offered is not None:
            right = self.settings.token_matches(offered)
        else:
            right = hmac.compare_digest(str(cookie).encode("utf-8", "replace"), self._page_cookie.encode())
        if not right:
            self.wrong_token(address)
            return _unauthorized(b"wrong token\n")
        self.backoff.success(address)
        set_cookie = f"{PAGE_COOKIE}={self._page_cookie}; Path=/; HttpOnly; SameSite=Strict"
        return _response(200, body, kind, (*PAGE_HEADERS, ("Set-Cookie", set_cookie)))

    def _backing_off(self, address: str) -> Response | None:
        """A 429 for ``address`` while it backs off after wrong tokens (its token is not looked at)."""
        wait = self.backoff.retry_after(address, time.monotonic())
        if wait <= 0:
            return None
        log.debug("refused %s: backing off after wrong tokens (%.1f s left)", address, wait)
        seconds = max(1, math.ceil(wait))
        body = f"too many wrong tokens: retry in {seconds} s\n".encode()
        return _response(429, body, "text/plain; charset=utf-8", [("Retry-After", str(seconds))])

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` is still refused for after wrong tokens (0: it may try)."""
        return self.backoff.retry_after(address, time.monotonic())

    def wrong_token(self, address: str) -> None:
        """Count a wrong token from ``address``; a backoff that starts is logged (once, here)."""
        if not self.settings.token_required:
            return  # no secret to guess: nothing to slow down
        delay = self.backoff.failure(address, time.monotonic())
        if delay > 0:
            log.warning(
                "%d wrong control tokens in a row from %s: refusing it for %g s",
                self.backoff.failures(address),
                address,
                delay,
            )
        else:
            log.info("wrong control token from %s", address)

    # --- websocket ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request else "")
        offered = _handshake_token(ws.request.headers, parts.query) if ws.request else None
        authenticated = not self.settings.token_required or self.settings.token_matches(offered)
        session = _ClientSession(self, ws, authenticated)
        await session.run()


def _response(status: int, body: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close"), *extra]
    )
    return Response(status, HTTPStatus(status).phrase, headers, body)


def _unauthorized(body: bytes) -> Response:
    return _response(
        401, body, "text/plain; charset=utf-8", [("WWW-Authenticate", 'Bearer realm="musicmed-stream"')]
    )


def client_address(connection: ServerConnection) -> str:
    """The client's IP address as text (an IPv4-mapped IPv6 address as IPv4), the key of the
    wrong-token backoff."""
    try:
        peer = connection.remote_address
    except Exception:  # a transport already gone
        peer = None
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.get_all("Cookie"):
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
    return None


def _handshake_token(headers: Headers, query: str) -> str | None:
    auth = headers.get("Authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    values = parse_qs(query).get("token")
    return values[0] if values else None


MAX_DEPTH = 16  # no command nests deeper than 4; deeper JSON is refused before anything reads it


def decode(raw: str) -> Any:
    """A message's JSON, refusing what no command is made of: nesting deeper than
    :data:`MAX_DEPTH`, integers too long to convert, lone surrogates (text that is not Unicode
    and could not be echoed back). Raises ``ValueError`` with the reason."""
    if _depth(raw) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        raise ValueError(f"not valid JSON: {exc}") from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate escape)") from None
    return data


def _depth(raw: str) -> int:
    """Bracket nesting of ``raw``, an upper bound of its JSON depth (brackets inside strings
    count too); cheap: the running sum of opening minus closing brackets."""
    if "[" not in raw and "{" not in raw:
        return 0
    opening = raw.count("[") + raw.count("{")
    if opening <= MAX_DEPTH:
        return opening
    depth = top = 0
    for char in raw:
        if char in "[{":
            depth += 1
            top = max(top, depth)
        elif char in "]}":
            depth -= 1
    return top


def _message_id(data: dict[str, Any]) -> str | int | None:
    """The ``id`` to echo: only one the protocol allows (short text, an integer within 2**53)."""
    msg_id = data.get("id")
    if isinstance(msg_id, str) and len(msg_id) <= 200:
        return msg_id
    if isinstance(msg_id, int) and not isinstance(msg_id, bool) and abs(msg_id) <= 2**53:
        return msg_id
    return None


def _peek_id(raw: str | bytes) -> str | int | None:
    """The ``id`` of a message that will not be processed, so the client can match the refusal."""
    try:
        data = decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return _message_id(data) if isinstance(data, dict) else None


class _ClientSession:
    """One websocket connection: authentication state, rate limit, subscriptions."""

    def __init__(self, server: ControlServer, ws: ServerConnection, authenticated: bool) -> None:
        self.server = server
        self.controller = server.controller
        self.ws = ws
        self.address = client_address(ws)
        self.authenticated = authenticated
        rate = server.settings.rate_limit_per_second
        now = time.monotonic()
        self.bucket = TokenBucket(rate=rate, capacity=max(1.0, 2 * rate), now=now)
        # Rejected messages drain a second bucket; a client that empties it is abusing, not bursting.
        self.strikes = TokenBucket(rate=rate / 2, capacity=max(10.0, 2 * rate), now=now)
        self.subscribed: set[str] = set()
        self.queue: asyncio.Queue[Event] | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self.closing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        peer = self.ws.remote_address
        log.debug("control client connected from %s", peer)
        try:
            offered = to_jsonable(self.controller.status()).get("presets") or []
            presets = [p.Preset.model_validate(preset) for preset in offered]
            hello = p.HelloMessage(
                daemon_version=__version__, auth_required=not self.authenticated, presets=presets
            )
            await self.send(hello)
            async for raw in self.ws:
                if self.closing is None:
                    await self._handle_safely(raw)
        except ConnectionClosed:
            pass
        finally:
            await self._stop_events()
            log.debug("control client %s gone (%s)", peer, self.ws.close_code)

    def close(self, code: CloseCode, reason: str) -> None:
        """Start the closing handshake; the receive loop keeps draining (and ignoring) messages
        meanwhile, so the client's close frame is not stuck behind a full receive queue."""
        self.closing = asyncio.create_task(self.ws.close(code, reason), name="control-close")

    async def send(self, message: pydantic.BaseModel) -> None:
        """Send ``message``; a client that does not take it within ``send_timeout_seconds`` (it
        stopped reading: its buffers are full) is disconnected with 1013, so that nothing queues
        up in the daemon for it."""
        try:
            # not wait_for: on Python 3.11 it swallows a cancellation that meets a finishing send,
            # and the forwarder of a client that is gone waited for the next event to notice
            async with asyncio.timeout(self.server.settings.send_timeout_seconds):
                await self.ws.send(p.dump(message))
        except TimeoutError:
            log.warning("disconnecting %s: it does not read what it is sent", self.ws.remote_address)
            self.close(CloseCode.TRY_AGAIN_LATER, "client too slow")
            raise ConnectionClosed(None, None) from None

    async def _handle_safely(self, raw: str | bytes) -> None:
        """:meth:`handle`, with a bug in it answered (``internal``) rather than closing the
        connection: no message, however built, takes the control channel down."""
        try:
            await self.handle(raw)
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.exception("control message from %s failed", self.ws.remote_address)
            await self.error("internal", f"internal error: {type(exc).__name__}", _peek_id(raw))

    async def error(self, code: p.ErrorCode, message: str, msg_id: Any = None) -> None:
        await self.send(p.ErrorReply(id=msg_id, code=code, message=message))

    async def handle(self, raw: str | bytes) -> None:
        """Answer one message (or refuse it, closing the connection on abuse)."""
        now = time.monotonic()
        if not self.bucket.take(now):
            if not self.strikes.take(now):
                log.warning("disconnecting %s: sustained rate-limit abuse", self.ws.remote_address)
                self.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
                return
            limit = self.server.settings.rate_limit_per_second
            await self.error(
                "rate_limited", f"too many messages: at most {limit:g} per second", _peek_id(raw)
            )
            return
        if isinstance(raw, bytes):
            await self.error("bad_json", "binary messages are not supported: send JSON text")
            return
        try:
            data = decode(raw)
        except ValueError as exc:
            await self.error("bad_json", str(exc))
            return
        if not isinstance(data, dict):
            await self.error("bad_json", f"a message must be a JSON object, got {type(data).__name__}")
            return
        msg_id = _message_id(data)
        kind = data.get("type")
        if kind not in p.COMMAND_TYPES:
            known = ", ".join(p.COMMAND_TYPES)
            if kind is None:
                await self.error("bad_message", f"missing field 'type'; one of: {known}", msg_id)
            else:
                await self.error("unknown_command", f"unknown command {kind!r}; known: {known}", msg_id)
            return
        try:
            command = p.parse_client_message(data)
        except pydantic.ValidationError as exc:
            await self.error("bad_message", f"invalid {kind!r}: {p.format_validation_error(exc)}", msg_id)
            return
        await self.dispatch(command, msg_id)

    async def dispatch(self, command: p.ClientMessage, msg_id: Any) -> None:
        if isinstance(command, p.HelloCommand | p.AuthCommand) and command.token is not None:
            wait = self.server.retry_after(self.address)
            if wait > 0:  # backing off after wrong tokens: this one is not even compared
                seconds = max(1, math.ceil(wait))
                await self.error("rate_limited", f"too many wrong tokens: retry in {seconds} s", msg_id)
                self.close(CloseCode.TRY_AGAIN_LATER, "too many wrong tokens")
                return
            if not self.server.settings.token_matches(command.token):
                self.server.wrong_token(self.address)
                await self.error("unauthorized", "wrong token", msg_id)
                self.close(CloseCode.POLICY_VIOLATION, "wrong token")
                return
            self.server.backoff.success(self.address)
            self.authenticated = True
        elif isinstance(command, p.AuthCommand | p.HelloCommand):
            pass
        elif not self.authenticated:
            await self.error(
                "unauthorized", 'authenticate first: send {"type": "auth", "token": ...}', msg_id
            )
            return
        try:
            result = await self.execute(command)
        except MusicMedError as exc:
            await self.error("rejected", str(exc), msg_id)
            return
        except Exception as exc:  # a bug in the daemon must not take the control channel down
            log.exception("control command %s failed", command.type)
            await self.error("internal", f"internal error: {type(exc).__name__}: {exc}", msg_id)
            return
        await self.send(p.OkReply(id=msg_id, command=command.type, result=to_jsonable(result)))

    async def execute(self, command: p.ClientMessage) -> dict[str, Any]:
        """Carry out a validated, authorized command; returns the ``ok`` reply's ``result``."""
        c = self.controller
        match command:
            case p.HelloCommand() | p.AuthCommand():
                return {"authenticated": self.authenticated, "protocol_version": p.PROTOCOL_VERSION}
            case p.StartCommand():
                options = StartOptions(
                    start=command.start_state(),
                    target=command.target_state(),
                    minutes=command.minutes,
                    clip_seconds=command.clip_seconds,
                    path=command.path,
                    temperature=command.temperature,
                    seed=command.seed,
                    replace=command.replace,
                )
                return to_jsonable(await c.start_session(options))
            case p.SetTargetCommand():
                return to_jsonable(await c.set_target(command.target_state()))
            case p.PauseCommand():
                await c.pause()
            case p.ResumeCommand():
                await c.resume()
            case p.SkipCommand():
                await c.skip()
            case p.StopCommand():
                await c.stop(command.fade_seconds)
            case p.VolumeCommand():
                return {"volume": await c.set_volume(command.volume)}
            case p.StatusCommand():
                return to_jsonable(c.status(include_plan=command.plan))
            case p.ExtendCommand():
                return to_jsonable(await c.extend(command.minutes))
            case p.SleepTimerCommand():
                return {"seconds_left": await c.sleep_timer(command.minutes)}
            case p.CheckinCommand():
                return to_jsonable(await c.check_in(command.when, VA(command.valence, command.arousal)))
            case p.HistoryCommand():
                return {"sessions": to_jsonable(await c.history(command.limit))}
            case p.SubscribeCommand():
                self.subscribed |= set(command.events or p.EVENT_TYPES)
                self._start_events()
                return {"events": sorted(self.subscribed)}
            case p.UnsubscribeCommand():
                self.subscribed -= set(command.events or p.EVENT_TYPES)
                if not self.subscribed:
                    await self._stop_events()
                return {"events": sorted(self.subscribed)}
        return {}

    # --- events ------------------------------------------------------------------------------

    def _start_events(self) -> None:
        if self.queue is None:
            self.queue = self.controller.subscribe()
            self.forwarder = asyncio.create_task(self._forward(self.queue), name="control-events")

    async def _stop_events(self) -> None:
        if self.forwarder is not None:
            self.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.forwarder
            self.forwarder = None
        if self.queue is not None:
            self.controller.unsubscribe(self.queue)
            self.queue = None

    async def _forward(self, queue: asyncio.Queue[Event]) -> None:
        try:
            while True:
                event = await queue.get()
                if event.type in self.subscribed:
                    await self.send(p.event_message(event))
        except ConnectionClosed:
            pass


async def start_control_server(
    controller: SessionController, settings: ControlSettings | None = None
) -> ControlServer:
    """Start the control server for ``controller`` and return it once it listens.

    Parameters
    ----------
    controller : SessionController
        The daemon.
    settings : ControlSettings, optional
        Where to listen (``port = 0`` picks a free port: read it back from ``server.port``), the
        token, the allowed origins and the limits; default: loopback on port 8765, no token.

    Raises
    ------
    OSError
        If the address cannot be bound (e.g. the port is in use).
    """
    server = ControlServer(controller, settings or ControlSettings())
    await server.start()
    return server
