"""The companion page in headless Chromium against the control server and a FakeController.

The tests steer the session the way another client would (``ControlClient`` over the websocket:
ctl, a second tablet) and reach into the FakeController only to read what it was asked and to
emit an event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicmed_stream.control.client import ControlClient
from musicmed_stream.control.server import ControlServer, start_control_server
from web.cdp import Chromium, Page
from web.fake_controller import FakeController


async def start_server(controller: FakeController, **settings: Any) -> ControlServer:
    """The control server for ``controller`` on a free loopback port."""
    try:  # the server takes one settings object (musicmed_stream.control.settings) ...
        from musicmed_stream.control.settings import ControlSettings
    except ImportError:  # ... or, before that module, keyword settings
        return await start_control_server(controller, port=0, **settings)
    return await start_control_server(controller, ControlSettings(port=0, **settings))


@dataclass
class Served:
    page: Page
    controller: FakeController
    server: ControlServer
    browser: Chromium
    client: ControlClient

    async def start(self, start: str = "sad", target: str = "calm") -> None:
        """A session started from elsewhere; the page hears of it by its events."""
        await self.client.start(start, target)
        await self.page.wait_for("document.getElementById('pause').disabled === false")

    def emit_segment(self, index: int) -> dict[str, Any]:
        """The listener now hears segment ``index`` of the fake's plan."""
        return self.controller.emit_segment(index)

    async def text(self, element_id: str) -> str:
        return await self.page.evaluate(f"document.getElementById({element_id!r}).textContent")

    async def until_called(self, name: str, count: int = 1, timeout: float = 10) -> None:
        """Wait until the controller's method ``name`` has been called ``count`` times."""
        async with asyncio.timeout(timeout):
            while self.controller.names().split().count(name) < count:
                await asyncio.sleep(0.05)


def exceptions(browser: Chromium) -> list[str]:
    return [line for line in browser.console if line.startswith("exception")]


def as_point(state: Any) -> tuple[float, float]:
    """A target the controller received, as (valence, arousal): ``"v,a"`` text or a point object."""
    if isinstance(state, str):
        v, a = (float(x) for x in state.split(","))
        return v, a
    return float(state.valence), float(state.arousal)


@contextlib.asynccontextmanager
async def served_page(
    profile: Path, setup: Callable[[FakeController], None] | None = None
) -> AsyncIterator[Served]:
    """The page loaded, connected and labelled; on the way out, no JavaScript exception may have
    been thrown."""
    controller = FakeController()
    if setup is not None:
        setup(controller)
    server = await start_server(controller)
    browser = await Chromium.launch(profile)
    try:
        async with await ControlClient.connect(server.url) as client:
            page = await browser.open(server.page_url)
            await page.wait_for("document.body.dataset.connection === 'ready'")
            await page.wait_for("document.body.dataset.labels")
            yield Served(page, controller, server, browser, client)
    finally:
        await browser.close()
        await server.close()
    assert not exceptions(browser), browser.console
