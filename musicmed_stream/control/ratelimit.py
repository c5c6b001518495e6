"""Per-client rate limiting, kept pure (the caller passes the clock): a token bucket for messages,
and an exponential backoff per address for wrong tokens."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; each message takes one.

    Parameters
    ----------
    rate : float
        Refill rate in tokens per second (> 0).
    capacity : float
        Burst size: how many messages may arrive at once after a quiet spell (>= 1).
    now : float
        The clock reading at creation (e.g. ``time.monotonic()``); the bucket starts full.
    """

    rate: float
    capacity: float
    now: float
    tokens: float = field(init=False)
    last: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.capacity >= 1:
            raise ValueError(
                f"need rate > 0 and capacity >= 1, got rate={self.rate}, capacity={self.capacity}"
            )
        self.tokens = float(self.capacity)
        self.last = float(self.now)

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens at time ``now`` if the bucket holds them; return whether it did."""
        # A clock that steps back (it should not) refills nothing rather than draining the bucket.
        elapsed = max(0.0, now - self.last)
        self.last = max(self.last, now)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        if self.tokens >= cost - 1e-9:  # a client exactly at the rate is not refused by rounding
            self.tokens = max(0.0, self.tokens - cost)
            return True
        return False


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0  # when the latest wrong token came
    until: float = 0.0  # refused until then


@dataclass
class AuthBackoff:
    """Wrong tokens per client address, and how long each address is refused for.

    The first ``free_failures`` wrong tokens cost nothing (a mistyped token is not an attack); each
    one after that refuses the address for ``base`` seconds, doubling with every further wrong token up
    to ``cap``. While an address is refused its attempts are not checked at all (so not counted
    either): at most one guess per backoff. A right token (:meth:`success`) forgets the address; so
    does ``forget_after`` seconds without a wrong token. At most ``max_addresses`` are remembered, the
    one whose latest wrong token is oldest dropped first.

    Parameters
    ----------
    base : float
        The first backoff, seconds (> 0).
    cap : float
        The longest backoff, seconds (>= base).
    free_failures : int
        Wrong tokens in a row that start no backoff (>= 0).
    max_addresses : int
        How many addresses are remembered (>= 1).
    forget_after : float
        Seconds without a wrong token after which an address starts afresh (>= cap).
    """

    base: float = 1.0
    cap: float = 60.0
    free_failures: int = 3
    max_addresses: int = 1024
    forget_after: float = 900.0
    _table: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap <= self.forget_after) or self.free_failures < 0:
            raise ValueError(
                "need 0 < base <= cap <= forget_after and free_failures >= 0, got "
                f"base={self.base}, cap={self.cap}, forget_after={self.forget_after}, "
                f"free_failures={self.free_failures}"
            )
        if self.max_addresses < 1:
            raise ValueError(f"need max_addresses >= 1, got {self.max_addresses}")

    def __len__(self) -> int:
        return len(self._table)

    def retry_after(self, address: str, now: float) -> float:
        """Seconds ``address`` is still refused for at time ``now`` (``0.0``: check its token)."""
        entry = self._table.get(address)
        if entry is None:
            return 0.0
        if self._forgotten(entry, now):
            del self._table[address]
            return 0.0
        return max(0.0, entry.until - now)

    def failure(self, address: str, now: float) -> float:
        """Count a wrong token from ``address`` at ``now``; return the backoff it starts (seconds,
        ``0.0`` while within the free failures)."""
        self._prune(now)
        entry = self._table.get(address)
        if entry is None or self._forgotten(entry, now):
            entry = self._table[address] = _Failures()
        self._table.move_to_end(address)
        entry.count += 1
        entry.last = now
        extra = entry.count - self.free_failures
        delay = 0.0 if extra <= 0 else min(self.cap, self.base * 2.0 ** min(extra - 1, 64))
        entry.until = max(entry.until, now + delay)
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)
        return delay

    def failures(self, address: str) -> int:
        """Wrong tokens from ``address`` counted so far (since its last right one)."""
        entry = self._table.get(address)
        return 0 if entry is None else entry.count

    def success(self, address: str) -> None:
        """A right token from ``address``: it starts afresh."""
        self._table.pop(address, None)

    def _forgotten(self, entry: _Failures, now: float) -> bool:
        return now - entry.last > self.forget_after and now >= entry.until

    def _prune(self, now: float) -> None:
        # Oldest latest-failure first: stop at the first address still remembered.
        while self._table:
            entry = next(iter(self._table.values()))
            if not self._forgotten(entry, now):
                break
            self._table.popitem(last=False)
