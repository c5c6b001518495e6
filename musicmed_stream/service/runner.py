"""Run the daemon as a process: build it from the configuration, serve, handle signals.

SIGTERM and SIGINT fade the session out and exit 0; SIGHUP reloads the configuration file and
applies what can change live (volume, log level, session and playback defaults), logging the keys
that need a restart. systemd is told ``READY=1`` once audio and control are up, and pinged with
``WATCHDOG=1`` while the event loop and the audio path are alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from typing import Any

from musicmed_stream.allocator import limit_fragmentation
from musicmed_stream.app import build_daemon
from musicmed_stream.control.api import StartOptions
from musicmed_stream.control.redact import install as install_redaction
from musicmed_stream.control.redact import install_on_handlers as install_redaction_on_handlers
from musicmed_stream.errors import ConfigError
from musicmed_stream.service.config import Config, changed_keys, load_config, needs_restart
from musicmed_stream.service.daemon import Daemon
from musicmed_stream.service.notify import notify, watchdog_interval

log = logging.getLogger(__name__)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald adds the time


def configure_logging(level: str) -> None:
    """Log to stderr (journald-friendly: no timestamps of our own). A control client's connection
    is not news at INFO (every ``ctl`` call makes one): websockets' own lines start at WARNING.
    Every record is masked of control tokens on its way out, at any level (``?token=``,
    ``Authorization``, an ``auth`` message's token, the configured token itself:
    :mod:`musicmed_stream.control.redact`)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    install_redaction()
    install_redaction_on_handlers()
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("websockets").setLevel(logging.WARNING)


async def start_control(daemon: Daemon, config: Config) -> Any:
    """Start the websocket control server, or return ``None`` if disabled."""
    if not config.control.enabled:
        log.info("control channel disabled (control.enabled = false)")
        return None
    from musicmed_stream.control.server import start_control_server

    server = await start_control_server(daemon, config.control)
    log.info("control channel listening on %s:%d", config.control.host, server.port)
    return server


async def serve(
    config: Config,
    *,
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    start: StartOptions | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    limit_fragmentation()  # before the audio threads: clip-sized arrays must not fragment the heap
    daemon = build_daemon(config)
    await daemon.start()
    server = None
    try:
        server = await start_control(daemon, config)
        if start is not None:
            if daemon.status().state != "idle":
                log.info("a resumed session is playing; not starting %s -> %s", start.start, start.target)
            else:
                await daemon.start_session(start)
        notify("READY=1")
        await _wait_for_signals(daemon, config, config_path, overrides)
        notify("STOPPING=1")
        log.info("stopping: fading out")
    finally:
        if server is not None:
            await server.close()
        await daemon.close()
    log.info("stopped")
    return 0


async def _wait_for_signals(
    daemon: Daemon, config: Config, config_path: str | None, overrides: Mapping[str, Any] | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    interval = watchdog_interval()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval or 1.0)
            if interval and daemon.healthy():
                notify("WATCHDOG=1")
            if reload.is_set():
                reload.clear()
                config = _reload(daemon, config, config_path, overrides)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def _reload(daemon: Daemon, config: Config, path: str | None, overrides: Mapping[str, Any] | None) -> Config:
    """SIGHUP: re-read the file; apply what can change live; name what needs a restart."""
    try:
        new = load_config(path, overrides=overrides)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return config
    changed = changed_keys(config, new)
    later = [key for key in changed if needs_restart(key)]
    daemon.reconfigure(new)
    configure_logging(new.service.log_level)
    log.info(
        "configuration reloaded from %s; changed: %s", path or "defaults", ", ".join(changed) or "nothing"
    )
    if later:
        log.warning("these changes take effect after a restart: %s", ", ".join(later))
    return new
