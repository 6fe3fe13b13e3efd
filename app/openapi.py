"""The service's OpenAPI 3.1 document, and the `/openapi.json` and `/docs` endpoints.

`api_routes()` describes every HTTP route as an `ApiRoute`; `build_openapi` turns that list
into the document. Request and response schemas come from the pydantic models in
`app.protocol` (`model_json_schema` semantics, `$defs` hoisted into `components.schemas`), so
required fields, enums and bounds are the ones the server enforces; the document is meant to be
fuzzed (schemathesis), not only read.

Multipart bodies are the form model's fields plus the file fields as `format: binary`, without
the `null` branch of optional fields (a form cannot send null: it leaves the field out).
Every operation takes the API key (`bearerAuth`, or `apiKeyHeader`) except those marked
`public`; the server checks the key only when API keys are configured. Errors that middleware
can answer for any route (401 and 429 off the public paths, 400 and 413 with a body) are added
to every operation they apply to; a route lists only its own (404, 503).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from app import protocol
from app.delivery.formats import MEDIA_TYPES

JsonSchema = dict[str, Any]
BodyType = Literal["application/json", "multipart/form-data"]
HttpMethod = Literal["GET", "POST", "DELETE"]

OPENAPI_VERSION = "3.1.0"
API_TITLE = "tts-proxy"
API_VERSION = "0.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_PAGE = STATIC_DIR / "docs.html"
_PATH_PARAM = re.compile(r"{([^}:]+)}")
BINARY: JsonSchema = {"type": "string", "format": "binary"}

ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "title": "Error",
    "description": "OpenAI's error envelope; every 4xx and 5xx body has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "description": "Written for the client."},
                "type": {"type": "string", "examples": ["invalid_request_error", "server_error",
                                                       "rate_limit_error"]},
                "param": {"type": ["string", "null"],
                          "description": "The request field at fault, if one is."},
                "code": {"type": ["string", "null"], "examples": ["not_found",
                                                                  "payload_too_large"]},
            },
        },
    },
}
ERROR_REF: JsonSchema = {"$ref": SCHEMA_REF.format(model="Error")}
RESPONSE_HEADERS: dict[str, JsonSchema] = {
    "X-Request-Id": {"description": "The client's X-Request-Id if it sent a sane one, else a "
                                    "new id.", "schema": {"type": "string"}},
    "X-Sample-Rate": {"description": "Sample rate of the audio in Hz (mono, 16-bit for pcm).",
                      "schema": {"type": "integer", "examples": [24000]}},
    "X-TTS-Demo": {"description": "`true` when the server runs generated demo weights (noise).",
                   "schema": {"type": "string", "enum": ["true"]}},
    "Retry-After": {"description": "Whole seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1}},
}
ERROR_DESCRIPTIONS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "Invalid request: a field is missing, out of range or unsupported "
                            "(`param` names it).",
    HTTPStatus.UNAUTHORIZED: "Missing or wrong API key (only when the server has API keys "
                             "configured); sent with `WWW-Authenticate: Bearer`.",
    HTTPStatus.NOT_FOUND: "Unknown model or voice.",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "Body or upload over the server's limit.",
    HTTPStatus.TOO_MANY_REQUESTS: "Rate limit of this key, or admission refused at capacity.",
    HTTPStatus.SERVICE_UNAVAILABLE: "Engine unavailable, overloaded or draining; retry later.",
}
_RETRYABLE = (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE)


@dataclass(frozen=True)
class ApiResponse:
    """One response of an operation: media type → pydantic model, raw JSON Schema, or None."""

    description: str
    content: Mapping[str, type[BaseModel] | JsonSchema | None] = field(default_factory=dict)
    headers: tuple[str, ...] = ()  # names in RESPONSE_HEADERS


@dataclass(frozen=True)
class ApiRoute:
    """One HTTP operation. `path` uses OpenAPI templating (`/v1/models/{model}`)."""

    path: str
    method: HttpMethod
    summary: str
    operation_id: str
    responses: Mapping[int, ApiResponse]
    tag: str = "Service"
    description: str = ""
    request_model: type[BaseModel] | None = None
    request_content_type: BodyType | None = None  # None with a model means JSON
    file_fields: tuple[str, ...] = ()  # multipart only; all required
    example: Mapping[str, Any] | None = None  # a valid JSON body, shown and used by "try it"
    path_params: Mapping[str, str] = field(default_factory=dict)  # name → description
    public: bool = False  # served without an API key

    @property
    def body_type(self) -> BodyType | None:
        if self.request_model is None:
            return None
        return self.request_content_type or "application/json"


def error_responses(*statuses: int) -> dict[int, ApiResponse]:
    """Error envelope responses with their standard descriptions."""
    return {
        status: ApiResponse(ERROR_DESCRIPTIONS[status], {"application/json": ERROR_REF},
                            headers=("Retry-After",) if status in _RETRYABLE else ())
        for status in statuses
    }


def _models_used(routes: list[ApiRoute]) -> set[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for route in routes:
        if route.request_model is not None:
            wanted.add((route.request_model, "validation"))
        for response in route.responses.values():
            for body in response.content.values():
                if isinstance(body, type) and issubclass(body, BaseModel):
                    wanted.add((body, "serialization"))
    return wanted


def _schema_name(ref: JsonSchema) -> str:
    return ref["$ref"].rsplit("/", 1)[1]


def _without_null(schema: JsonSchema) -> JsonSchema:
    """A form field's schema: `anyOf: [X, null]` becomes X (keeping title, description, default)."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" not in schema or len(branches) == len(schema["anyOf"]):
        return schema
    outer = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    if len(branches) == 1:
        return {**branches[0], **outer}
    return {**outer, "anyOf": branches}


def _multipart_schema(form: JsonSchema, file_fields: tuple[str, ...]) -> JsonSchema:
    schema = copy.deepcopy(form)
    properties = {name: _without_null(prop) for name, prop in schema.get("properties", {}).items()}
    for name in file_fields:
        properties[name] = {**BINARY, "description": "An audio file: wav, flac, ogg/opus, mp3, "
                                                     "m4a/aac, webm, aiff or caf."}
    schema["properties"] = properties
    schema["required"] = [*file_fields, *schema.get("required", ())]
    return schema


def _content(body: type[BaseModel] | JsonSchema | None,
             refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], JsonSchema],
             mode: JsonSchemaMode) -> JsonSchema:
    if body is None:
        return {}
    if isinstance(body, dict):
        return {"schema": body}
    return {"schema": refs[(body, mode)]}


def _operation(route: ApiRoute, refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], JsonSchema],
               schemas: Mapping[str, JsonSchema]) -> JsonSchema:
    names = _PATH_PARAM.findall(route.path)
    if set(names) != set(route.path_params):
        raise ValueError(f"{route.method} {route.path}: path_params {sorted(route.path_params)} "
                         f"do not match the template's {names}")
    operation: JsonSchema = {"operationId": route.operation_id, "summary": route.summary,
                             "tags": [route.tag]}
    if route.description:
        operation["description"] = route.description
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "description": route.path_params[name],
             "schema": {"type": "string", "minLength": 1}}
            for name in names
        ]
    if route.request_model is not None:
        assert route.body_type is not None
        ref = refs[(route.request_model, "validation")]
        media: JsonSchema
        if route.body_type == "multipart/form-data":
            media = {"schema": _multipart_schema(schemas[_schema_name(ref)], route.file_fields),
                     "encoding": {name: {"contentType": "audio/*, application/octet-stream"}
                                  for name in route.file_fields}}
        else:
            if route.file_fields:
                raise ValueError(f"{route.method} {route.path}: file fields need multipart")
            media = {"schema": ref}
        if route.example is not None:
            media["example"] = dict(route.example)
        operation["requestBody"] = {"required": True, "content": {route.body_type: media}}
    # Errors that middleware adds, whatever the handler: key and rate limit, body checks.
    implied = [] if route.public else [HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS]
    if route.request_model is not None:
        implied += [HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE]
    responses = {**error_responses(*implied), **route.responses}
    operation["responses"] = {
        str(int(status)): _response(responses[status], refs) for status in sorted(responses)
    }
    if route.public:
        operation["security"] = []
    return operation


def _response(response: ApiResponse,
              refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], JsonSchema]) -> JsonSchema:
    out: JsonSchema = {"description": response.description}
    headers = ("X-Request-Id", *response.headers)
    out["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    if response.content:
        out["content"] = {media: _content(body, refs, "serialization")
                          for media, body in response.content.items()}
    return out


def build_openapi(*, title: str, version: str, routes: list[ApiRoute]) -> JsonSchema:
    """The OpenAPI 3.1 document for `routes` (a fresh dict; safe to mutate)."""
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.path, route.method)
        if key in seen:
            raise ValueError(f"{route.method} {route.path} is described twice")
        seen.add(key)
    refs, defs = models_json_schema(sorted(_models_used(routes), key=lambda m: (
        m[0].__name__, m[1])), ref_template=SCHEMA_REF)
    schemas: dict[str, JsonSchema] = {**defs.get("$defs", {}), "Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, JsonSchema]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, schemas)
    tags = list(dict.fromkeys(route.tag for route in routes))
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title, "version": version,
            "description": "OpenAI-compatible streaming text-to-speech. Errors use OpenAI's "
                           "envelope `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. "
                           "API keys are optional: without configured keys every request is "
                           "served; with them, send `Authorization: Bearer <key>`.",
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": RESPONSE_HEADERS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "An API key as a bearer token. Checked only when "
                                              "the server is configured with API keys."},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                 "description": "The same key in X-API-Key, for clients that "
                                                "cannot send Authorization."},
            },
        },
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
    }
    return copy.deepcopy(document)  # pydantic's refs and the module's schemas are shared


def enum_values(schema: JsonSchema) -> list[Any]:
    """The values a (possibly nullable) enum or const schema allows, null excluded."""
    values: list[Any] = []
    for branch in (schema, *schema.get("anyOf", ())):
        values += branch.get("enum", [branch["const"]] if "const" in branch else [])
    return [value for value in values if value is not None]


def _audio_response(formats_of: type[BaseModel], field_name: str, *, sse: bool) -> ApiResponse:
    formats = enum_values(formats_of.model_json_schema()["properties"][field_name])
    content: dict[str, JsonSchema | None] = {MEDIA_TYPES[fmt]: BINARY for fmt in formats}
    mapping = ", ".join(f"{fmt} → {MEDIA_TYPES[fmt]}" for fmt in formats)
    description = f"Audio in the requested `{field_name}` ({mapping})."
    description += (" pcm is 16-bit little-endian mono at X-Sample-Rate. Streamed (the default) "
                    "unless `stream` is false; a failure after the first byte truncates the "
                    "body.")
    if sse:
        content["text/event-stream"] = {
            "type": "string",
            "description": "With `stream_format: \"sse\"`: `speech.audio.delta` events "
                           "(base64 `audio`), then one `speech.audio.done` with `usage`.",
        }
        description += " With `stream_format: \"sse\"`, server-sent events instead."
    return ApiResponse(description, content, headers=("X-Sample-Rate", "X-TTS-Demo"))


_VOICE_ITEM: JsonSchema = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "audio.voice"},
        "name": {"type": "string"},
        "type": {"enum": ["builtin", "alias", "audio_sample"]},
        "speaker": {"type": "string", "description": "The built-in speaker an alias maps to."},
        "created_at": {"type": "integer", "description": "Unix seconds (custom voices)."},
    },
}
_VOICE_LIST: JsonSchema = {
    "type": "object",
    "description": "Built-in speakers, OpenAI voice aliases, then custom voices (oldest first).",
    "properties": {"object": {"const": "list"},
                   "data": {"type": "array", "items": _VOICE_ITEM},
                   "voices": {"type": "array", "items": _VOICE_ITEM,
                              "description": "The same list, for Open WebUI's voice picker."}},
}
_AUDIO_MODELS: JsonSchema = {
    "type": "object",
    "required": ["models"],
    "properties": {"models": {"type": "array", "items": {
        "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}},
}
_HEALTH: JsonSchema = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["ok", "unavailable", "draining"]},
        "model_loaded": {"type": "boolean",
                         "description": "The engine answers and the codec worker runs."},
        "device": {"type": "string", "description": "The codec's device."},
        "uptime_seconds": {"type": "number", "minimum": 0},
        "demo": {"type": "boolean"},
        "engine": {"type": "object", "description": "reachable, model, profile"},
        "codec": {"type": "object",
                  "description": "loaded, source, random_weights, device, dtype"},
        "active_streams": {"type": "integer", "minimum": 0},
        "queued_requests": {"type": "integer", "minimum": 0},
        "warning": {"type": "string"},
    },
}
_JSON_DOCUMENT: JsonSchema = {"type": "object", "description": "This OpenAPI 3.1 document."}
_HTML: JsonSchema = {"type": "string"}
_SPEECH_EXAMPLE = {"input": "Ye encik, apa yang saya boleh tolong?", "response_format": "wav"}


def api_routes() -> list[ApiRoute]:
    """Every HTTP route of the service (the WebSocket and /static are not operations)."""
    errors = error_responses
    speech = protocol.SpeechRequest
    normalize_request = protocol.NormalizeRequest
    normalize_response = protocol.NormalizeResponse
    synthesize_request = protocol.SynthesizeRequest
    return [
        ApiRoute(
            "/v1/audio/speech", "POST", "Synthesise speech (OpenAI audio.speech)", "createSpeech",
            tag="Audio", request_model=speech, example=_SPEECH_EXAMPLE,
            description="Unset sampling and streaming fields fall back to the server's "
                        "DEFAULT_* settings. `voice` is a speaker, an OpenAI voice name or a "
                        "custom voice `{\"id\": \"voice_...\"}`.",
            responses={HTTPStatus.OK: _audio_response(speech, "response_format", sse=True),
                       **errors(404, 503)},
        ),
        ApiRoute(
            "/v1/audio/vc", "POST", "Speak text in the voice of an uploaded clip", "cloneVoice",
            tag="Audio", request_model=protocol.VoiceCloneForm,
            request_content_type="multipart/form-data", file_fields=("reference_audio",),
            description="`reference_audio` is 1–30 s of speech and `reference_text` its "
                        "transcript; streams like /v1/audio/speech.",
            responses={HTTPStatus.OK: _audio_response(protocol.VoiceCloneForm, "response_format",
                                                      sse=False),
                       **errors(404, 503)},
        ),
        ApiRoute(
            "/synthesize", "POST", "Synthesise a whole file (seed REST form)", "synthesize",
            tag="Audio", request_model=synthesize_request,
            example={"text": "Hello, world!", "format": "wav"},
            responses={HTTPStatus.OK: _audio_response(synthesize_request, "format", sse=False),
                       **errors(404, 503)},
        ),
        ApiRoute(
            "/synthesize-stream", "POST", "Synthesise and stream (seed REST form)",
            "synthesizeStream", tag="Audio", request_model=synthesize_request,
            example={"text": "Hello, world!", "format": "mp3"},
            description="The same audio as /synthesize, streamed as it is made.",
            responses={HTTPStatus.OK: _audio_response(synthesize_request, "format", sse=False),
                       **errors(404, 503)},
        ),
        ApiRoute(
            "/v1/audio/normalize", "POST", "Show the text as it would be spoken", "normalizeText",
            tag="Audio", request_model=normalize_request,
            example={"text": "**Hello**, world! How are you?"},
            responses={HTTPStatus.OK: ApiResponse("The cleaned text and its sentences.",
                                                  {"application/json": normalize_response})},
        ),
        ApiRoute(
            "/v1/audio/speaker", "GET", "List the built-in speakers (seed endpoint)",
            "listSpeakers", tag="Voices",
            responses={HTTPStatus.OK: ApiResponse("The configured speaker names.", {
                "application/json": {"type": "array", "items": {"type": "string"},
                                     "examples": [["husein", "idayu", "jenny"]]}})},
        ),
        ApiRoute(
            "/v1/audio/voices", "GET", "List voices", "listVoices", tag="Voices",
            responses={HTTPStatus.OK: ApiResponse("Every voice `voice` accepts.",
                                                  {"application/json": _VOICE_LIST})},
        ),
        ApiRoute(
            "/v1/audio/voices", "POST", "Create a custom voice from a clip", "createVoice",
            tag="Voices", request_model=protocol.VoiceCreateForm,
            request_content_type="multipart/form-data", file_fields=("audio_sample",),
            description="Encodes the clip once; use it as `voice: {\"id\": ...}` on speech.",
            responses={HTTPStatus.OK: ApiResponse("The new voice.", {
                "application/json": protocol.VoiceObject}), **errors(503)},
        ),
        ApiRoute(
            "/v1/audio/voices/{voice_id}", "GET", "Retrieve a custom voice", "retrieveVoice",
            tag="Voices", path_params={"voice_id": "A custom voice id, `voice_...`."},
            responses={HTTPStatus.OK: ApiResponse("The voice.", {
                "application/json": protocol.VoiceObject}), **errors(404)},
        ),
        ApiRoute(
            "/v1/audio/voices/{voice_id}", "DELETE", "Delete a custom voice", "deleteVoice",
            tag="Voices", path_params={"voice_id": "A custom voice id, `voice_...`."},
            responses={HTTPStatus.OK: ApiResponse("Deleted.", {
                "application/json": protocol.VoiceDeleted}), **errors(404)},
        ),
        ApiRoute(
            "/v1/audio/models", "GET", "List speech models (Open WebUI)", "listAudioModels",
            tag="Models",
            responses={HTTPStatus.OK: ApiResponse("MODEL_NAME and its aliases.",
                                                  {"application/json": _AUDIO_MODELS})},
        ),
        ApiRoute(
            "/v1/models", "GET", "List models", "listModels", tag="Models",
            responses={HTTPStatus.OK: ApiResponse("MODEL_NAME and its aliases.", {
                "application/json": protocol.ModelList})},
        ),
        ApiRoute(
            "/v1/models/{model}", "GET", "Retrieve a model", "retrieveModel", tag="Models",
            path_params={"model": "A model id; may contain `/`."},
            responses={HTTPStatus.OK: ApiResponse("The model.", {
                "application/json": protocol.ModelCard}), **errors(404)},
        ),
        ApiRoute(
            "/health", "GET", "Engine and codec health", "health", public=True,
            responses={
                HTTPStatus.OK: ApiResponse("Ready.", {"application/json": _HEALTH}),
                HTTPStatus.SERVICE_UNAVAILABLE: ApiResponse(
                    "Engine unreachable or codec down (same body).",
                    {"application/json": _HEALTH}),
            },
        ),
        ApiRoute(
            "/readyz", "GET", "Readiness probe (same as /health)", "readiness", public=True,
            responses={
                HTTPStatus.OK: ApiResponse("Ready.", {"application/json": _HEALTH}),
                HTTPStatus.SERVICE_UNAVAILABLE: ApiResponse(
                    "Not ready (same body).", {"application/json": _HEALTH}),
            },
        ),
        ApiRoute(
            "/metrics", "GET", "Prometheus metrics", "metrics",
            responses={HTTPStatus.OK: ApiResponse("Prometheus text exposition format 0.0.4.", {
                "text/plain": {"type": "string"}})},
        ),
        ApiRoute(
            "/", "GET", "Playground page (a WebSocket on / is seed 000's raw PCM mode)", "index",
            public=True,
            responses={HTTPStatus.OK: ApiResponse("HTML.", {"text/html": _HTML})},
        ),
        ApiRoute(
            "/openapi.json", "GET", "This OpenAPI document", "openapi", public=True,
            responses={HTTPStatus.OK: ApiResponse("OpenAPI 3.1.",
                                                  {"application/json": _JSON_DOCUMENT})},
        ),
        ApiRoute(
            "/docs", "GET", "API reference page", "docs", public=True,
            responses={HTTPStatus.OK: ApiResponse("HTML; loads /static/docs.js and docs.css.",
                                                  {"text/html": _HTML})},
        ),
    ]


def open_paths(routes: list[ApiRoute]) -> frozenset[str]:
    """Paths documented as served without an API key (for the API key middleware)."""
    return frozenset(route.path for route in routes if route.public)


@functools.cache
def openapi_document() -> bytes:
    """The service's document as JSON bytes, built on first use (the routes are constant)."""
    document = build_openapi(title=API_TITLE, version=API_VERSION, routes=api_routes())
    return json.dumps(document, separators=(",", ":")).encode()


async def openapi_route(request: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")


async def docs_route(request: Request) -> FileResponse:
    return FileResponse(DOCS_PAGE, media_type="text/html; charset=utf-8")
