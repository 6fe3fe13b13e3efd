"""create_app: routes, error handlers and the lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app import openapi
from app.admission import Admission
from app.auth import ApiKeyMiddleware, ApiKeys, RateLimiter
from app.cloning import ReferenceEncoder
from app.codec.loader import load_codec
from app.codec.worker import Codec, CodecWorker
from app.config import Settings
from app.engine import EngineClient
from app.errors import EngineUnavailable, TTSError, error_envelope, error_headers
from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from app.profiles import check_codec, choose_codec, resolve_profile
from app.reference_audio import ReferenceLimits
from app.routes import info, pages, speech, text, vc, voices, ws
from app.state import AppState, request_id_of
from app.synthesis import SpeechService
from app.uploads import FORM_OVERHEAD_BYTES
from app.voice_store import VoiceStore, open_voice_store

logger = logging.getLogger(__name__)

DEMO_BANNER = """
############################################################################
#  DEMO MODE: the speech LM and/or codec weights were GENERATED locally.   #
#  This service makes NOISE, not speech. Point TTS_MODEL and SNAC_MODEL or #
#  NEUCODEC_MODEL at real weights (HF ids or local directories).           #
############################################################################"""

CodecFactory = Callable[[Settings], Codec]


async def wait_for_engine(engine: EngineClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await engine.healthy():
            return
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"engine did not become healthy within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def _choose_model(engine: EngineClient, wanted: str) -> int | None:
    served = await engine.served_models()
    for model in served:
        if model.id == wanted:
            return model.max_model_len
    if len(served) == 1:
        logger.warning("engine serves %r, not MODEL_NAME %r: using it", served[0].id, wanted)
        engine.model = served[0].id
        return served[0].max_model_len
    raise EngineUnavailable(f"engine does not serve {wanted!r} (serves {[m.id for m in served]})")


def _build_lifespan(
    settings: Settings, codec_factory: CodecFactory, transport: httpx.AsyncBaseTransport | None
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(connect=settings.engine_connect_timeout_s,
                                read=settings.engine_read_timeout_s, write=10.0, pool=10.0)
        limits = httpx.Limits(max_connections=settings.engine_max_connections,
                              max_keepalive_connections=settings.engine_max_connections)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) as http:
            engine = EngineClient(http, base_url=settings.tts_api, model=settings.model_name,
                                  mode=settings.engine_token_mode,
                                  stall_timeout_s=settings.engine_stall_timeout_s,
                                  health_path=settings.engine_health_path)
            await wait_for_engine(engine, settings.engine_startup_timeout_s)
            model_len = await _choose_model(engine, settings.model_name)
            profile = await resolve_profile(engine, settings.model_profile)
            # CODEC=auto: the profile names the codec its vocabulary encodes.
            codec_name = choose_codec(settings.codec, profile.profile)
            codec = await asyncio.to_thread(
                codec_factory, settings.model_copy(update={"codec": codec_name}))
            info_ = codec.info
            check_codec(profile, info_.layout)
            worker = CodecWorker(codec, dynamic_batching=settings.dynamic_batching,
                                 max_batch_size=settings.max_batch_size,
                                 max_batch_frames=settings.max_batch_frames,
                                 batch_wait_s=settings.microsleep)
            worker.start()
            voice_store: VoiceStore | None = None
            try:
                voice_store = await asyncio.to_thread(open_voice_store, settings.voice_store_url,
                                                 settings.data_dir)
                await _warm_up(worker, codec, settings)
                admission = Admission(
                    settings.max_concurrent_streams, settings.max_queued_requests,
                    settings.queue_timeout_s,
                    latency_target_s=settings.admission_first_audio_target_s or None,
                    rtf_margin_target=settings.admission_realtime_margin_target or None)
                metrics = Metrics(codec=worker, admission=admission)
                service = SpeechService(settings, engine, worker, profile, metrics, admission,
                                        sample_rate=info_.sample_rate,
                                        samples_per_frame=info_.samples_per_frame)
                demo = settings.demo if settings.demo is not None else (
                    profile.profile.is_demo or info_.random_weights)
                if demo:
                    logger.warning(DEMO_BANNER)
                references = ReferenceEncoder(
                    worker, ReferenceLimits(settings.reference_min_s, settings.reference_max_s,
                                            settings.reference_silence_dbfs),
                    max_concurrent=settings.max_concurrent_encodes,
                    max_text_chars=settings.max_reference_text_chars)
                app.state.tts = AppState(settings=settings, engine=engine, worker=worker,
                                         codec_info=info_, profile=profile, speech=service,
                                         metrics=metrics, demo=demo, voices=voice_store,
                                         references=references, engine_model_len=model_len,
                                         admission=admission)
                logger.info("ready: engine %s model %s profile %s, codec %s on %s",
                            settings.tts_api, engine.model, profile.profile.name,
                            info_.source, info_.device)
                sampler = asyncio.ensure_future(_sample_codec_margin(worker, admission))
                watcher = asyncio.ensure_future(_watch_engine(engine, service))
                try:
                    yield
                finally:
                    for task in (sampler, watcher):
                        task.cancel()
                    await asyncio.gather(sampler, watcher, return_exceptions=True)
            finally:
                if voice_store is not None:
                    await voice_store.close()
                worker.stop()

    return lifespan


MARGIN_SAMPLE_S = 1.0
ENGINE_WATCH_S = 0.5


async def _watch_engine(engine: EngineClient, service: SpeechService) -> None:
    """Decide when the engine is lost, so every stream still waiting on it ends at once.

    While streams are running, the engine's health is asked twice a second, so a lost engine
    ends them within about a second even when none has a request open right then (a fast
    engine finishes each segment long before its audio has played); two failed probes in a
    row condemn it. When a request loses its own connection (`engine_suspect`), one probe is
    made at once and one failure condemns it: behind a router, one engine dying ends only
    the streams it was serving, while the router still answers for the others.
    """
    failures = 0
    while True:
        suspect = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.engine_suspect.wait(), ENGINE_WATCH_S)
            suspect = True
        service.engine_suspect.clear()
        if service.engine_lost.is_set() or not (suspect or service.admission.in_use):
            failures = 0
            continue
        try:
            healthy = await asyncio.wait_for(engine.healthy(), 2.0)
        except TimeoutError:
            continue  # slow is not gone; the stall timeout covers a hung engine
        failures = 0 if healthy else failures + 1
        if failures >= (1 if suspect else 2):  # one refused probe alone is not a lost engine
            logger.warning("engine health check failed with streams running")
            service.engine_lost.set()
            failures = 0


async def _sample_codec_margin(worker: CodecWorker, admission: Admission) -> None:
    """Feed latency-based admission the codec's real-time margin, once a second.

    The margin is 1 / the codec thread's busy fraction: 2.0 means it could decode twice the
    current load; near 1.0 it has no headroom left and streams start to fall behind.
    """
    loop = asyncio.get_running_loop()
    last_busy, last_at = worker.stats.busy_s, loop.time()
    while True:
        await asyncio.sleep(MARGIN_SAMPLE_S)
        busy, now = worker.stats.busy_s, loop.time()
        fraction = (busy - last_busy) / max(now - last_at, 1e-6)
        last_busy, last_at = busy, now
        if fraction > 0.05:  # an idle codec says nothing about capacity
            admission.observe_realtime_margin(1.0 / fraction)


async def _warm_up(worker: CodecWorker, codec: Codec, settings: Settings) -> None:
    prepare = getattr(codec, "prepare_accelerated", None)
    warm = getattr(codec, "warm_up", None)

    def run() -> None:
        if prepare is not None:
            prepare(bucket_seconds=settings.cuda_graph_batch, max_batch=settings.max_batch_size,
                    compile_model=settings.torch_compile)
        if warm is not None:
            warm([4])

    await worker.run(run)


async def _tts_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TTSError)
    level = logging.WARNING if exc.status >= HTTPStatus.INTERNAL_SERVER_ERROR else logging.INFO
    logger.log(level, "%d %s", exc.status, exc.message)
    return JSONResponse(exc.envelope(), status_code=exc.status,
                        headers={"X-Request-Id": request_id_of(request), **error_headers(exc)})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return JSONResponse(error_envelope(str(exc.detail), type_, None, code),
                        status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    # Starlette runs this handler outside every user middleware: add the request id here.
    return JSONResponse(
        error_envelope("The server had an error while processing your request.",
                       "server_error", None, "internal_error"),
        status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        headers={"X-Request-Id": request_id_of(request)})


# Response headers a browser app on another origin may read.
EXPOSED_HEADERS = ["X-Request-Id", "X-Sample-Rate", "X-TTS-Demo", "X-Ignored-Fields",
                   "X-Instructions-Ignored", "X-Audio-Format", "Retry-After"]
UPLOAD_PATHS = ("/v1/audio/vc", "/v1/audio/voices")


def _middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: ids on everything, CORS (preflights, headers on 401s), keys, sizes."""
    stack = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        stack.append(Middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
            allow_headers=["*"], expose_headers=EXPOSED_HEADERS,
            allow_credentials="*" not in settings.cors_origins))
    keys = ApiKeys.load(settings.api_keys, settings.api_keys_file or None)
    rate = settings.rate_limit_per_minute
    if keys or rate:
        open_paths = set(openapi.open_paths(openapi.api_routes()))
        if settings.public_metrics:
            open_paths.add("/metrics")
        listing = {"/v1/audio/voices", "/v1/audio/speaker", "/v1/audio/models", "/v1/models"}
        stack.append(Middleware(ApiKeyMiddleware, keys, open_paths=open_paths,
                                open_prefixes=("/static/",),
                                open_read_paths=listing if settings.public_voice_list else (),
                                rate_limiter=RateLimiter(rate) if rate else None))
    # uploads.py enforces MAX_UPLOAD_BYTES itself, with a precise message; this is a backstop.
    upload_limit = 2 * (settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    stack.append(Middleware(BodyLimitMiddleware, settings.max_request_bytes,
                            path_limits=dict.fromkeys(UPLOAD_PATHS, upload_limit)))
    return stack


def create_app(
    settings: Settings,
    *,
    codec_factory: CodecFactory = load_codec,
    engine_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """Build the app. Nothing is loaded or connected until the lifespan starts."""
    routes = [
        Route("/v1/audio/speech", speech.create_speech, methods=["POST"]),
        Route("/v1/audio/speaker", info.list_speakers, methods=["GET"]),
        Route("/v1/audio/vc", vc.clone_voice, methods=["POST"]),
        Route("/v1/audio/voices", voices.list_voices, methods=["GET"]),
        Route("/v1/audio/voices", voices.create_voice, methods=["POST"]),
        Route("/v1/audio/voices/{voice_id}", voices.retrieve_voice, methods=["GET"]),
        Route("/v1/audio/voices/{voice_id}", voices.delete_voice, methods=["DELETE"]),
        Route("/v1/audio/models", info.list_audio_models, methods=["GET"]),
        Route("/v1/audio/normalize", text.normalize, methods=["POST"]),
        Route("/synthesize", text.synthesize, methods=["POST"]),
        Route("/synthesize-stream", text.synthesize_stream, methods=["POST"]),
        WebSocketRoute("/ws/synthesize", ws.synthesize_stream),
        WebSocketRoute("/ws/raw", ws.raw_pcm),
        WebSocketRoute("/", ws.raw_pcm),  # seed 000's client connects to the bare host
        Route("/v1/models", info.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", info.retrieve_model, methods=["GET"]),
        Route("/", pages.landing, methods=["GET"]),
        Route("/health", info.health, methods=["GET"]),
        Route("/readyz", info.health, methods=["GET"]),
        Route("/metrics", info.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_route, methods=["GET"]),
        Route("/docs", openapi.docs_route, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=openapi.STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=_middleware(settings),
        lifespan=_build_lifespan(settings, codec_factory, engine_transport),
        exception_handlers={
            TTSError: _tts_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
