"""The companion page in headless Chromium, against the real daemon: a click on the circle re-targets.

Chromium is required (``scripts/setup.sh --test`` installs it): without it these tests fail.
Set ``MUSICMED_SCREENSHOT_DIR`` to keep the page's screenshot for a look.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from web.cdp import Chromium, Page
from web.fake_controller import FakeController
from web.harness import running_daemon

from musicmed_stream.control.client import ControlClient
from musicmed_stream.control.server import start_control_server
from musicmed_stream.control.settings import ControlSettings
from musicmed_stream.emotion import load_vocabulary

CLICK = (0.55, -0.45)  # where the listener wants to go: pleasant and calm


async def canvas_point(page: Page, valence: float, arousal: float) -> tuple[float, float]:
    """Viewport pixel of a circumplex point, from the canvas's on-screen box (the page's own mapping
    is not consulted: the circle spans valence -1..1 left to right, arousal -1..1 bottom to top)."""
    box = await page.evaluate(
        "(() => { const r = document.getElementById('circumplex').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )
    left, top, width, height = box
    return left + (valence + 1) / 2 * width, top + (1 - arousal) / 2 * height


def keep_screenshot(path: Path) -> None:
    folder = os.environ.get("MUSICMED_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / path.name).write_bytes(path.read_bytes())


def test_click_on_the_circle_retargets_the_running_session(tmp_path: Path, jamendo_dir: Path) -> None:
    async def scenario() -> None:
        async with running_daemon(tmp_path, jamendo_dir, speed=1.0, **{"session.on_end": "hold"}) as running:
            browser = await Chromium.launch(tmp_path / "profile")
            try:
                page = await browser.open(running.server.page_url)
                await page.wait_for("document.body.dataset.connection === 'ready'")
                labels = (await page.wait_for("document.body.dataset.labels")).split()
                async with await ControlClient.connect(running.server.url) as client:
                    await client.subscribe(["plan_changed"])
                    await client.start("sad", "calm", minutes=1, clip_seconds=4, seed=5)
                    # The page learns of the session from its own event subscription.
                    await page.wait_for("document.getElementById('pause').disabled === false")
                    await page.wait_for("document.getElementById('now-segment').textContent.includes('of')")
                    x, y = await canvas_point(page, *CLICK)
                    await page.click(x, y)
                    changed = await client.wait_for_event("plan_changed", timeout=20)
                    status = await client.status(plan=True)
                    shot = await page.screenshot(tmp_path / "companion-page.png")
                    keep_screenshot(shot)
                    await client.stop(fade_seconds=0.2)
            finally:
                await browser.close()
        # One pixel of the 520-px circle is 2/520 ~ 0.004 of the unit range.
        target = changed.data.plan["target"]
        assert abs(target["valence"] - CLICK[0]) < 0.01 and abs(target["arousal"] - CLICK[1]) < 0.01
        assert status["plan"]["target"] == target
        assert changed.data.from_index >= 1
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not [line for line in browser.console if line.startswith("exception")], browser.console
        # The circle is labelled with the daemon's own vocabulary, so a click near "calm" means calm.
        vocabulary = {e.name for e in load_vocabulary()}
        assert {"happy", "calm", "sad"} <= set(labels) <= vocabulary

    asyncio.run(scenario())


def test_page_asks_for_the_token_and_then_controls_the_daemon(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = FakeController()
        server = await start_control_server(controller, ControlSettings(port=0, token="kiosk-secret"))
        browser = await Chromium.launch(tmp_path / "profile")
        try:
            page = await browser.open(server.page_url)
            await page.wait_for("document.body.dataset.connection === 'auth'")
            assert await page.evaluate("document.getElementById('auth').hidden") is False
            await page.evaluate(
                "document.getElementById('token').value = 'kiosk-secret';"
                "document.getElementById('auth-form').requestSubmit(); true"
            )
            await page.wait_for("document.body.dataset.connection === 'ready'")
            # Idle: a click picks the destination for the next start instead of re-targeting.
            x, y = await canvas_point(page, -0.5, 0.5)
            await page.click(x, y)
            to_field = await page.evaluate("document.getElementById('to').value")
            await page.evaluate("document.getElementById('start').click(); true")
            await page.wait_for("document.getElementById('pause').disabled === false")
            await page.evaluate(
                "document.getElementById('volume').value = '0.25';"
                "document.getElementById('volume').dispatchEvent(new Event('change')); true"
            )
            await page.wait_for("document.getElementById('message').textContent === ''")
            for _ in range(100):
                if controller.volume == 0.25:
                    break
                await asyncio.sleep(0.05)
        finally:
            await browser.close()
            await server.close()
        valence, arousal = (float(v) for v in to_field.split(","))
        assert abs(valence + 0.5) < 0.01 and abs(arousal - 0.5) < 0.01
        options = controller.calls[0][1]
        assert (options.start, options.target) == ("sad", to_field)
        assert controller.volume == 0.25

    asyncio.run(scenario())
