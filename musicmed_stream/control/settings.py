"""The control channel's settings (the ``[control]`` section) and the checks the server makes with them."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from musicmed_stream.bounds import Section

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlSettings(Section):
    """``[control]``: the websocket control channel and the companion page.

    Attributes
    ----------
    enabled : bool
        Serve the control channel at all.
    host, port : str, int
        Where to listen; ``port = 0`` picks a free port. A non-loopback host requires a token.
    token : str
        Shared secret clients present (``""``: none, allowed on loopback only).
    allowed_origins : list of str
        Browser origins (``http://host:port``) allowed besides the server's own page.
    max_message_bytes : int
        Larger messages close the connection with code 1009.
    rate_limit_per_second : float
        Messages per second per client (burst: twice that).
    send_timeout_seconds : float
        A client that does not take a message within this long (it stopped reading) is
        disconnected (close code 1013).
    """

    section = "control"

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    token: Annotated[str, Field(max_length=4096)] = ""
    allowed_origins: list[str] = Field(default_factory=list)
    max_message_bytes: Annotated[int, Field(ge=256, le=2**24)] = 65536
    rate_limit_per_second: Annotated[float, Field(ge=0.1, le=10000, allow_inf_nan=False)] = 20.0
    send_timeout_seconds: Annotated[float, Field(ge=0.1, le=600, allow_inf_nan=False)] = 10.0

    @field_validator("token")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value and not value.strip():
            raise ValueError("must not be blank (leave it empty for no token)")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{origin!r} is not an origin like http://host:port")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ControlSettings:
        if self.enabled and not self.token and not is_loopback(self.host):
            raise ValueError(
                f"control.token is required when control.host ({self.host}) is not loopback; "
                "set it or MUSICMED_CONTROL_TOKEN, or bind to 127.0.0.1"
            )
        return self

    @property
    def token_required(self) -> bool:
        return bool(self.token)

    def token_matches(self, offered: str | None) -> bool:
        """Constant-time comparison; ``False`` when no token is offered or none is configured."""
        if not self.token or offered is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """Non-browser clients (no ``Origin``), the page's own origin, or a configured origin."""
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in {o.rstrip("/").lower() for o in self.allowed_origins}:
            return True
        if not host_header:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc != host_header.lower():
            return False
        # Same origin, but is the name one this server answers to? A DNS-rebound attacker page
        # comes with its own host name; only a server reachable from outside accepts any name.
        return not is_loopback(self.host) or (parts.hostname or "") in LOOPBACK_NAMES | {self.host.lower()}


__all__ = ["LOOPBACK_NAMES", "ControlSettings", "is_loopback"]
