"""The companion page fits every screen from a 320-px phone up, with readable circle labels.

Headless Chromium (``scripts/setup.sh --test``) against a FakeController. Set
``MUSICMED_SCREENSHOT_DIR`` to keep the screenshots (phone and desktop, light and dark).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_web_history import with_history
from web.page_tools import emulate_color_scheme, full_screenshot, screenshot_dir, set_viewport
from web.served_page import Served, served_page

SCREENS = [(320, 640), (390, 844), (768, 1024), (1280, 800)]

# Everything that must be wholly on screen horizontally: the cards, the circle, each button
# (Start most of all) and each field.
BOXES_JS = """
[...document.querySelectorAll('.card, canvas, button, input, select, header, main, li, svg')]
  .filter((el) => el.getClientRects().length && el.checkVisibility())
  .map((el) => { const r = el.getBoundingClientRect();
                 return {what: el.id || el.className || el.tagName, left: r.left, right: r.right,
                         clipped: el.scrollWidth > el.clientWidth + 1 && el.tagName === 'BUTTON'}; })
"""


async def measure(served: Served) -> dict[str, Any]:
    page = served.page
    return {
        "scroll": await page.evaluate("document.scrollingElement.scrollWidth"),
        "width": await page.evaluate("innerWidth"),
        "label_px": float(await page.evaluate("document.getElementById('circumplex').dataset.labelPx")),
        "labels": (await page.evaluate("document.body.dataset.labels")).split(),
        "boxes": await page.evaluate(BOXES_JS),
    }


def check_fits(where: str, m: dict[str, Any]) -> None:
    assert m["scroll"] <= m["width"], f"{where}: page is {m['scroll']} px wide in a {m['width']} px screen"
    for box in m["boxes"]:
        assert box["left"] >= -0.5 and box["right"] <= m["width"] + 0.5, f"{where}: {box} sticks out"
        assert not box["clipped"], f"{where}: the text of {box['what']} does not fit its button"
    assert m["label_px"] >= 14, f"{where}: circle labels are {m['label_px']} px"
    assert {"happy", "calm", "sad"} <= set(m["labels"]), f"{where}: labels {m['labels']}"


def test_no_overflow_and_readable_labels_from_320_px_up(tmp_path: Path) -> None:
    shots = screenshot_dir(tmp_path)

    async def scenario() -> None:
        async with served_page(tmp_path / "profile", with_history) as served:
            await served.start()
            # The longest texts the cards show: details open, a message, the check-in prompt, the
            # history with its sessions.
            await served.page.evaluate(
                "document.getElementById('tech').open = true;"
                "document.getElementById('history').open = true;"
                "document.getElementById('message').textContent = 'rejected: unknown emotion clam';"
                "true"
            )
            await served.page.wait_for("document.querySelectorAll('#history-list li').length === 3")
            for width, height in SCREENS:
                await set_viewport(served.page, width, height)
                check_fits(f"{width}x{height}", await measure(served))
                if width in (390, 1280):
                    for scheme in ("light", "dark"):
                        await emulate_color_scheme(served.page, scheme)
                        shot = await full_screenshot(served.page, shots / f"page-{width}-{scheme}.png")
                        assert shot.stat().st_size > 10_000
                    await emulate_color_scheme(served.page, "light")
            # Large text on the smallest phone still fits, and the labels grow with it.
            await set_viewport(served.page, 320, 640)
            await served.page.evaluate("document.getElementById('text-size').click(); true")
            large = await measure(served)
            check_fits("320x640, large text", large)
            assert large["label_px"] >= 18
            await set_viewport(served.page, 390, 844)
            await full_screenshot(served.page, shots / "page-390-large-text.png")

    asyncio.run(scenario())
