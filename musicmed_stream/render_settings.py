"""The ``[render]`` section: how ``musicmed-stream render`` writes the session file.

Kept apart from :mod:`musicmed_stream.render` so that reading the configuration does not import
the renderer.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import model_validator

from musicmed_stream.bounds import Section

AudioFormat = Literal["wav", "flac"]
SampleFormat = Literal["PCM_16", "PCM_24", "FLOAT"]
FORMATS: tuple[str, ...] = get_args(AudioFormat)
SAMPLE_FORMATS: tuple[str, ...] = get_args(SampleFormat)


class RenderSettings(Section):
    """``[render]``: the session file of ``render`` (``--format`` and ``--sample-format`` override).

    Attributes
    ----------
    format : {"wav", "flac"}
        Container of ``session.wav`` / ``session.flac``.
    sample_format : {"PCM_16", "PCM_24", "FLOAT"}
        Samples of the session file: 24-bit PCM by default (a 15-minute stereo session is 238 MB as
        float32, 119 MB as 24-bit, 79 MB as 16-bit); ``FLOAT`` in WAV only. The clips under
        ``clips/`` stay float32 (a resumed render must be bit-identical).
    """

    section = "render"

    format: AudioFormat = "wav"
    sample_format: SampleFormat = "PCM_24"

    @model_validator(mode="after")
    def _float_in_wav(self) -> RenderSettings:
        if self.sample_format == "FLOAT" and self.format != "wav":
            raise ValueError(
                f"render.sample_format = FLOAT is for WAV only (render.format = {self.format}): use PCM_24"
            )
        return self


__all__ = ["FORMATS", "SAMPLE_FORMATS", "AudioFormat", "RenderSettings", "SampleFormat"]
