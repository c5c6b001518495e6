"""Wire format between :class:`~musicmed_stream.engines.remote.RemoteEngine` and the service.

Request: ``POST /v1/clips`` with ``Authorization: Bearer TOKEN`` and a JSON body
(:class:`ClipRequest`): the planned segment, the seed, whether to stream, ``best_of``, and the
previous clip's tail as base64 float32 (little-endian, interleaved channels).

Response (200): a stream of frames, each one kind byte, a 4-byte big-endian payload length and
the payload:

- ``H`` header, JSON ``{"sample_rate", "channels", "best_of"}``, once at the start;
- ``A`` audio chunk, float32 little-endian mono samples (streaming requests only);
- ``K`` heartbeat, empty (while the clip waits for a slot or is being scored);
- ``C`` the finished clip: a 4-byte JSON length, JSON ``{"segment_index", "sample_rate",
  "channels", "state", "info"}``, then its float32 samples;
- ``E`` error, JSON ``{"error", "message"}``; the stream ends after it.

A request the service refuses before any frame gets a 4xx status with JSON ``{"error", "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import asdict
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from musicmed_stream.engines.base import Clip, Continuation
from musicmed_stream.planner.types import Segment

CLIPS_PATH = "/v1/clips"
INFO_PATH = "/v1/info"
HEALTH_PATH = "/healthz"
MEDIA_TYPE = "application/x-musicmed-frames"
MAX_BODY_BYTES = 64 * 2**20

HEADER, AUDIO, HEARTBEAT, CLIP, ERROR = b"H", b"A", b"K", b"C", b"E"
_LEN = struct.Struct(">I")


class SegmentModel(BaseModel):
    """A :class:`~musicmed_stream.planner.types.Segment` on the wire."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    start_s: float = Field(ge=0, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=600, allow_inf_nan=False)
    valence: float = Field(ge=-1, le=1)
    arousal: float = Field(ge=-1, le=1)
    emotion: str = Field(max_length=200)
    mood: str = Field(max_length=200)
    instrument: str = Field(max_length=200)
    genre: str = Field(max_length=200)

    def to_segment(self) -> Segment:
        return Segment(**self.model_dump())


class TailModel(BaseModel):
    """The previous clip's tail: base64 float32 samples, interleaved channels."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(ge=1000, le=384000)
    channels: int = Field(ge=1, le=8)
    data: str
    state: dict[str, Any] = Field(default_factory=dict)

    def to_continuation(self, max_seconds: float) -> Continuation:
        """The :class:`Continuation`; ``ValueError`` for bad base64, ragged frames, NaN/inf, too long."""
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"previous.data is not base64: {exc}") from None
        if len(raw) % (4 * self.channels):
            raise ValueError(f"previous.data holds {len(raw)} bytes, not whole float32 frames")
        audio = np.frombuffer(raw, dtype="<f4").reshape(-1, self.channels).astype(np.float32)
        if audio.shape[0] > max_seconds * self.sample_rate:
            raise ValueError(f"previous tail longer than {max_seconds:g} s")
        if not np.all(np.isfinite(audio)):
            raise ValueError("previous tail holds NaN or infinite samples")
        return Continuation(audio, self.sample_rate, dict(self.state))


class ClipRequest(BaseModel):
    """Body of ``POST /v1/clips``."""

    model_config = ConfigDict(extra="forbid")

    segment: SegmentModel
    seed: int = Field(ge=0, lt=2**63)
    previous: TailModel | None = None
    stream: bool = True
    best_of: int = Field(1, ge=1)

    @field_validator("seed", mode="before")
    @classmethod
    def _integral_seed(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("seed must be a whole number")
        return value


def encode_request(
    segment: Segment,
    previous: Continuation | None,
    seed: int,
    *,
    stream: bool = True,
    best_of: int = 1,
    tail_seconds: float | None = None,
) -> bytes:
    """JSON body of a clip request; the tail is cut to its last ``tail_seconds`` (+ 1 s for the
    resampler's edge) when given, so that no more audio than the service can use is sent."""
    body: dict[str, Any] = {
        "segment": asdict(segment),
        "seed": int(seed),
        "stream": stream,
        "best_of": best_of,
    }
    if previous is not None and previous.tail.size:
        tail = np.asarray(previous.tail, dtype="<f4")
        tail = tail[:, None] if tail.ndim == 1 else tail
        if tail_seconds is not None:
            keep = math.ceil((tail_seconds + 1.0) * previous.sample_rate)
            tail = tail[-keep:] if tail_seconds > 0 else tail[:0]
        if tail.size:
            body["previous"] = {
                "sample_rate": previous.sample_rate,
                "channels": tail.shape[1],
                "data": base64.b64encode(np.ascontiguousarray(tail).tobytes()).decode("ascii"),
                "state": previous.state,
            }
    return json.dumps(body).encode()


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + _LEN.pack(len(payload)) + payload


def json_frame(kind: bytes, obj: Any) -> bytes:
    return frame(kind, json.dumps(obj).encode())


def audio_frame(chunk: np.ndarray) -> bytes:
    return frame(AUDIO, np.ascontiguousarray(chunk, dtype="<f4").tobytes())


def clip_frame(clip: Clip) -> bytes:
    meta = json.dumps(
        {
            "segment_index": clip.segment_index,
            "sample_rate": clip.sample_rate,
            "channels": clip.audio.shape[1],
            "state": clip.state,
            "info": clip.info,
        },
        default=_jsonable,
    ).encode()
    return frame(CLIP, _LEN.pack(len(meta)) + meta + np.ascontiguousarray(clip.audio, dtype="<f4").tobytes())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def decode_clip(payload: bytes) -> Clip:
    (n,) = _LEN.unpack_from(payload)
    meta = json.loads(payload[4 : 4 + n])
    audio = np.frombuffer(payload[4 + n :], dtype="<f4").reshape(-1, int(meta["channels"])).copy()
    return Clip(
        audio=audio,
        sample_rate=int(meta["sample_rate"]),
        segment_index=int(meta["segment_index"]),
        state=meta.get("state", {}),
        info=meta.get("info", {}),
    )


def decode_audio(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype="<f4").reshape(-1, 1).copy()


class FrameReader:
    """Splits a byte stream into ``(kind, payload)`` frames, whatever the network's chunking."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= 5:
            (n,) = _LEN.unpack_from(self._buf, 1)
            if len(self._buf) < 5 + n:
                break
            out.append((bytes(self._buf[:1]), bytes(self._buf[5 : 5 + n])))
            del self._buf[: 5 + n]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame."""
        return len(self._buf)
