"""The companion page's history view: the latest sessions of the daemon's listening history (the
``history`` command), in words, reached by keyboard, kept up to date while open.

Headless Chromium (``scripts/setup.sh --test``) against the control server and a FakeController
that keeps a history as the daemon does; a scripted daemon for one without the command.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from web.cdp import Chromium
from web.fake_controller import FakeController
from web.page_tools import press, tab_to
from web.served_page import exceptions, served_page
from web.stub_daemon import StubDaemon

from musicmed_stream.emotion import VA, nearest_emotion, resolve_state
from musicmed_stream.errors import MusicMedError

STARTED = 1_764_000_000.0  # 24 Nov 2025, 16:00 UTC

ITEMS_JS = """
[...document.querySelectorAll('#history-list li')].map((li) => ({
  id: li.dataset.session,
  when: li.querySelector('time').dateTime,
  text: [...li.querySelectorAll('.history-text > *')].map((e) => e.textContent),
  circle: !!li.querySelector('svg.mini'),
  hidden: li.querySelector('svg.mini')?.getAttribute('aria-hidden') ?? null,
}))
"""


def point(name: str) -> tuple[float, float]:
    va, _ = resolve_state(name)
    return va.valence, va.arousal


def past_sessions() -> list[dict[str, Any]]:
    """Two earlier sessions, oldest first, in the form of the daemon's ``history`` reply."""
    tense, calm, sad = point("tense"), point("calm"), point("sad")
    common = {"recording": None, "recording_offset_s": None}
    return [
        {
            "id": "0ld5e55i0n01",
            "started_at": STARTED - 86_400,
            "ended_at": STARTED - 86_400 + 400,
            "start_label": "sad",
            "target_label": "0.55,-0.45",  # a point tapped on the circle
            "start": list(sad),
            "target": [0.55, -0.45],
            "planned_s": 1200.0,
            "played_s": 400.0,
            "end_reason": "stopped",
            "checkins": [],
        }
        | common,
        {
            "id": "5e55i0n00002",
            "started_at": STARTED,
            "ended_at": STARTED + 907,
            "start_label": "tense",
            "target_label": "calm",
            "start": list(tense),
            "target": list(calm),
            "planned_s": 907.5,
            "played_s": 907.5,
            "end_reason": "finished",
            "checkins": [
                {"moment": "before", "valence": tense[0], "arousal": tense[1], "at": STARTED - 60},
                {"moment": "after", "valence": calm[0], "arousal": calm[1], "at": STARTED + 1000},
            ],
        }
        | common,
    ]


def with_history(controller: FakeController) -> None:
    controller.sessions = past_sessions()


def iso(seconds: float) -> str:
    return (
        datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def test_history_lists_sessions_in_words_and_follows_the_daemon(tmp_path: Path) -> None:
    near = nearest_emotion(VA(0.55, -0.45)).name

    async def scenario() -> None:
        async with served_page(tmp_path / "profile", with_history) as served:
            page = served.page
            assert not await page.evaluate("document.getElementById('history-section').hidden")
            assert not await page.evaluate("document.getElementById('history').open")
            assert "history" not in served.controller.names()  # asked only when opened
            # Keyboard alone: Tab to "History", Enter opens it.
            await tab_to(page, "history-summary")
            await press(page, "Enter")
            await page.wait_for("document.querySelectorAll('#history-list li').length === 2")
            newest, oldest = await page.evaluate(ITEMS_JS)
            assert served.controller.calls[-1] == ("history", 10)
            assert newest["id"] == "5e55i0n00002" and newest["when"] == iso(STARTED)
            assert newest["text"][1:] == [
                "tense → calm",
                "Played 15 min of 15 min · finished",
                "Felt tense → calm",
            ]
            assert newest["circle"] and newest["hidden"] == "true"  # the words say what the circle shows
            assert oldest["text"][1:] == [
                f"sad → near {near}",
                "Played 7 min of 20 min · stopped early",
                "No check-in",
            ]
            assert not oldest["circle"]
            note = await served.text("history-note")
            assert note == "The latest 2 sessions, newest first."

            # A session starts elsewhere: the open list shows it as playing; it ends: stopped.
            await served.start("sad", "happy")
            await page.wait_for("document.querySelectorAll('#history-list li').length === 3")
            first = (await page.evaluate(ITEMS_JS))[0]
            assert first["id"] == "s3" and first["text"][1] == "sad → happy"
            assert first["text"][2].endswith("of 2 min · playing now"), first
            await served.client.stop()
            newest_length = "document.querySelector('#history-list li .history-length').textContent"
            await page.wait_for(f"{newest_length}.endsWith('stopped early')")
            # Closed, it asks no more.
            calls = served.controller.names().split().count("history")
            await page.evaluate("document.getElementById('history').open = false; true")
            await served.start("sad", "calm")
            await asyncio.sleep(0.5)
            assert served.controller.names().split().count("history") == calls

    asyncio.run(scenario())


def test_history_the_daemon_cannot_give_is_said_in_the_view(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with served_page(tmp_path / "profile") as served:
            page = served.page
            served.controller.fail_next = MusicMedError("the listening history needs a state folder")
            await page.evaluate("document.getElementById('history').open = true; true")
            await page.wait_for("document.getElementById('history-note').textContent !== ''")
            note = await served.text("history-note")
            assert note == "The history is not available: the listening history needs a state folder"
            served.controller.fail_next = None
            await page.evaluate("document.getElementById('history').open = false; true")
            await page.evaluate("document.getElementById('history').open = true; true")
            await page.wait_for("document.getElementById('history-note').textContent === 'No sessions yet.'")

    asyncio.run(scenario())


def test_no_history_view_for_a_daemon_without_the_command(tmp_path: Path) -> None:
    commands = ["hello", "auth", "start", "stop", "status", "subscribe", "unsubscribe"]

    async def scenario() -> None:
        async with StubDaemon({"commands": commands}) as daemon:
            browser = await Chromium.launch(tmp_path / "profile")
            try:
                page = await browser.open(daemon.page_url)
                await page.wait_for("document.body.dataset.connection === 'ready'")
                assert await page.evaluate("document.getElementById('history-section').hidden")
                assert not await page.evaluate("document.getElementById('history-section').checkVisibility()")
            finally:
                await browser.close()
            assert not exceptions(browser), browser.console

    asyncio.run(scenario())
