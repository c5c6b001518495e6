"""The control server: what the soak (``benchmarks/soak.py``) found, kept from coming back."""

from __future__ import annotations

import asyncio
import json
import os
import time

from web.fake_controller import FakeController
from websockets.asyncio.client import connect

from musicmed_stream.control.server import CLOSE_TIMEOUT_S, start_control_server
from musicmed_stream.control.settings import ControlSettings


async def _close_time(fill_buffers: bool) -> float:
    """Seconds ``server.close()`` takes with one client that stopped reading (not even the closing
    handshake), after the server has filled its socket buffers or not."""
    ctl = FakeController()
    server = await start_control_server(ctl, ControlSettings(port=0))
    mute = await connect(server.url, ping_interval=None, max_queue=1)
    try:
        await mute.send(json.dumps({"type": "subscribe", "id": 1}))
        await mute.recv()  # hello
        await mute.recv()  # the subscription
        mute.transport.pause_reading()  # from now on it reads nothing
        if fill_buffers:
            (connection,) = server._server.connections  # type: ignore[union-attr]
            big = {"segments": [{"prompt": os.urandom(100).hex()} for _ in range(2000)]}  # ~0.5 MB
            for _ in range(200):  # until the server cannot write more to it
                ctl.emit("plan_changed", from_index=1, plan=big, reason="target")
                await asyncio.sleep(0.02)
                if connection.transport.get_write_buffer_size() > 0:
                    break
            assert connection.transport.get_write_buffer_size() > 0, "the socket buffers are full"
        started = time.monotonic()
        await asyncio.wait_for(server.close(), 60)
        return time.monotonic() - started
    finally:
        mute.transport.abort()


def test_closing_the_server_does_not_wait_for_a_client_that_stopped_reading() -> None:
    # SIGTERM closes the server before the fade-out: a phone that went to sleep with its socket
    # open held both for websockets' 10-s close timeout (and, its buffers full, until keepalive)
    assert asyncio.run(_close_time(fill_buffers=False)) < CLOSE_TIMEOUT_S + 1.0


def test_closing_the_server_does_not_wait_for_a_client_whose_buffers_are_full() -> None:
    assert asyncio.run(_close_time(fill_buffers=True)) < CLOSE_TIMEOUT_S + 1.0
