"""The companion page during a session: time, what plays in words, where it leads and when, a Start
that asks first, presets and the mood check-in.

Headless Chromium (``scripts/setup.sh --test``) against a FakeController, or against a scripted
daemon (:mod:`web.stub_daemon`) for what the control server does not offer yet (presets in
``hello``, the ``checkin`` command).
"""

from __future__ import annotations

import asyncio
import urllib.request
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest
from web.cdp import Chromium
from web.fake_controller import FakeController
from web.page_tools import press
from web.served_page import Served, exceptions, served_page, start_server
from web.stub_daemon import StubDaemon

TIMES = ("time-elapsed", "time-remaining", "time-total")
# The elapsed time shown, in seconds (m:ss).
ELAPSED_S = (
    "(document.getElementById('time-elapsed').textContent.split(':')"
    ".reduce((sum, part) => sum * 60 + Number(part), 0))"
)


def seconds(clock: str) -> int:
    minutes, secs = clock.split(":")
    return int(minutes) * 60 + int(secs)


async def times(served: Served) -> list[str]:
    return [await served.text(t) for t in TIMES]


def test_time_counts_while_playing_and_stands_still_while_paused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with served_page(tmp_path / "profile") as served:
            page = served.page
            assert await times(served) == ["–", "–", "–"]
            await served.start()
            # The fake's plan: 5 clips of 30 s overlapping by 2.5 s = 2:20, not the 2:30 of their sum.
            await page.wait_for("document.getElementById('time-total').textContent === '2:20'")
            # It counts on its own between the daemon's reports.
            await page.wait_for(f"{ELAPSED_S} >= 2", timeout=6)
            elapsed, remaining, _ = await times(served)
            assert abs(seconds(elapsed) + seconds(remaining) - 140) <= 1
            assert int(await page.evaluate("document.getElementById('progress').ariaValueNow")) >= 1
            await served.client.pause()
            await page.wait_for("document.getElementById('pause').textContent === 'Resume'")
            paused = await times(served)
            await asyncio.sleep(2.5)  # past a status poll and two ticks
            assert await times(served) == paused
            await served.client.resume()
            await page.wait_for(f"{ELAPSED_S} >= {seconds(paused[0]) + 1}", timeout=6)
            # A page opened mid-session learns the times from the status alone.
            await page.send("Page.reload")
            await page.wait_for("document.body.dataset.connection === 'ready'")
            await page.wait_for("document.getElementById('time-total').textContent === '2:20'")
            assert seconds(await served.text("time-elapsed")) >= seconds(paused[0]) + 1

    asyncio.run(scenario())


def test_now_playing_in_words_and_where_it_leads(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with served_page(tmp_path / "profile") as served:
            page = served.page
            await served.start("sad", "calm")
            await page.wait_for("document.getElementById('now-segment').textContent === 'Part 1 of 5'")
            assert await served.text("now-emotion") == "Wistful piano, moving toward calm"
            assert await served.text("now-detail") == "Ambient · feels sad"
            # The raw prompt is for the curious: inside the closed "Details", with the buffer.
            hidden = await page.evaluate(
                "(() => { const p = document.getElementById('now-prompt');"
                " return [p.closest('details').open, p.checkVisibility(),"
                " document.getElementById('buffer-text').checkVisibility()]; })()"
            )
            assert hidden == [False, False, False]
            # The fake's fourth part is the first called "calm": 82.5 s in.
            destination = await served.text("destination")
            assert destination == "Heading to calm, arriving in about 1 minute", destination

            await served.client.set_target("happy")
            await page.wait_for("document.getElementById('to').value === 'happy'")
            assert await served.text("destination") == "Heading to happy, arriving in about 1 minute"
            assert await served.text("now-emotion") == "Wistful piano, moving toward happy"
            assert served.emit_segment(3)["emotion"] == "happy"
            await page.wait_for("document.getElementById('destination').textContent === 'Arrived at happy'")
            assert await served.text("now-emotion") == "Warm flute, resting in happy"

    asyncio.run(scenario())


def test_start_during_a_session_asks_in_the_page_first(tmp_path: Path) -> None:
    dialog_open = "document.getElementById('confirm-start').open"

    async def scenario() -> None:
        async with served_page(tmp_path / "profile") as served:
            page = served.page
            await page.evaluate("window.confirm = () => { throw new Error('window.confirm used'); }; true")
            await served.start()
            for answer in ("Escape", "keep"):
                await page.evaluate("document.getElementById('start').click(); true")
                await page.wait_for(dialog_open)
                focused = await page.evaluate("document.activeElement.value")
                assert focused == "keep"  # the safe answer has the focus
                if answer == "Escape":
                    await press(page, "Escape")
                else:
                    await press(page, "Enter")
                await page.wait_for(f"!{dialog_open}")
            await page.evaluate("document.getElementById('to').value = 'happy'; true")
            await page.evaluate("document.getElementById('start').click(); true")
            await page.wait_for(dialog_open)
            text = await served.text("confirm-text")
            assert "toward calm" in text and "happy" in text, text
            await page.evaluate("document.getElementById('confirm-retarget').click(); true")
            await served.until_called("set_target")
            assert served.controller.calls[-1] == ("set_target", "happy")
            await page.evaluate("document.getElementById('start').click(); true")
            await page.wait_for(dialog_open)
            await page.evaluate("document.getElementById('confirm-start-new').click(); true")
            await served.until_called("start_session", 2)
            assert served.controller.names().split().count("start_session") == 2

    asyncio.run(scenario())


def test_presets_from_the_status_are_one_tap_starts(tmp_path: Path) -> None:
    preset = {"name": "Calm down, 15 min", "from": "tense", "to": "calm", "minutes": 15}

    async def scenario() -> None:
        async with served_page(tmp_path / "profile") as served:
            page = served.page
            # No preset offered: no row; the daemon takes check-ins, so that button is there.
            assert await page.evaluate("document.getElementById('presets').hidden")
            assert not await page.evaluate("document.getElementById('checkin-before').hidden")
            served.controller.presets = [preset]
            await page.wait_for("!document.getElementById('presets').hidden", timeout=5)
            button = "document.querySelector('#presets button')"
            assert await page.evaluate(f"{button}.textContent") == preset["name"]
            await page.evaluate(f"{button}.click(); true")
            await served.until_called("start_session")
            options = served.controller.calls[-1][1]
            assert (options.start, options.target, options.minutes) == ("tense", "calm", 15)

    asyncio.run(scenario())


def test_presets_in_hello_and_the_mood_check_in(tmp_path: Path) -> None:
    presets = [
        {"name": "Fall asleep, 30 min", "from": "tense", "to": "sleepy", "minutes": 30},
        {"name": "Lift my mood, 20 min", "to": "happy", "minutes": 20},
    ]
    commands = ["hello", "auth", "start", "set_target", "pause", "resume", "skip", "stop", "volume"]
    commands += ["status", "subscribe", "unsubscribe", "checkin"]

    async def scenario() -> None:
        async with StubDaemon({"commands": commands, "presets": presets}) as daemon:
            browser = await Chromium.launch(tmp_path / "profile")
            try:
                page = await browser.open(daemon.page_url)
                await page.wait_for("document.body.dataset.connection === 'ready'")
                await page.wait_for("document.querySelectorAll('#presets button').length === 2")
                # Before: tap "How do you feel?", then say it on the circle with the keyboard.
                await page.evaluate("document.getElementById('checkin-before').click(); true")
                assert await page.evaluate("document.body.dataset.mode") == "checkin"
                assert await page.evaluate("document.activeElement.id") == "circumplex"
                hint = await page.evaluate("document.getElementById('circle-hint').textContent")
                assert hint.startswith("How do you feel right now?")
                await press(page, "ArrowUp", times=2)
                await press(page, "ArrowLeft", shift=True)
                await press(page, "Enter")
                (before,) = await daemon.wait_sent("checkin")
                assert {k: before[k] for k in ("when", "valence", "arousal")} == {
                    "when": "before",
                    "valence": -0.2,
                    "arousal": 0.1,
                }
                await page.wait_for("document.getElementById('from').value === '-0.2,0.1'")
                assert await page.evaluate("document.body.dataset.mode") is None
                # A preset without "from" starts from where the listener said they are.
                await page.evaluate("document.querySelectorAll('#presets button')[1].click(); true")
                (start,) = await daemon.wait_sent("start")
                assert (start["from"], start["to"], start["minutes"]) == ("-0.2,0.1", "happy", 20)
                # After: the session ends, the page asks, a tap on the circle answers.
                plan = {
                    "start": {"valence": -0.2, "arousal": 0.1},
                    "target": {"valence": 0.7, "arousal": 0.7},
                }
                await daemon.push("session_started", session_id="s", plan=plan | {"segments": []})
                await daemon.push("session_ended", reason="finished", played_s=1200.0)
                await page.wait_for("!document.getElementById('checkin-after').hidden")
                assert await page.evaluate("document.getElementById('now-emotion').textContent") == (
                    "Session finished"
                )
                await page.evaluate("document.getElementById('checkin-after-go').click(); true")
                box = await page.evaluate(
                    "(() => { const r = document.getElementById('circumplex').getBoundingClientRect();"
                    " return [r.left, r.top, r.width]; })()"
                )
                left, top, width = box
                await page.click(left + 0.75 * width, top + 0.75 * width)  # valence 0.5, arousal -0.5
                _, after = await daemon.wait_sent("checkin", 2)
                assert after["when"] == "after"
                assert after["valence"] == pytest.approx(0.5, abs=0.01)
                assert after["arousal"] == pytest.approx(-0.5, abs=0.01)
            finally:
                await browser.close()
            assert not exceptions(browser), browser.console

    asyncio.run(scenario())


def test_times_the_daemon_does_not_send_show_as_a_dash(tmp_path: Path) -> None:
    segment = {"index": 0, "start_s": 0.0, "duration_s": 30.0, "valence": 0.3, "arousal": -0.6}
    segment |= {"emotion": "calm", "mood": "calm", "instrument": "piano", "genre": "newage"}
    plan = {"start": {"valence": 0.3, "arousal": -0.6}, "target": {"valence": 0.3, "arousal": -0.6}}
    plan |= {"target_label": "calm", "segments": [segment]}
    status = {"state": "playing", "segment_index": 0, "valence": 0.3, "arousal": -0.6, "plan": plan}

    async def scenario() -> None:
        async with StubDaemon({}, status | {"played_s": None}) as daemon:
            browser = await Chromium.launch(tmp_path / "profile")
            try:
                page = await browser.open(daemon.page_url)
                await page.wait_for("document.body.dataset.connection === 'ready'")
                await page.wait_for("document.getElementById('now-segment').textContent === 'Part 1 of 1'")
                shown = [await page.evaluate(f"document.getElementById({t!r}).textContent") for t in TIMES]
                assert shown == ["–", "–", "–"]
                assert await page.evaluate("document.getElementById('now-emotion').textContent") == (
                    "Gentle piano, resting in calm"
                )
                # No check-in command in this daemon's hello: no check-in anywhere.
                assert await page.evaluate("document.getElementById('checkin-before').hidden")
            finally:
                await browser.close()
            assert not exceptions(browser), browser.console

    asyncio.run(scenario())


def test_the_favicon_is_an_svg_the_page_links() -> None:
    web = resources.files("musicmed_stream.control.web")
    html = web.joinpath("index.html").read_text(encoding="utf-8")
    assert '<link rel="icon" href="favicon.svg" type="image/svg+xml">' in html
    root = ET.fromstring(web.joinpath("favicon.svg").read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_the_daemon_serves_every_file_of_the_page() -> None:
    def fetch(url: str) -> int:
        with urllib.request.urlopen(url) as response:
            return int(response.status)

    async def scenario() -> None:
        server = await start_server(FakeController())
        try:
            for name in ("index.html", "app.js", "style.css", "favicon.svg"):
                assert await asyncio.to_thread(fetch, server.page_url + name) == 200, name
        finally:
            await server.close()

    asyncio.run(scenario())
