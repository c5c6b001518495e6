"""The control server against a small in-test controller: protocol handling, security, events, page."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web.fake_controller import FakeController
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from musicmed_stream.control.client import ControlClient, ControlError, DaemonUnreachableError
from musicmed_stream.control.server import ControlServer, start_control_server
from musicmed_stream.control.settings import ControlSettings
from musicmed_stream.emotion import VA, load_vocabulary
from musicmed_stream.errors import ConfigError, MusicMedError

Scenario = Callable[[ControlServer, FakeController], Awaitable[None]]


def run_with_server(scenario: Scenario, **options: Any) -> FakeController:
    """Start a server on a free port for ``scenario``, always closing it; returns the controller."""
    controller = FakeController()

    async def main() -> None:
        server = await start_control_server(controller, ControlSettings.from_dict({"port": 0, **options}))
        try:
            await asyncio.wait_for(scenario(server, controller), 20)
        finally:
            await server.close()

    asyncio.run(main())
    return controller


async def raw_exchange(ws: Any, message: Any) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    return json.loads(await ws.recv())


def test_hello_then_commands_reach_the_controller() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with await ControlClient.connect(server.url) as client:
            assert client.hello.protocol_version == 1
            assert client.hello.auth_required is False
            result = await client.start("sad", "calm", minutes=2, clip_seconds=4, seed=7, path="arc")
            assert result["session_id"] == "s1"
            await client.set_target((0.5, -0.25))
            await client.set_target("happy")
            await client.volume(0.3)
            await client.pause()
            assert (await client.status())["state"] == "paused"
            await client.resume()
            await client.skip()
            await client.stop(fade_seconds=1.5)

    ctl = run_with_server(scenario)
    assert ctl.names() == "start_session set_target set_target set_volume pause resume skip stop"
    options = ctl.calls[0][1]
    assert (options.start, options.target, options.minutes, options.clip_seconds) == ("sad", "calm", 2, 4)
    assert (options.seed, options.path, options.temperature) == (7, "arc", None)
    assert ctl.calls[1][1] == VA(0.5, -0.25)  # a point reaches the controller as a point
    assert ctl.calls[2][1] == "happy"
    assert ctl.calls[7][1] == 1.5
    assert ctl.volume == 0.3


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        ("{not json", "bad_json", "not valid JSON"),
        ("[1, 2]", "bad_json", "JSON object"),
        (b"\x00\x01", "bad_json", "binary"),
        ({"id": 1}, "bad_message", "missing field 'type'"),
        ({"id": 2, "type": "dance"}, "unknown_command", "'dance'"),
        ({"id": 3, "type": "volume", "volume": 1.5}, "bad_message", "volume"),
        ({"id": 4, "type": "start", "from": "sad"}, "bad_message", "to"),
        ({"id": 5, "type": "set_target", "target": {"valence": 2, "arousal": 0}}, "bad_message", "valence"),
        ({"id": 6, "type": "status", "extra": True}, "bad_message", "extra"),
        ({"id": 7, "type": "start", "from": "sad", "to": "calm", "minutes": -1}, "bad_message", "minutes"),
        ({"id": 8, "type": "set_target", "target": "nowhere"}, "rejected", "unknown emotion"),
    ],
)
def test_bad_messages_get_an_error_reply_and_the_connection_carries_on(
    message: Any, code: str, words: str
) -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await raw_exchange(ws, {"type": "start", "from": "sad", "to": "calm"})
            reply = await raw_exchange(ws, message)
            assert reply["type"] == "error" and reply["code"] == code, reply
            assert words in reply["message"]
            if isinstance(message, dict) and "id" in message:
                assert reply["id"] == message["id"]
            status = await raw_exchange(ws, {"type": "status", "id": "after"})
            assert status["type"] == "ok" and status["id"] == "after"
            assert status["result"]["state"] == "playing"

    ctl = run_with_server(scenario)
    assert ctl.volume == 1.0  # a rejected volume never reached the controller


def test_controller_errors_become_error_replies() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with await ControlClient.connect(server.url) as client:
            with pytest.raises(ControlError, match="no session is running") as info:
                await client.pause()
            assert info.value.code == "rejected"
            ctl.fail_next = RuntimeError("boom")
            with pytest.raises(ControlError, match="RuntimeError: boom") as info:
                await client.skip()
            assert info.value.code == "internal"
            assert (await client.status())["state"] == "idle"

    run_with_server(scenario)


def test_events_follow_subscriptions_and_are_released_on_disconnect() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with await ControlClient.connect(server.url) as client:
            assert (await client.subscribe(["plan_changed", "volume"]))["events"] == [
                "plan_changed",
                "volume",
            ]
            assert len(ctl.queues) == 1
            await client.start("sad", "calm")  # session_started, segment_started: not subscribed
            await client.set_target("happy")
            event = await client.next_event(timeout=5)
            assert event.event == "plan_changed"
            assert event.data.plan["target"] == {"valence": 0.8, "arousal": 0.3}
            await client.unsubscribe(["plan_changed"])
            await client.set_target("tense")
            await client.volume(0.5)
            event = await client.next_event(timeout=5)
            assert (event.event, event.data.model_dump()) == ("volume", {"volume": 0.5})
            await client.unsubscribe()
            assert ctl.queues == []
            await client.subscribe()
        for _ in range(50):
            if not ctl.queues:
                break
            await asyncio.sleep(0.02)
        assert ctl.queues == []

    run_with_server(scenario)


def test_oversized_message_closes_with_1009_and_the_server_keeps_serving() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with await ControlClient.connect(server.url) as client:
            await client.start("sad", "calm")
        async with connect(server.url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "status", "pad": "x" * 5000}))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009
        async with await ControlClient.connect(server.url) as client:
            assert (await client.status())["state"] == "playing"

    run_with_server(scenario, max_message_bytes=1024)


def test_rate_limit_replies_then_disconnects_sustained_abuse() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url) as ws:
            await ws.recv()
            replies = []
            try:
                for i in range(200):
                    await ws.send(json.dumps({"type": "status", "id": i}))
                async for raw in ws:
                    replies.append(json.loads(raw))
            except ConnectionClosed:
                pass
            codes = [r.get("code") for r in replies if r["type"] == "error"]
            assert "rate_limited" in codes
            assert sum(r["type"] == "ok" for r in replies) <= 10 + 5  # the burst, plus what refilled
            assert ws.close_code == 1008
        # a polite client after a pause is served again
        async with await ControlClient.connect(server.url) as client:
            for _ in range(5):
                await client.status()

    run_with_server(scenario, rate_limit_per_second=5)


def test_rate_limited_client_recovers_after_waiting() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with await ControlClient.connect(server.url) as client:
            results = await asyncio.gather(*(client.status() for _ in range(12)), return_exceptions=True)
            limited = [r for r in results if isinstance(r, ControlError)]
            assert limited and all(e.code == "rate_limited" for e in limited)
            await asyncio.sleep(1.0)
            assert (await client.status())["state"] == "idle"

    run_with_server(scenario, rate_limit_per_second=4)


def test_token_is_required_and_checked() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url) as ws:
            hello = json.loads(await ws.recv())
            assert hello["auth_required"] is True
            reply = await raw_exchange(ws, {"type": "start", "from": "sad", "to": "calm", "id": 1})
            assert reply["code"] == "unauthorized"
            reply = await raw_exchange(ws, {"type": "auth", "token": "s3cret", "id": 2})
            assert reply["type"] == "ok" and reply["result"]["authenticated"] is True
            reply = await raw_exchange(ws, {"type": "status", "id": 3})
            assert reply["type"] == "ok"
        async with connect(server.url) as ws:
            await ws.recv()
            reply = await raw_exchange(ws, {"type": "auth", "token": "guess", "id": 1})
            assert reply["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1008
        with pytest.raises(ControlError, match="requires a token"):
            await ControlClient.connect(server.url)
        with pytest.raises(ControlError, match="wrong token"):
            await ControlClient.connect(server.url, token="guess")
        async with connect(server.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            assert json.loads(await ws.recv())["auth_required"] is False
        async with connect(server.url + "?token=s3cret") as ws:
            assert json.loads(await ws.recv())["auth_required"] is False
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url, additional_headers={"Authorization": "Bearer nope"}):
                pass
        assert info.value.response.status_code == 401
        async with await ControlClient.connect(server.url, token="s3cret") as client:
            await client.start("sad", "calm")

    ctl = run_with_server(scenario, token="s3cret")
    assert ctl.names() == "start_session"  # the unauthorized start never arrived


def test_non_loopback_bind_needs_a_token() -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="token"):
            await start_control_server(FakeController(), ControlSettings.from_dict({"host": "0.0.0.0"}))

    asyncio.run(main())
    assert ControlSettings(host="0.0.0.0", token="t").token_matches("t")
    with pytest.raises(ConfigError, match="blank"):
        ControlSettings.from_dict({"token": "  "})
    with pytest.raises(ConfigError, match="allowed_origins"):
        ControlSettings.from_dict({"allowed_origins": ["kiosk.local"]})


def test_browser_origins_are_checked() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        own = f"http://127.0.0.1:{server.port}"
        for origin in (own, "http://kiosk.local:9000"):
            async with connect(server.url, origin=origin) as ws:  # type: ignore[arg-type]
                assert json.loads(await ws.recv())["type"] == "hello"
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403

    run_with_server(scenario, allowed_origins=["http://kiosk.local:9000/"])
    settings = ControlSettings()
    # DNS rebinding: the attacker's page is same-origin with the Host it made up, but not a local name.
    assert not settings.origin_allowed("http://evil.example:8765")
    assert settings.origin_allowed("http://localhost:8765")
    assert not settings.origin_allowed("http://localhost:8766"), "another port is another server"
    assert settings.origin_allowed("http://127.0.0.1:9000", port=9000)
    assert settings.origin_allowed(None)
    # Reachable from outside, it still answers only to its own names (tests/test_control_security.py).
    assert not ControlSettings(host="0.0.0.0", token="t").origin_allowed("http://rebound.invalid:8765")


def test_page_and_static_files_are_served_on_the_same_port() -> None:
    def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        status, headers, body = await asyncio.to_thread(fetch, server.page_url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'<canvas id="circumplex"' in body and b"app.js" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, headers, body = await asyncio.to_thread(fetch, server.page_url + "app.js")
        assert status == 200 and "javascript" in headers["Content-Type"] and b"set_target" in body
        status, headers, _ = await asyncio.to_thread(fetch, server.page_url + "style.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        status, headers, body = await asyncio.to_thread(fetch, server.page_url + "emotions.json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        vocabulary = {e.name: (e.valence, e.arousal) for e in load_vocabulary()}
        assert {e["name"]: (e["valence"], e["arousal"]) for e in json.loads(body)} == vocabulary
        status, _, _ = await asyncio.to_thread(fetch, server.page_url + "../pyproject.toml")
        assert status == 404
        async with await ControlClient.connect(server.url) as client:  # the websocket still works
            assert (await client.status())["state"] == "idle"

    run_with_server(scenario)


def test_closing_the_server_disconnects_clients() -> None:
    async def main() -> None:
        ctl = FakeController()
        server = await start_control_server(ctl, ControlSettings(port=0))
        client = await ControlClient.connect(server.url)
        await client.subscribe()
        await server.close()
        with pytest.raises(DaemonUnreachableError):
            await client.next_event(timeout=5)
        with pytest.raises(DaemonUnreachableError):
            await client.status()
        await client.close()
        assert ctl.queues == []

    asyncio.run(main())


def test_unreachable_daemon_is_a_clear_error() -> None:
    async def main() -> None:
        server = await start_control_server(FakeController(), ControlSettings(port=0))
        url = server.url
        await server.close()
        with pytest.raises(DaemonUnreachableError, match="cannot reach the daemon"):
            await ControlClient.connect(url, timeout=2)
        with pytest.raises(DaemonUnreachableError, match="invalid daemon URL"):
            await ControlClient.connect("http://nowhere", timeout=2)

    asyncio.run(main())
    assert issubclass(DaemonUnreachableError, MusicMedError)


HOSTILE = [
    ("[" * 300 + "]" * 300, "bad_json", "nested deeper"),
    ('{"type": "status", "x": ' + "[" * 5000 + "]" * 5000 + "}", "bad_json", "nested deeper"),
    ('{"type": "stop", "fade_seconds": -1e999}', "bad_message", "fade_seconds"),
    ('{"type": "status", "id": ' + "9" * 5000 + "}", "bad_json", "not valid JSON"),
    ('{"type": "\\udcff"}', "bad_json", "Unicode"),
    ('{"type": "start", "from": "\\ud800", "to": "calm"}', "bad_json", "Unicode"),
    ('{"type": "start", "from": "sad", "to": "calm", "clip_seconds": "1"}', "bad_message", "clip_seconds"),
    ('{"type": "start", "from": "sad", "to": "calm", "seed": 1e-400}', "bad_message", "seed"),
    ('{"type": "start", "from": "sad", "to": "calm", "seed": -0.0}', "bad_message", "seed"),
    ('{"type": "status", "id": 1e309}', "bad_message", "id"),
    ('{"type": "status", "id": true}', "bad_message", "id"),
    ('{"type": "volume", "volume": true}', "bad_message", "volume"),
    ('{"type": "start", "from": "sad", "to": "calm", "temperature": "1"}', "bad_message", "temperature"),
    ('{"type": "set_target", "target": {"valence": "0.1", "arousal": 0}}', "bad_message", "valence"),
    ('{"type": ["start"]}', "unknown_command", "unknown command"),
    ('{"type": "\\u2603"}', "unknown_command", "unknown command"),
]


@pytest.mark.parametrize(("raw", "code", "words"), HOSTILE)
def test_hostile_messages_are_answered_and_change_nothing(raw: str, code: str, words: str) -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url, max_size=2**22) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            reply = await raw_exchange(ws, raw)
            assert reply["type"] == "error" and reply["code"] == code, reply
            assert words in reply["message"]
            status = await raw_exchange(ws, {"type": "status", "id": "after"})
            assert status["type"] == "ok" and status["id"] == "after", "the connection carries on"

    ctl = run_with_server(scenario, max_message_bytes=2**20)
    assert ctl.names() == "", "nothing reached the controller"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    message=st.dictionaries(
        st.sampled_from(["type", "id", "from", "to", "target", "volume", "seed", "events", "x"]),
        json_values | st.sampled_from(["start", "set_target", "volume", "status", "subscribe"]),
        max_size=5,
    )
)
def test_any_json_object_gets_exactly_one_reply(message: dict[str, Any]) -> None:
    raw = json.dumps(message)  # NaN and infinities as JSON's non-standard tokens, which Python reads

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            reply = await raw_exchange(ws, raw)
            assert reply["type"] in ("ok", "error"), reply
            status = await raw_exchange(ws, {"type": "status", "id": "after"})
            assert status["type"] == "ok" and status["id"] == "after"

    run_with_server(scenario, rate_limit_per_second=1000.0)


def test_a_subscriber_that_stops_reading_is_disconnected_not_buffered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def warned() -> bool:
        return any("does not read" in r.getMessage() for r in caplog.records)

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url, max_queue=1) as slow, await ControlClient.connect(server.url) as good:
            await slow.send(json.dumps({"type": "subscribe", "id": 1}))
            await good.start("sad", "calm")
            # ~0.5 MB an event, random so that permessage-deflate cannot shrink it
            big = {"segments": [{"index": i, "prompt": os.urandom(100).hex()} for i in range(2000)]}
            for _ in range(200):  # far more than the socket buffers hold; the slow client reads none
                ctl.emit("plan_changed", from_index=1, plan=big, reason="target")
                await asyncio.sleep(0.02)
                if warned():
                    break
            assert warned(), "the server gave up on the client that does not read"
            assert (await good.status())["state"] == "playing", "the others are served on"
            slow.transport.abort()

    with caplog.at_level("WARNING", logger="musicmed_stream.control.server"):
        run_with_server(scenario, send_timeout_seconds=0.5)
