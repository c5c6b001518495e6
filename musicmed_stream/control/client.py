"""A small asyncio client for the control protocol (used by ``ctl``, the tests and benchmarks).

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
from typing import Any

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from musicmed_stream.control import protocol as p
from musicmed_stream.errors import MusicMedError

DEFAULT_URL = "ws://127.0.0.1:8765/ws"


class ControlError(MusicMedError):
    """The daemon answered a command with an ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code


class DaemonUnreachableError(MusicMedError, ConnectionError):
    """No daemon answers at the URL, it refused the connection, or the connection was lost."""


def build_command(type: str, **fields: Any) -> p.ClientMessage:
    """Validate a command before it is sent; ``ControlError`` (``bad_message``) names a bad field."""
    try:
        return p.parse_client_message({"type": type, **fields})
    except pydantic.ValidationError as exc:
        raise ControlError("bad_message", f"invalid {type!r}: {p.format_validation_error(exc)}") from None


class ControlClient:
    """One websocket connection to the daemon; replies are matched to commands by ``id``.

    Use :meth:`connect` to make one. Events (after :meth:`subscribe`) are read with :meth:`events`
    or :meth:`next_event`.
    """

    def __init__(self, ws: ClientConnection, hello: p.HelloMessage, url: str) -> None:
        self.ws = ws
        self.hello = hello
        self.url = url
        self._ids = itertools.count(1)
        self._pending: dict[str | int, asyncio.Future[p.OkReply]] = {}
        self._events: asyncio.Queue[p.BaseEventMessage | None] = asyncio.Queue()
        self._unmatched: asyncio.Queue[p.ErrorReply] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="control-client-reader")

    @classmethod
    async def connect(
        cls, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 5.0, **ws_options: Any
    ) -> ControlClient:
        """Connect, read the server's ``hello`` and authenticate with ``token`` if it asks for one.

        Raises
        ------
        DaemonUnreachableError
            If nothing listens at ``url`` or the server refuses the handshake.
        ControlError
            If the token is missing or wrong.
        """
        try:
            ws = await asyncio.wait_for(connect(url, open_timeout=timeout, **ws_options), timeout)
            hello = p.parse_server_message(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        except InvalidURI as exc:
            raise DaemonUnreachableError(f"invalid daemon URL {url!r}: {exc}") from exc
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip()
            raise DaemonUnreachableError(
                f"the daemon at {url} refused the connection: HTTP {exc.response.status_code} {body}"
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            reason = str(exc) or type(exc).__name__
            raise DaemonUnreachableError(f"cannot reach the daemon at {url}: {reason}") from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise DaemonUnreachableError(f"{url} does not speak the musicmed-stream protocol") from exc
        if not isinstance(hello, p.HelloMessage):
            await ws.close()
            raise DaemonUnreachableError(f"{url} did not greet with hello (got {hello.type!r})")
        client = cls(ws, hello, url)
        if hello.auth_required:
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

    async def __aenter__(self) -> ControlClient:
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
                message = p.parse_server_message(json.loads(raw))
                if isinstance(message, p.BaseEventMessage):
                    self._events.put_nowait(message)
                elif isinstance(message, p.OkReply | p.ErrorReply):
                    self._resolve(message)
        except ConnectionClosed:
            pass
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
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

    def _resolve(self, message: p.OkReply | p.ErrorReply) -> None:
        future = self._pending.pop(message.id, None) if message.id is not None else None
        if future is None or future.done():
            if isinstance(message, p.ErrorReply):
                self._unmatched.put_nowait(message)
            return
        if isinstance(message, p.ErrorReply):
            future.set_exception(ControlError(message.code, message.message))
        else:
            future.set_result(message)

    async def send_raw(self, data: str | bytes) -> None:
        """Send anything (tests use it for malformed messages); replies without id: :meth:`next_error`."""
        await self.ws.send(data)

    async def next_error(self, timeout: float = 5.0) -> p.ErrorReply:
        """The next ``error`` reply that matched no pending command (e.g. one to :meth:`send_raw`)."""
        return await asyncio.wait_for(self._unmatched.get(), timeout)

    async def request(self, type: str, *, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send command ``type`` with ``fields``; return the ``ok`` reply's ``result``.

        The command is validated against the protocol before it is sent, so most mistakes never
        leave this process.

        Raises
        ------
        ControlError
            If the daemon replies with an error, or the command is invalid (code ``bad_message``).
        DaemonUnreachableError
            If the connection closes first.
        """
        msg_id = next(self._ids)
        command = build_command(type, id=msg_id, **fields)
        future: asyncio.Future[p.OkReply] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self.ws.send(p.dump(command))
        except ConnectionClosed as exc:
            self._pending.pop(msg_id, None)
            raise DaemonUnreachableError(f"the connection to {self.url} is closed") from exc
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            why = f"no reply to {type!r} from {self.url} within {timeout:g} s"
            raise DaemonUnreachableError(why) from None
        return reply.result

    # --- one method per command --------------------------------------------------------------

    async def start(self, start: str, target: str, **options: Any) -> dict[str, Any]:
        """Start a session; ``options``: minutes, clip_seconds, path, temperature, seed."""
        return await self.request("start", **{"from": start, "to": target}, **options)

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

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def subscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        return await self.request("subscribe", events=events)

    async def unsubscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        return await self.request("unsubscribe", events=events)

    # --- events ------------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> p.BaseEventMessage:
        """The next event; raises ``DaemonUnreachableError`` if the connection closed."""
        event = await asyncio.wait_for(self._events.get(), timeout)
        if event is None:
            self._events.put_nowait(None)  # keep reporting the close to later callers
            raise DaemonUnreachableError(f"the connection to {self.url} closed")
        return event

    async def wait_for_event(self, kind: str, timeout: float = 30.0, where: Any = None) -> p.BaseEventMessage:
        """Skip events until one of type ``kind`` (and for which ``where(event)`` is true) arrives."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if event.event == kind and (where is None or where(event)):
                    return event

    async def events(self) -> AsyncIterator[p.BaseEventMessage]:
        """Events as they come, until the connection closes."""
        while True:
            try:
                yield await self.next_event()
            except DaemonUnreachableError:
                return
