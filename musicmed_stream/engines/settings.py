"""The engines' settings (the ``[engine]`` section and its ``[engine.builtin]``, ``[engine.musicgen]``
tables): which engine makes the clips, and the options of each."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from musicmed_stream.bounds import Section

EngineName = Literal["auto", "builtin", "musicgen", "remote"]


class BuiltinSettings(Section):
    """``[engine.builtin]``: the built-in composer and its voices (docs/builtin_engine.md).

    Attributes
    ----------
    soundfont : str
        ``"auto"`` (the first GM SoundFont found, else the synthetic voices), a path to a
        ``.sf2``/``.sf3``, or ``"none"`` (always the synthetic voices).
    sample_rate : int
        Rate the engine renders at (the daemon resamples to the sink's rate when they differ).
    stream_chunk_seconds : float
        A clip heard at once (a session's first, a re-target's) plays as these first seconds are
        rendered.
    """

    section = "engine.builtin"

    soundfont: str = "auto"
    sample_rate: Annotated[int, Field(ge=8000, le=192000)] = 44100
    stream_chunk_seconds: Annotated[float, Field(ge=0.05, le=30, allow_inf_nan=False)] = 2.0

    def engine_options(self, crossfade_fraction: float) -> dict[str, Any]:
        """Keyword arguments of :class:`~musicmed_stream.engines.builtin.BuiltinEngine`: the engine
        lets notes ring into the next clip over the chain's crossfade."""
        return {**self.model_dump(), "overlap_fraction": crossfade_fraction}


class MusicgenSettings(Section):
    """``[engine.musicgen]``: keyword arguments of the MusicGen engine (docs/musicgen.md)."""

    section = "engine.musicgen"

    model: str = "facebook/musicgen-small"
    adapter: str = ""
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    top_k: Annotated[int, Field(ge=0, le=2048)] = 250
    guidance_scale: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 3.0
    temperature: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 1.0
    tail_seconds: Annotated[float, Field(ge=0, le=30, allow_inf_nan=False)] = 10.0
    stream_chunk_seconds: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False)] = 2.0
    allow_download: bool = False
    require_gpu: bool = False
    merge_adapter: bool = True
    decode_impl: Literal["auto", "hf", "static"] = "auto"
    cuda_graph: bool = True
    compile: bool = False
    # best-of-N: candidates per segment in one batch, the one nearest the planned emotion kept
    best_of: Annotated[int, Field(ge=1, le=16)] = 1
    scorer: Literal["auto", "features", "clap"] = "auto"
    clap_model: str = ""

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of the MusicGen engine (an empty adapter means none)."""
        options = self.model_dump()
        options["adapter"] = self.adapter or None
        return options


class RemoteSettings(Section):
    """``[engine.remote]``: MusicGen served by a generation service (docs/serving.md).

    The daemon covers for a slow or unreachable service as for any engine: it retries
    (``engine.retries``), plays a loop of the last clip meanwhile, and has the built-in engine
    make the segments the service cannot; the service is asked again for the next clip.
    """

    section = "engine.remote"

    url: str = "http://127.0.0.1:8000"
    token: Annotated[str, Field(max_length=4096)] = ""
    timeout_s: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 3.0
    retry_budget_s: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = 20.0
    backoff_s: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 0.25
    max_backoff_s: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 4.0
    tail_seconds: Annotated[float, Field(ge=0, le=30, allow_inf_nan=False)] = 10.0
    best_of: Annotated[int, Field(ge=1, le=16)] = 1
    sample_rate: Annotated[int, Field(ge=8000, le=192000)] = 32000

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~musicmed_stream.engines.remote.RemoteEngine`."""
        return self.model_dump()


class EngineSettings(Section):
    """``[engine]``: which engine, and the options of each.

    Attributes
    ----------
    name : {"auto", "builtin", "musicgen", "remote"}
        ``auto``: MusicGen where its libraries and weights are on this machine, else the built-in
        engine; ``remote``: a generation service shared by many daemons (``[engine.remote]``).
    stream : bool
        Play a streaming engine's (MusicGen's) first decoded chunks while the rest of the clip is
        generated, when a clip is needed at once (the first clip, a re-target, a late clip).
    retries : int
        A failed clip is tried again this many times (with a doubling backoff from
        ``retry_backoff_seconds``) before the built-in engine makes that segment.
    """

    section = "engine"

    name: EngineName = "auto"
    stream: bool = True
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_backoff_seconds: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 0.5
    builtin: BuiltinSettings = Field(default_factory=BuiltinSettings)
    musicgen: MusicgenSettings = Field(default_factory=MusicgenSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)


__all__ = ["BuiltinSettings", "EngineName", "EngineSettings", "MusicgenSettings", "RemoteSettings"]
