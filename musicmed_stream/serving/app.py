"""The Ray Serve deployment: one MusicGen engine per replica, clips from many daemons in one batch.

Each replica loads a :class:`MusicgenEngine` from ``[engine.musicgen]`` and runs a
:class:`~musicmed_stream.engines.musicgen.batched.ClipScheduler` in a thread: requests become
clip jobs on the batch's slots, their decoded chunks and finished clips come back to the request
through an asyncio queue and leave as frames (``protocol``). With ``batching = "serve_batch"``
Ray's ``@serve.batch`` groups the requests that arrive within ``batch_wait_timeout_s`` into a
wave and the next wave starts when the last one has finished; with ``continuous`` (the default)
a request joins any free slot at the next look at the batch.

Needs the ``serve`` extra (``ray[serve]``, which brings FastAPI). No ``from __future__ import
annotations`` here: FastAPI reads the routes' parameter types at run time.
"""

import asyncio
import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve

from musicmed_stream.engines.base import Clip
from musicmed_stream.errors import MusicMedError
from musicmed_stream.serving import protocol
from musicmed_stream.serving.settings import ServeSettings

log = logging.getLogger(__name__)

# No interactive docs or schema routes: everything but /healthz is behind the token.
api = FastAPI(title="musicmed-stream generation service", docs_url=None, redoc_url=None, openapi_url=None)


def error_response(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def validation_message(exc: ValidationError) -> str:
    """``segment.valence: Input should be less than or equal to 1`` for the first problem."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{where}: {err['msg']}"


@serve.deployment
@serve.ingress(api)
class MusicgenService:
    """A replica: the engine, its batch scheduler and the HTTP routes."""

    def __init__(self, settings: dict[str, Any], engine_options: dict[str, Any]) -> None:
        import torch

        from musicmed_stream.engines.musicgen.batched import ClipScheduler
        from musicmed_stream.engines.musicgen.engine import MusicgenEngine

        self.settings = ServeSettings(**settings)
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        self.engine = MusicgenEngine(**engine_options)
        policy = "wave" if self.settings.batching == "serve_batch" else "continuous"
        self.scheduler = ClipScheduler(
            self.engine,
            slots=self.settings.max_batch_size,
            policy=policy,
            columns_every=self.settings.columns_every,
            max_columns=self.settings.max_columns,
        )
        self.scheduler.start()
        self._wave.set_max_batch_size(self.settings.max_batch_size)
        self._wave.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        self._waves: set[asyncio.Future] = set()
        self._scoring = threading.Lock()  # one best-of scoring at a time (librosa/CLAP on the CPU)
        log.info(
            "generation service: %s on %s, %d slots, %s batching",
            self.engine.model_name,
            self.engine.loaded.device,
            self.settings.max_batch_size,
            self.settings.batching,
        )

    def __del__(self) -> None:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            scheduler.stop()

    # -- routes ---------------------------------------------------------------------------------

    @api.get(protocol.HEALTH_PATH)
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get(protocol.INFO_PATH)
    async def info(self, request: Request) -> Any:
        if not self._authorized(request):
            return error_response(401, "unauthorized", "missing or wrong token")
        return {
            "model": self.engine.model_name,
            "device": self.engine.loaded.device,
            "sample_rate": self.engine.sample_rate,
            "channels": self.engine.channels,
            "slots": self.settings.max_batch_size,
            "batching": self.settings.batching,
            "active": self.scheduler.active,
            "pending": len(self.scheduler.pending),
            "steps": self.scheduler.steps,
            "max_best_of": self.settings.max_best_of,
            "pid": os.getpid(),
        }

    @api.post(protocol.CLIPS_PATH)
    async def clips(self, request: Request) -> Any:
        if not self._authorized(request):
            return error_response(401, "unauthorized", "missing or wrong token")
        body = await request.body()
        if len(body) > protocol.MAX_BODY_BYTES:
            return error_response(413, "too_large", f"request over {protocol.MAX_BODY_BYTES} bytes")
        try:
            req = protocol.ClipRequest.model_validate_json(body)
            segment = req.segment.to_segment()
            previous = req.previous.to_continuation(self.settings.max_tail_seconds) if req.previous else None
        except ValidationError as exc:
            return error_response(400, "bad_request", validation_message(exc))
        except ValueError as exc:
            return error_response(400, "bad_request", str(exc))
        if req.best_of > self.settings.max_best_of:
            return error_response(
                400,
                "bad_request",
                f"best_of {req.best_of} exceeds this service's {self.settings.max_best_of}",
            )
        if req.best_of > self.settings.max_batch_size:
            return error_response(
                400,
                "bad_request",
                f"best_of {req.best_of} exceeds the batch's {self.settings.max_batch_size} slots",
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        from musicmed_stream.engines.musicgen.engine import candidate_seed

        stream = req.stream and req.best_of == 1
        try:
            jobs = [
                self.scheduler.prepare(
                    segment,
                    previous,
                    candidate_seed(req.seed, i),
                    stream=stream,
                    cancel=cancel,
                    sink=lambda item, i=i: loop.call_soon_threadsafe(queue.put_nowait, (i, *item)),
                )
                for i in range(req.best_of)
            ]
        except MusicMedError as exc:
            return error_response(400, "bad_request", str(exc))
        return StreamingResponse(
            self._frames(jobs, segment, queue, cancel, req.best_of), media_type=protocol.MEDIA_TYPE
        )

    # -- batching -------------------------------------------------------------------------------

    @serve.batch(
        max_batch_size=8, batch_wait_timeout_s=0.05, batch_size_fn=lambda groups: sum(map(len, groups))
    )
    async def _wave(self, groups: list[list[Any]]) -> list[None]:
        """``serve_batch``: the jobs of the requests Ray grouped, queued together; returns when
        all of them have finished, so that Ray starts the next wave only then."""
        jobs = [job for group in groups for job in group]
        self.scheduler.enqueue(jobs)
        while not all(job.finished for job in jobs):
            await asyncio.sleep(0.01)
        return [None] * len(groups)

    async def _frames(
        self,
        jobs: list[Any],
        segment: Any,
        queue: asyncio.Queue[tuple[int, str, Any]],
        cancel: threading.Event,
        n: int,
    ) -> AsyncIterator[bytes]:
        """Frames of one request: header, chunks (or heartbeats), then the clip or an error."""
        wave = None
        try:
            yield protocol.json_frame(
                protocol.HEADER, {"sample_rate": self.engine.sample_rate, "channels": 1, "best_of": n}
            )
            if self.settings.batching == "serve_batch":
                wave = asyncio.ensure_future(self._wave(jobs))
            else:
                self.scheduler.enqueue(jobs)
            clips: dict[int, Clip] = {}
            while len(clips) < n:
                try:
                    index, kind, value = await asyncio.wait_for(queue.get(), self.settings.heartbeat_s)
                except TimeoutError:
                    yield protocol.frame(protocol.HEARTBEAT)
                    continue
                if kind == "audio":
                    yield protocol.audio_frame(value)
                elif kind == "clip":
                    clips[index] = value
                else:
                    yield self._error_frame(value)
                    return
            if n == 1:
                yield protocol.clip_frame(clips[0])
                return
            scoring = asyncio.ensure_future(
                asyncio.to_thread(self._pick, [clips[i] for i in range(n)], segment)
            )
            while not scoring.done():
                done, _ = await asyncio.wait({scoring}, timeout=self.settings.heartbeat_s)
                if not done:
                    yield protocol.frame(protocol.HEARTBEAT)
            yield protocol.clip_frame(scoring.result())
        except Exception as exc:  # after the 200 status: the error goes out as a frame
            log.exception("clip request failed")
            yield self._error_frame(exc)
        finally:
            cancel.set()  # the client went away or the clip is done: free its slots
            if wave is not None:  # it ends once its jobs have (kept referenced until then)
                self._waves.add(wave)
                wave.add_done_callback(self._waves.discard)

    def _pick(self, clips: list[Clip], segment: Any) -> Clip:
        from musicmed_stream.evaluation.selection import pick_best

        with self._scoring:
            return pick_best(clips, segment, self.engine.scorer)

    @staticmethod
    def _error_frame(exc: BaseException) -> bytes:
        from musicmed_stream.errors import GenerationCancelled

        kind = "cancelled" if isinstance(exc, GenerationCancelled) else type(exc).__name__
        return protocol.json_frame(protocol.ERROR, {"error": kind, "message": str(exc)})

    def _authorized(self, request: Request) -> bool:
        token = self.settings.token
        if not token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Constant-time comparison: the time taken tells nothing about how much of the token matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def build_app(settings: ServeSettings, engine_options: dict[str, Any]) -> Any:
    """The Serve application for ``settings`` (replicas, resources, autoscaling passed through)."""
    options: dict[str, Any] = {
        "name": "MusicgenService",
        "ray_actor_options": {"num_cpus": settings.cpus_per_replica, "num_gpus": settings.gpus_per_replica},
        "max_ongoing_requests": settings.ongoing_requests,
    }
    if settings.autoscaling is not None:
        options["autoscaling_config"] = settings.autoscaling
    else:
        options["num_replicas"] = settings.replicas
    return MusicgenService.options(**options).bind(settings.model_dump(), dict(engine_options))


def start_service(settings: ServeSettings, engine_options: dict[str, Any], *, blocking: bool = False) -> None:
    """Start (or join) Ray, start Serve's HTTP proxy on ``host:port`` and deploy the service."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address or None, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(
        build_app(settings, engine_options),
        name=settings.app_name,
        route_prefix=settings.route_prefix,
        blocking=blocking,
    )


def stop_service(shutdown_ray: bool = True) -> None:
    """Stop Serve (proxy, controller, replicas) and, unless told otherwise, the local Ray instance."""
    import ray

    if ray.is_initialized():
        serve.shutdown()
        if shutdown_ray:
            ray.shutdown()
