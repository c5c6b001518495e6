"""Keeping the control token out of the logs: a :class:`logging.Filter` that rewrites records.

At ``DEBUG``, ``websockets`` logs every request line (``GET /ws?token=...``), every header
(``Authorization: Bearer ...``) and every frame (``TEXT '{"type": "auth", "token": ...}'``), on the
server's side and on a client's. :class:`TokenRedactor` replaces, in a record's message, its
exception text and its stack text,

- the value of a ``token=`` query parameter (``?token=``, ``&token=``, ``;token=``),
- the value of an ``Authorization`` (or ``Proxy-Authorization``) header, as a header line, a
  ``key=value`` or a quoted mapping entry,
- the value of a ``"token"`` (or ``'token'``) entry of JSON or a Python mapping,
- the configured tokens themselves (:meth:`TokenRedactor.add_secret`), also URL- and JSON-escaped,

with ``***``. A websocket frame passed as a log argument is redacted on its whole payload before
``websockets`` elides the middle of it for display, so neither half of a long token shows.

:data:`REDACTOR` is the one instance: :func:`install` puts it on the loggers of ``websockets`` and of
the control channel (the control server does, when it starts), and the daemon's
``configure_logging`` puts it on the root logger's handlers as well, which covers every logger.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4  # a shorter literal would be masked inside every word; the patterns still apply

LOGGERS = (
    "websockets",
    "websockets.server",
    "websockets.client",
    "musicmed_stream.control.server",
    "musicmed_stream.control.client",
)

_PATTERNS = (
    # ?token=VALUE, &token=VALUE (up to the next parameter, fragment, space or quote)
    (re.compile(r"""([?&;]token=)[^&#\s'"]*""", re.IGNORECASE), r"\1" + MASK),
    # Authorization: Bearer VALUE / 'Authorization': 'Bearer VALUE' / authorization=VALUE
    (
        re.compile(r"""(\bauthorization['"]?\s*[:=]\s*['"]?)[^'"\r\n]*""", re.IGNORECASE),
        r"\1" + MASK,
    ),
    # "token": "VALUE" (JSON) and 'token': 'VALUE' (a Python mapping's repr), escapes included
    (
        re.compile(r"""(['"]token['"]\s*:\s*)(['"])(?:\\.|(?!\2)[^\\])*\2?""", re.IGNORECASE),
        r"\1\2" + MASK + r"\2",
    ),
)


class TokenRedactor(logging.Filter):
    """A filter that masks tokens in every record it sees and lets every record through."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: Counter[str] = Counter()
        self._forms: tuple[str, ...] = ()
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` wherever it appears (once per call: :meth:`discard_secret` undoes one)."""
        if len(secret) >= MIN_SECRET_LENGTH:
            with self._lock:
                self._secrets[secret] += 1
                self._update()

    def discard_secret(self, secret: str) -> None:
        """Undo one :meth:`add_secret` (a closed server's token is no longer masked)."""
        with self._lock:
            if self._secrets[secret] > 0:
                self._secrets[secret] -= 1
            self._secrets += Counter()  # drops the zero counts
            self._update()

    def _update(self) -> None:
        forms = set()
        for secret in self._secrets:
            forms |= {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
            forms.add(repr(secret)[1:-1])
        # Longest first: a form that contains another is masked whole.
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every token in it replaced by ``***``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        original_args = record.args
        safe_args = self._safe_args(original_args)
        record.args = safe_args
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it; nothing is formatted here
            record.args = original_args
            return True
        redacted = self.redact(message)
        if redacted != message or safe_args is not original_args:
            record.msg, record.args = redacted, None
        else:
            record.args = original_args
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def _safe_args(self, args: Any) -> Any:
        """``args`` with each websocket frame's payload redacted (the same object when none is)."""
        if not isinstance(args, tuple) or not any(_is_frame(arg) for arg in args):
            return args
        return tuple(self._redact_frame(arg) if _is_frame(arg) else arg for arg in args)

    def _redact_frame(self, frame: Any) -> Any:
        from websockets.frames import DATA_OPCODES, Opcode

        if frame.opcode not in DATA_OPCODES or not frame.data:
            return frame
        if frame.opcode is Opcode.CONT or not frame.fin:
            # A piece of a fragmented message: a token may be cut in two; show none of it.
            return dataclasses.replace(frame, data=b"(fragment)")
        data = bytes(frame.data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            for form in self._forms:
                data = data.replace(form.encode("utf-8"), MASK.encode())
            return dataclasses.replace(frame, data=data)
        return dataclasses.replace(frame, data=self.redact(text).encode("utf-8"))


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "Frame" and type(value).__module__ == "websockets.frames"


REDACTOR = TokenRedactor()


def install(loggers: Iterable[str] = LOGGERS) -> TokenRedactor:
    """Put :data:`REDACTOR` on ``loggers`` (once each) and return it.

    A logger's filters see only the records made on that very logger, not its children's: the
    ``websockets`` loggers are named one by one. :func:`install_on_handlers` covers a whole tree.
    """
    for name in loggers:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    return REDACTOR


def install_on_handlers(logger: logging.Logger | None = None) -> None:
    """Put :data:`REDACTOR` on the handlers of ``logger`` (default: the root logger), which every
    record that propagates to them passes through."""
    for handler in (logger or logging.getLogger()).handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)


__all__ = ["LOGGERS", "MASK", "REDACTOR", "TokenRedactor", "install", "install_on_handlers"]
