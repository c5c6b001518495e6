"""The control channel's settings (the ``[control]`` section) and the checks the server makes with them."""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import socket
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from musicmed_stream.bounds import Section

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})  # every interface: no name of its own


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def machine_names() -> frozenset[str]:
    """This machine's own names and addresses, lower case: its host name, its fully qualified name,
    the addresses they resolve to, and the address of each family it would send from by default
    (no packet is sent). Looked up once (name service calls can be slow: warm it off the event loop);
    a lookup that fails leaves its names out."""
    names: set[str] = set()
    for lookup in (socket.gethostname, socket.getfqdn):
        with contextlib.suppress(OSError, UnicodeError):
            names.add(lookup().lower())
    for name in list(names):
        with contextlib.suppress(OSError, UnicodeError):
            names |= {str(info[4][0]).split("%")[0].lower() for info in socket.getaddrinfo(name, None)}
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.connect((probe, 9))  # a datagram socket's connect only picks the route: nothing is sent
            names.add(str(udp.getsockname()[0]).split("%")[0].lower())
    return frozenset(names - WILDCARD_HOSTS)


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
        Browser origins (``http://host:port``) allowed besides the server's own page (see
        :meth:`origin_allowed`).
    max_message_bytes : int
        Larger messages close the connection with code 1009.
    rate_limit_per_second : float
        Messages per second per client (burst: twice that).
    send_timeout_seconds : float
        A client that does not take a message within this long (it stopped reading) is
        disconnected (close code 1013).
    auth_backoff_seconds : float
        After a few wrong tokens from one address, it is refused (HTTP 429) this long, doubling with
        each further wrong token up to a minute.
    public_page : bool
        Serve the companion page (static files and ``/emotions.json``; no data, and it asks for the
        token before any command) to anyone. ``False`` with a token: the page needs the token too.
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
    auth_backoff_seconds: Annotated[float, Field(ge=0.01, le=60, allow_inf_nan=False)] = 1.0
    public_page: bool = True

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

    def host_names(self) -> frozenset[str]:
        """The names (lower case) under which a browser reaches this server: the loopback names,
        the bound host unless it is a wildcard, and, bound beyond loopback, :func:`machine_names`."""
        names = set(LOOPBACK_NAMES)
        host = self.host.strip("[]").lower()
        if host not in WILDCARD_HOSTS:
            names.add(host)
        if not is_loopback(self.host):
            names |= machine_names()
        return frozenset(names)

    def origin_allowed(self, origin: str | None, *, port: int | None = None) -> bool:
        """Whether a handshake with this ``Origin`` header may go on: a client without one (not a
        browser), one of ``allowed_origins``, or a page of this very server, ``http(s)://NAME:PORT``
        with ``NAME`` one of :meth:`host_names` and ``PORT`` the server's (``port``, default
        ``self.port``). The request's ``Host`` plays no part: a DNS-rebound attacker's page sends
        the name it made up in both, and that name is not one this server answers to."""
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in {o.rstrip("/").lower() for o in self.allowed_origins}:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.username is not None or parts.path:
            return False
        try:
            origin_port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        own_port = self.port if port is None else port
        return origin_port == own_port and (parts.hostname or "") in self.host_names()


__all__ = ["LOOPBACK_NAMES", "WILDCARD_HOSTS", "ControlSettings", "is_loopback", "machine_names"]
