"""The control channel's secrets and files, against the real server: the token never reaches a log,
wrong tokens are throttled per address, browser origins are checked against the names this server
answers to (not the ``Host`` a request claims), and the page can be made to need the token."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from test_control_server import raw_exchange, run_with_server
from web.cdp import Chromium
from web.fake_controller import FakeController
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from musicmed_stream.control import redact
from musicmed_stream.control.client import ControlClient, ControlError
from musicmed_stream.control.server import PAGE_COOKIE, ControlServer
from musicmed_stream.control.settings import ControlSettings
from musicmed_stream.errors import ConfigError

TOKEN = "Tok-8f3a9c21-do-not-log"


async def http_get(
    port: int, path: str = "/ws", headers: dict[str, str] | None = None, *, upgrade: bool | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request to 127.0.0.1:``port`` with exactly ``headers`` (``Host`` included,
    which a websocket client would not let a test make up); a websocket upgrade for ``/ws``.
    Returns the status, the headers (names in lower case) and the body."""
    upgrade = path.startswith("/ws") if upgrade is None else upgrade
    sent = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if upgrade:
        sent |= {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in sent.items()), "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        received = {}
        for line in head[1:]:
            if line:
                key, _, value = line.partition(":")
                received[key.strip().lower()] = value.strip()
        length = int(received.get("content-length", "0"))
        body = await reader.readexactly(length) if status != 101 and length else b""
        return status, received, body
    finally:
        writer.close()


# --- 1. the token never reaches a log -----------------------------------------------------------


def test_the_token_never_appears_in_any_log_at_any_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("websockets", "websockets.server", "websockets.client", "musicmed_stream"):
        caplog.set_level(logging.DEBUG, logger=name)  # undoing a WARNING configure_logging may have set

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        async with connect(server.url + f"?token={TOKEN}") as ws:
            assert json.loads(await ws.recv())["auth_required"] is False
            reply = await raw_exchange(ws, {"type": "auth", "token": TOKEN, "id": 1})
            assert reply["type"] == "ok"
        async with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            await ws.recv()
            reply = await raw_exchange(ws, {"type": "hello", "token": TOKEN, "id": "h"})
            assert reply["type"] == "ok"
        for url, headers in (
            (server.url + "?token=guess-one&x=1", {}),
            (server.url, {"Authorization": "Bearer guess-two"}),
        ):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, additional_headers=headers):
                    pass
            assert info.value.response.status_code == 401
        async with connect(server.url) as ws:
            await ws.recv()
            reply = await raw_exchange(ws, {"type": "auth", "token": "guess-three"})
            assert reply["code"] == "unauthorized"
        async with await ControlClient.connect(server.url, token=TOKEN) as client:
            await client.status()
        # A message longer than websockets shows in full: the token sits in the elided middle.
        async with connect(server.url) as ws:
            await ws.recv()
            await raw_exchange(ws, {"type": "auth", "id": "x" * 300, "token": TOKEN})

    run_with_server(scenario, token=TOKEN)

    messages = [record.getMessage() for record in caplog.records]
    assert any("GET /ws?token=*** HTTP/1.1" in m for m in messages), "the request line was logged, masked"
    assert any(m.startswith("< Authorization: ***") for m in messages), "so was the header"
    assert any('"token": "***"' in m for m in messages), "and the auth frames"
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    for record in caplog.records:
        for text in (record.getMessage(), formatter.format(record), caplog.text):
            for secret in (TOKEN, "guess-one", "guess-two", "guess-three"):
                assert secret not in text, (record.name, text)


def test_the_redactor_masks_what_carries_a_token() -> None:
    redactor = redact.TokenRedactor([TOKEN])
    cases = {
        "GET /ws?token=abc&x=1 HTTP/1.1": "GET /ws?token=***&x=1 HTTP/1.1",
        "ws://h/ws?x=1&TOKEN=abc#f": "ws://h/ws?x=1&TOKEN=***#f",
        "Authorization: Bearer abc def": "Authorization: ***",
        "{'Authorization': 'Bearer abc', 'Host': 'h'}": "{'Authorization': '***', 'Host': 'h'}",
        '{"type": "auth", "token": "a\\"b", "id": 2}': '{"type": "auth", "token": "***", "id": 2}',
        "{'token': 'abc'}": "{'token': '***'}",
        f"said {TOKEN} twice: {TOKEN}": "said *** twice: ***",
        "no secret here: token bucket, authorized": "no secret here: token bucket, authorized",
    }
    for text, expected in cases.items():
        assert redactor.redact(text) == expected, text
    assert redact.TokenRedactor(["a b/c"]).redact("x a%20b%2Fc a+b%2Fc") == "x *** ***"
    short = redact.TokenRedactor(["ab"])
    assert short.redact("tab") == "tab", "a literal too short to mask is left to the patterns"


def test_a_long_frame_is_masked_before_websockets_elides_its_middle() -> None:
    redactor = redact.TokenRedactor([TOKEN])
    payload = json.dumps({"type": "auth", "id": "x" * 200, "token": TOKEN + "z" * 200}).encode()
    for frame in (Frame(Opcode.TEXT, payload), Frame(Opcode.BINARY, b"\xff" + TOKEN.encode())):
        record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, "< %s", (frame,), None)
        assert redactor.filter(record)
        assert TOKEN[:8] not in record.getMessage() and "zzzz" not in record.getMessage()
    record = logging.LogRecord(
        "websockets.server",
        logging.DEBUG,
        __file__,
        1,
        "< %s",
        (Frame(Opcode.TEXT, payload, fin=False),),
        None,
    )
    redactor.filter(record)
    assert "(fragment)" in record.getMessage() and TOKEN[:8] not in record.getMessage()


def test_exception_text_is_masked_too() -> None:
    redactor = redact.TokenRedactor([TOKEN])
    try:
        raise ValueError(f"bad url ws://h/ws?token={TOKEN}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    redactor.filter(record)
    text = logging.Formatter().format(record)
    assert "token=***" in text and TOKEN not in text


def test_configure_logging_masks_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    from musicmed_stream.service.runner import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("websockets").level)
    redact.REDACTOR.add_secret(TOKEN)
    try:
        configure_logging("info")
        assert all(redact.REDACTOR in handler.filters for handler in root.handlers)
        logging.getLogger("embedder.anything").warning("proxying GET /ws?token=%s for %s", "guess", TOKEN)
        err = capsys.readouterr().err
        assert "proxying GET /ws?token=*** for ***" in err and TOKEN not in err
    finally:
        redact.REDACTOR.discard_secret(TOKEN)
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("websockets").setLevel(saved[2])


# --- 2. wrong tokens are throttled per address ----------------------------------------------------


def test_guessing_tokens_backs_off_even_on_loopback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[str] = []
    token_matches = ControlSettings.token_matches

    def counting(self: ControlSettings, offered: str | None) -> bool:
        compared.append(str(offered))
        return token_matches(self, offered)

    monkeypatch.setattr(ControlSettings, "token_matches", counting)

    def backoff_warnings() -> int:
        return sum("wrong control tokens in a row" in r.getMessage() for r in caplog.records)

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        async with connect(server.url) as early:  # opened before the guessing starts
            await early.recv()
            for i in range(4):  # three free ones, then the fourth starts a backoff
                status, _, _ = await http_get(server.port, headers=bearer(f"guess-{i}"))
                assert status == 401, i
            assert backoff_warnings() == 1
            before = len(compared)
            for headers in (bearer(TOKEN), bearer("guess-4"), {}):
                status, headers_back, body = await http_get(server.port, headers=headers)
                assert status == 429 and headers_back["retry-after"] == "1", body
            assert len(compared) == before, "a backing-off address's tokens are not even compared"
            # The auth message of a connection opened before is refused the same way.
            reply = await raw_exchange(early, {"type": "auth", "token": TOKEN, "id": 1})
            assert reply["code"] == "rate_limited" and "retry in 1 s" in reply["message"]
            with pytest.raises(ConnectionClosed):
                await early.recv()
            assert early.close_code == 1013
        assert len(compared) == before and backoff_warnings() == 1, "one warning per backoff"
        await asyncio.sleep(1.1)
        status, _, _ = await http_get(server.port, headers=bearer(TOKEN))
        assert status == 101, "the right token after the backoff"
        # ... which cleared the count: a wrong token is free again, and the right one still works.
        assert (await http_get(server.port, headers=bearer("guess-5")))[0] == 401
        async with await ControlClient.connect(server.url, token=TOKEN) as client:
            assert (await client.status())["state"] == "idle"
        assert backoff_warnings() == 1

    with caplog.at_level(logging.INFO, logger="musicmed_stream.control.server"):
        run_with_server(scenario, token=TOKEN, auth_backoff_seconds=1.0)


def test_wrong_auth_messages_start_the_backoff_and_the_client_says_so() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        for i in range(4):
            with pytest.raises(ControlError, match="wrong token"):
                await ControlClient.connect(server.url, token=f"guess-{i}")
        with pytest.raises(Exception, match="429") as info:
            await ControlClient.connect(server.url, token=TOKEN)
        assert "retry in" in str(info.value)

    ctl = run_with_server(scenario, token=TOKEN, auth_backoff_seconds=5.0)
    assert ctl.names() == ""


def test_backoff_setting_is_bounded() -> None:
    assert ControlSettings().auth_backoff_seconds == 1.0
    for bad in (0.0, -1.0, 61.0, float("inf")):
        with pytest.raises(ConfigError, match="auth_backoff_seconds"):
            ControlSettings.from_dict({"auth_backoff_seconds": bad})


# --- 3. origins: the names this server answers to, not the Host a request claims ------------------


def test_origins_on_a_non_loopback_bind_are_this_machines_names() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        port = server.port

        async def status_for(origin: str, host: str) -> int:
            return (await http_get(port, headers={"Origin": origin, "Host": host}))[0]

        # DNS rebinding: the attacker's page is same-origin with the name it made up.
        assert await status_for(f"http://evil.example:{port}", f"evil.example:{port}") == 403
        assert await status_for(f"http://evil.example:{port}", f"127.0.0.1:{port}") == 403
        own = socket.gethostname()
        assert await status_for(f"http://{own}:{port}", f"{own}:{port}") == 101
        assert await status_for(f"http://{own.upper()}:{port}/", f"{own}:{port}") == 101
        assert await status_for(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}") == 101
        assert await status_for(f"http://[::1]:{port}", f"[::1]:{port}") == 101
        assert await status_for(f"http://{own}:{port + 1}", f"{own}:{port + 1}") == 403, "another port"
        assert await status_for("http://kiosk.example:9000", f"127.0.0.1:{port}") == 101, "configured"
        assert await status_for("http://kiosk.example:9001", f"127.0.0.1:{port}") == 403
        assert await status_for("null", f"127.0.0.1:{port}") == 403

    run_with_server(scenario, host="0.0.0.0", token=TOKEN, allowed_origins=["http://kiosk.example:9000"])


def test_names_a_server_answers_to() -> None:
    loopback = ControlSettings()
    assert loopback.host_names() == {"localhost", "127.0.0.1", "::1"}
    assert socket.gethostname().lower() not in loopback.host_names() or socket.gethostname() == "localhost"
    bound = ControlSettings(host="192.0.2.7", token="t")
    assert {"192.0.2.7", socket.gethostname().lower(), "localhost"} <= bound.host_names()
    assert "0.0.0.0" not in ControlSettings(host="0.0.0.0", token="t").host_names()
    assert not bound.origin_allowed("http://192.0.2.7:8765:1")
    assert not bound.origin_allowed("http://user@192.0.2.7:8765")
    assert not bound.origin_allowed("ftp://192.0.2.7:8765")
    assert bound.origin_allowed("http://192.0.2.7:8765")
    assert bound.origin_allowed("http://192.0.2.7", port=80)


# --- 4. the page: public by default, or behind the token -----------------------------------------

PAGE_PATHS = ("/", "/index.html", "/app.js", "/style.css", "/favicon.svg", "/emotions.json")


def test_the_page_is_public_by_default() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        for path in PAGE_PATHS:
            status, headers, _ = await http_get(server.port, path)
            assert status == 200 and "set-cookie" not in headers, path

    run_with_server(scenario, token=TOKEN)
    assert ControlSettings().public_page is True


def test_a_private_page_needs_the_token() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        port = server.port
        for path in PAGE_PATHS:
            status, headers, body = await http_get(port, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
            assert b"token" in body
        for path in ("/app.js", "/emotions.json"):  # two wrong tokens: within the free ones
            assert (await http_get(port, path + "?token=wrong-guess"))[0] == 401
        status, headers, body = await http_get(port, f"/?token={TOKEN}")
        assert status == 200 and b"app.js" in body
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"{PAGE_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert TOKEN not in cookie, "the cookie is derived from the token, not the token"
        value = cookie.split(";")[0]
        # The page's own script, style and labels come with the cookie (they have no ?token=).
        for path in PAGE_PATHS:
            assert (await http_get(port, path, {"Cookie": f"theme=dark; {value}"}))[0] == 200, path
            assert (await http_get(port, path, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200, path
        assert (await http_get(port, "/app.js", {"Cookie": f"{PAGE_COOKIE}=forged"}))[0] == 401
        status, _, body = await http_get(port, "/emotions.json", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)
        async with await ControlClient.connect(server.url, token=TOKEN) as client:  # the websocket as before
            assert (await client.status())["state"] == "idle"

    run_with_server(scenario, token=TOKEN, public_page=False)


def test_a_private_page_works_in_a_browser_opened_with_the_token(tmp_path: Path) -> None:
    """Chromium is required (as for tests/test_web_page.py): the page loads its script, style and
    labels with the cookie, takes the token from its URL and connects."""

    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        browser = await Chromium.launch(tmp_path / "profile")
        try:
            page = await browser.open(server.page_url)
            text = await page.wait_for("document.body && document.body.innerText")
            assert "needs the control token" in text
            page = await browser.open(server.page_url + f"?token={TOKEN}")
            await page.wait_for("document.body.dataset.connection === 'ready'")
            assert (await page.wait_for("document.body.dataset.labels")).split()
        finally:
            await browser.close()
        assert not [line for line in browser.console if line.startswith("exception")], browser.console

    run_with_server(scenario, token=TOKEN, public_page=False)


def test_a_private_page_without_a_token_is_still_served() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        assert (await http_get(server.port, "/"))[0] == 200  # nothing to ask for on a loopback without one

    run_with_server(scenario, public_page=False)


def test_page_guesses_count_toward_the_backoff() -> None:
    async def scenario(server: ControlServer, ctl: FakeController) -> None:
        for i in range(4):
            assert (await http_get(server.port, f"/app.js?token=guess-{i}"))[0] == 401
        status, headers, _ = await http_get(server.port, f"/app.js?token={TOKEN}")
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert (await http_get(server.port, headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 429

    run_with_server(scenario, token=TOKEN, public_page=False, auth_backoff_seconds=5.0)
