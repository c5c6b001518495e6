"""Small asyncio clients for the control protocol.

:class:`ControlClient` (the tests, benchmarks, scripts) validates every command against the
protocol's pydantic models before sending it and hands out events as typed messages.
:class:`Connection` speaks the same protocol in plain JSON dicts and imports neither pydantic nor
the protocol models: it is what ``musicmed-stream ctl`` uses, so that a ctl call starts in a
fraction of a second (the daemon validates every command anyway).

>>> async with await ControlClient.connect("ws://127.0.0.1:8765/ws", token=None) as client:
...     await client.start("sad", "calm", minutes=5)
...     await client.subscribe()
...     async for event in client.events():
...         print(event.event, event.data)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from musicmed_stream.control.redact import REDACTOR
from musicmed_stream.errors import MusicMedError

DEFAULT_URL = "ws://127.0.0.1:8765/ws"
WS_PATH = "/ws"


class ControlError(MusicMedError):
    """The daemon answered a command with an ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.reason = message


class DaemonUnreachableError(MusicMedError, ConnectionError):
    """No daemon answers at the URL, it refused the connection, or the connection was lost."""


def normalize_url(url: str) -> str:
    """The daemon's websocket URL from what a person types: ``http://`` becomes ``ws://`` (``https``:
    ``wss``), no path or ``/`` becomes ``/ws``, a bare ``host:port`` gets ``ws://``. Other paths
    and the query (``?token=``) are kept."""
    text = url.strip()
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    path = WS_PATH if parts.path in ("", "/") else parts.path
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


def _refusal(url: str, exc: InvalidStatus) -> str:
    """One line for a server that answered the handshake with plain HTTP: its status, and its text
    only when that is a short plain-text reason (a web page is never printed)."""
    response = exc.response
    status = response.status_code
    line = f"HTTP {status} {response.reason_phrase}".strip()
    kind = (response.headers.get("Content-Type") or "").lower()
    body = response.body.decode("utf-8", "replace").strip() if response.body else ""
    if kind.startswith("text/plain") and body and "\n" not in body and len(body) <= 200:
        line += f": {body}"
    parts = urlsplit(url)
    if status in (200, 404) and parts.path != WS_PATH:
        there = urlunsplit((parts.scheme, parts.netloc, WS_PATH, parts.query, ""))
        return f"{url} is not the daemon's websocket ({line}); it listens at {there}"
    return f"the daemon at {url} refused the connection: {line}"


class Connection:
    """One websocket connection to the daemon, messages as plain JSON dicts; replies are matched
    to commands by ``id``.

    Use :meth:`connect` to make one. Events (after :meth:`subscribe`) are read with :meth:`events`
    or :meth:`next_event`: ``{"type": "event", "event": ..., "data": {...}, "time": ...}``.
    """

    def __init__(self, ws: ClientConnection, hello: Any, url: str) -> None:
        self.ws = ws
        self.hello = hello
        self.url = url
        self._ids = itertools.count(1)
        self._pending: dict[str | int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._unmatched: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="control-client-reader")

    # --- what the typed client changes -----------------------------------------------------------

    @classmethod
    def _parse(cls, data: Any) -> Any:
        """A server message as this client hands it out; ``ValueError`` if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError("not a protocol message")
        return data

    def _check_command(self, type: str, fields: dict[str, Any]) -> None:
        """Refuse a bad command before it is sent (here: nothing; the daemon checks)."""

    # --- connection --------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 5.0, **ws_options: Any
    ) -> Self:
        """Connect, read the server's ``hello`` and authenticate with ``token`` if it asks for one.

        Raises
        ------
        DaemonUnreachableError
            If nothing listens at ``url`` or the server refuses the handshake.
        ControlError
            If the token is missing or wrong.
        """
        shown = REDACTOR.redact(url)  # the URL may carry ?token=: never in a message
        try:
            ws = await asyncio.wait_for(connect(url, open_timeout=timeout, **ws_options), timeout)
        except InvalidURI as exc:
            raise DaemonUnreachableError(f"invalid daemon URL {shown!r}: {exc}") from exc
        except InvalidStatus as exc:
            raise DaemonUnreachableError(_refusal(shown, exc)) from exc
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            reason = str(exc) or type(exc).__name__
            raise DaemonUnreachableError(f"cannot reach the daemon at {shown}: {reason}") from exc
        try:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            data = json.loads(raw)
            hello = cls._parse(data)
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            await ws.close()
            reason = str(exc) or type(exc).__name__
            raise DaemonUnreachableError(f"cannot reach the daemon at {shown}: {reason}") from exc
        except ValueError as exc:  # not JSON, or not a protocol message (pydantic's errors are ValueErrors)
            await ws.close()
            raise DaemonUnreachableError(f"{shown} does not speak the musicmed-stream protocol") from exc
        if data.get("type") != "hello":
            await ws.close()
            raise DaemonUnreachableError(f"{shown} did not greet with hello (got {data.get('type')!r})")
        client = cls(ws, hello, url)
        if data.get("auth_required"):
            if token is None:
                await client.close()
                raise ControlError(
                    "unauthorized", "the daemon requires a token: pass --token or set MUSICMED_CONTROL_TOKEN"
                )
            try:
                await client.request("auth", token=token)
            except BaseException:
                await client.close()
                raise
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        error: Exception | None = None
        try:
            async for raw in self.ws:
                data = json.loads(raw)
                message = self._parse(data)
                kind = data["type"]
                if kind == "event":
                    self._events.put_nowait(message)
                elif kind in ("ok", "error"):
                    self._resolve(data, message)
        except ConnectionClosed:
            pass
        except ValueError as exc:
            error = DaemonUnreachableError(f"the daemon sent an invalid message: {exc}")
        finally:
            code, reason = self.ws.close_code, self.ws.close_reason
            why = f"{code} {reason}".strip() if code is not None else "no close frame"
            lost = error or DaemonUnreachableError(f"the connection to {self.url} closed ({why})")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()
            self._events.put_nowait(None)

    def _resolve(self, data: dict[str, Any], message: Any) -> None:
        msg_id = data.get("id")
        future = self._pending.pop(msg_id, None) if isinstance(msg_id, str | int) else None
        if future is None or future.done():
            if data["type"] == "error":
                self._unmatched.put_nowait(message)
            return
        if data["type"] == "error":
            future.set_exception(ControlError(str(data.get("code")), str(data.get("message"))))
        else:
            result = data.get("result")
            future.set_result(result if isinstance(result, dict) else {})

    async def send_raw(self, data: str | bytes) -> None:
        """Send anything (tests use it for malformed messages); replies without id: :meth:`next_error`."""
        await self.ws.send(data)

    async def next_error(self, timeout: float = 5.0) -> Any:
        """The next ``error`` reply that matched no pending command (e.g. one to :meth:`send_raw`)."""
        return await asyncio.wait_for(self._unmatched.get(), timeout)

    async def request(self, type: str, *, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send command ``type`` with ``fields`` (sent as given: ``None`` is JSON ``null``); return
        the ``ok`` reply's ``result``.

        Raises
        ------
        ControlError
            If the daemon replies with an error (or the typed client finds the command invalid:
            code ``bad_message``).
        DaemonUnreachableError
            If the connection closes first, or no reply comes within ``timeout`` seconds.
        """
        self._check_command(type, fields)
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self.ws.send(json.dumps({"type": type, "id": msg_id, **fields}))
        except ConnectionClosed as exc:
            self._pending.pop(msg_id, None)
            raise DaemonUnreachableError(f"the connection to {self.url} is closed") from exc
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            why = f"no reply to {type!r} from {self.url} within {timeout:g} s"
            raise DaemonUnreachableError(why) from None

    # --- one method per command --------------------------------------------------------------

    async def start(self, start: Any, target: Any, **options: Any) -> dict[str, Any]:
        """Start a session; ``options``: minutes, clip_seconds, path, temperature, seed, replace.
        ``start`` None: left out (a preset's session from where the listener is)."""
        states = {"to": target} if start is None else {"from": start, "to": target}
        return await self.request("start", **states, **options)

    async def set_target(self, target: str | tuple[float, float]) -> dict[str, Any]:
        """Re-target: a name/mood/"v,a" string, or a ``(valence, arousal)`` pair."""
        if isinstance(target, tuple):
            return await self.request("set_target", target={"valence": target[0], "arousal": target[1]})
        return await self.request("set_target", target=target)

    async def pause(self) -> dict[str, Any]:
        return await self.request("pause")

    async def resume(self) -> dict[str, Any]:
        return await self.request("resume")

    async def skip(self) -> dict[str, Any]:
        return await self.request("skip")

    async def stop(self, fade_seconds: float | None = None) -> dict[str, Any]:
        return await self.request("stop", fade_seconds=fade_seconds)

    async def volume(self, volume: float) -> dict[str, Any]:
        return await self.request("volume", volume=volume)

    async def status(self, plan: bool = False) -> dict[str, Any]:
        """The daemon's status; with ``plan``, the running session's whole plan too."""
        return await self.request("status", plan=True) if plan else await self.request("status")

    async def extend(self, minutes: float) -> dict[str, Any]:
        return await self.request("extend", minutes=minutes)

    async def sleep_timer(self, minutes: float | None) -> dict[str, Any]:
        """Fade out after ``minutes`` more of the session; ``None`` cancels the timer."""
        return await self.request("sleep_timer", minutes=minutes)

    async def checkin(self, when: str, valence: float, arousal: float) -> dict[str, Any]:
        return await self.request("checkin", when=when, valence=valence, arousal=arousal)

    async def history(self, limit: int = 20) -> dict[str, Any]:
        return await self.request("history", limit=limit)

    async def subscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        return await self.request("subscribe", events=events)

    async def unsubscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        return await self.request("unsubscribe", events=events)

    # --- events ------------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> Any:
        """The next event; raises ``DaemonUnreachableError`` if the connection closed."""
        event = await asyncio.wait_for(self._events.get(), timeout)
        if event is None:
            self._events.put_nowait(None)  # keep reporting the close to later callers
            raise DaemonUnreachableError(f"the connection to {self.url} closed")
        return event

    @staticmethod
    def _event_type(event: Any) -> str:
        return event["event"]

    async def wait_for_event(self, kind: str, timeout: float = 30.0, where: Any = None) -> Any:
        """Skip events until one of type ``kind`` (and for which ``where(event)`` is true) arrives."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if self._event_type(event) == kind and (where is None or where(event)):
                    return event

    async def events(self) -> AsyncIterator[Any]:
        """Events as they come, until the connection closes."""
        while True:
            try:
                yield await self.next_event()
            except DaemonUnreachableError:
                return


class ControlClient(Connection):
    """A :class:`Connection` that checks what it sends and receives against the protocol models:
    a bad command raises :class:`ControlError` (``bad_message``) without leaving this process,
    ``hello`` is a ``HelloMessage`` and events are the protocol's typed event messages."""

    @classmethod
    def _parse(cls, data: Any) -> Any:
        from musicmed_stream.control import protocol as p

        return p.parse_server_message(data)  # pydantic's ValidationError is a ValueError

    def _check_command(self, type: str, fields: dict[str, Any]) -> None:
        build_command(type, **fields)

    @staticmethod
    def _event_type(event: Any) -> str:
        return event.event


def build_command(type: str, **fields: Any) -> Any:
    """Validate a command before it is sent; ``ControlError`` (``bad_message``) names a bad field."""
    import pydantic

    from musicmed_stream.control import protocol as p

    try:
        return p.parse_client_message({"type": type, **fields})
    except pydantic.ValidationError as exc:
        raise ControlError("bad_message", f"invalid {type!r}: {p.format_validation_error(exc)}") from None
