"""Headless Chromium driven over the Chrome DevTools Protocol with ``websockets`` (no npm needed).

Only what the web tests use: open a page, evaluate JavaScript, click, take a screenshot.
Chromium is Debian's (``/usr/bin/chromium``, installed by ``scripts/setup.sh --test``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless browser process and its DevTools connection."""

    def __init__(self, process: subprocess.Popen[bytes], ws: ClientConnection) -> None:
        self.process = process
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(
        cls, profile: Path, width: int = 1120, height: int = 780, timeout: float = 60
    ) -> Chromium:
        """Start Chromium with a fresh profile folder and connect to its DevTools endpoint."""
        binary = chromium_path()
        if binary is None:
            raise CdpError("Chromium is not installed (apt-get install chromium; scripts/setup.sh --test)")
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier browser names a dead port
        args = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if process.poll() is not None:
                raise CdpError(f"Chromium exited with status {process.returncode} before DevTools was up")
            if time.monotonic() > deadline:
                _kill(process)
                raise CdpError("Chromium did not open its DevTools port in time")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        try:
            ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout)
        except BaseException:
            _kill(process)
            raise
        return cls(process, ws)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                message = json.loads(raw)
                if "id" in message and message["id"] in self._pending:
                    future = self._pending.pop(message["id"])
                    if "error" in message:
                        future.set_exception(CdpError(str(message["error"])))
                    else:
                        future.set_result(message.get("result", {}))
                elif message.get("method") == "Runtime.consoleAPICalled":
                    args = message["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
                elif message.get("method") == "Runtime.exceptionThrown":
                    self.console.append("exception: " + json.dumps(message["params"]["exceptionDetails"]))

    async def send(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        return await asyncio.wait_for(future, timeout)

    async def open(self, url: str) -> Page:
        """A new tab at ``url``, attached and with the console recorded."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete'")
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await asyncio.to_thread(_kill, self.process)


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, **params: Any) -> dict:
        return await self.browser.send(method, session=self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (promises awaited); a JavaScript exception raises."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll until ``expression`` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(CdpError):
                value = await self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression!r}; console: {self.browser.console}")
            await asyncio.sleep(0.05)

    async def click(self, x: float, y: float) -> None:
        """A real left click (press and release) at viewport coordinates."""
        common = {"x": x, "y": y, "button": "left", "clickCount": 1}
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        await self.send("Input.dispatchMouseEvent", type="mousePressed", **common)
        await self.send("Input.dispatchMouseEvent", type="mouseReleased", **common)

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))
        return path


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and its helper processes (its own process group, started by us)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
