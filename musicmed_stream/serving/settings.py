"""Settings of the generation service: the ``[serve]`` table, plus ``[engine.musicgen]``.

``ServeSettings`` is a configuration :class:`~musicmed_stream.bounds.Section` (strict, unknown keys
refused) so that it can be hooked into the main configuration as it is;
:func:`load_generate_server_config` reads a TOML file with both tables for
``musicmed-stream generate-server --config FILE``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from musicmed_stream.bounds import Section
from musicmed_stream.control.settings import is_loopback
from musicmed_stream.engines.settings import MusicgenSettings
from musicmed_stream.errors import ConfigError


class ServeSettings(Section):
    """The ``[serve]`` table.

    Attributes
    ----------
    host, port :
        Where Ray Serve's HTTP proxy listens. Loopback by default; any other address needs a token.
    token :
        Shared secret every request must carry (``Authorization: Bearer TOKEN``), compared in
        constant time. Empty: no check (loopback only).
    replicas :
        Copies of the model (each holds one engine); ignored when ``autoscaling`` is set.
    gpus_per_replica, cpus_per_replica :
        Ray resources of each replica (fractions share a GPU between replicas).
    max_batch_size :
        Clips decoded together by one replica (its batch's fixed number of slots). Best-of-N
        candidates take one slot each.
    batch_wait_timeout_s :
        ``serve_batch`` only: how long a wave waits for more requests before it starts.
    batching :
        ``continuous`` (a clip joins any free slot between token steps) or ``serve_batch`` (Ray's
        ``@serve.batch`` groups requests into waves; the next wave starts when the last one ends).
    columns_every :
        Token steps between two looks at the batch (admissions, streamed chunks, cancellations).
    max_columns :
        Token columns per slot (prompt + clip + 4); default the model's 2048. Smaller saves memory.
    max_best_of :
        The largest ``best_of`` a request may ask for.
    max_tail_seconds :
        The longest previous-clip tail a request may carry.
    heartbeat_s :
        A waiting stream sends a heartbeat frame this often (so clients can time out a stuck service).
    max_ongoing_requests :
        Ray's per-replica request limit (default ``4 * max_batch_size``).
    autoscaling :
        Passed to Ray Serve as the deployment's ``autoscaling_config`` (e.g. ``min_replicas``,
        ``max_replicas``, ``target_ongoing_requests``).
    ray_address :
        ``""`` starts a Ray instance on this machine; ``"auto"`` or ``"ray://HEAD:10001"`` joins a cluster.
    torch_threads :
        CPU threads of each replica's torch (0: torch's default).
    app_name, route_prefix :
        The Serve application's name and the URL path it answers under (several applications,
        e.g. two models, can share one proxy; a client's ``url`` then ends with the prefix).
    """

    section = "serve"

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: str = ""
    replicas: int = Field(1, ge=1)
    gpus_per_replica: float = Field(0.0, ge=0)
    cpus_per_replica: float = Field(1.0, ge=0)
    max_batch_size: int = Field(8, ge=1, le=256)
    batch_wait_timeout_s: float = Field(0.05, ge=0, le=60)
    batching: Literal["continuous", "serve_batch"] = "continuous"
    columns_every: int = Field(25, ge=1)
    max_columns: int | None = Field(None, ge=8)
    max_best_of: int = Field(8, ge=1)
    max_tail_seconds: float = Field(60.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    max_ongoing_requests: int | None = Field(None, ge=1)
    autoscaling: dict[str, Any] | None = None
    ray_address: str = ""
    torch_threads: int = Field(0, ge=0)
    app_name: str = "musicmed-generate"
    route_prefix: str = Field("/", pattern=r"^/[\w\-/]*$")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServeSettings:
        if not self.token and not is_loopback(self.host):
            raise ValueError(f"host {self.host!r} is not a loopback address: set a token")
        return self

    @property
    def ongoing_requests(self) -> int:
        return self.max_ongoing_requests or 4 * self.max_batch_size


class GenerateServerConfig(Section):
    """What ``generate-server`` reads: ``[serve]`` and ``[engine.musicgen]``."""

    serve: ServeSettings = Field(default_factory=ServeSettings)
    musicgen: MusicgenSettings = Field(default_factory=MusicgenSettings)


def load_generate_server_config(path: str | Path) -> GenerateServerConfig:
    """Read ``[serve]`` and ``[engine.musicgen]`` from a TOML file (other tables are left alone).

    Raises
    ------
    ConfigError
        Unreadable TOML, or an invalid value (the message names the key, e.g. ``serve.port``).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    engine = data.get("engine", {})
    musicgen = engine.get("musicgen", {}) if isinstance(engine, dict) else {}
    try:
        serve = ServeSettings.from_dict(data.get("serve", {}))
        return GenerateServerConfig(serve=serve, musicgen=MusicgenSettings.from_dict(musicgen))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
