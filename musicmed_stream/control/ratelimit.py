"""Per-client rate limiting: a token bucket, kept pure (the caller passes the clock)."""

from __future__ import annotations

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
