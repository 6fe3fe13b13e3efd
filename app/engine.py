"""vLLM client: prompt -> stream of generated token ids. Closing the stream aborts the request.

Token ids are read either from `choices[0].token_ids` (`return_token_ids: true`, the lean
default) or from `choices[0].logprobs.tokens` as `"token_id:N"` strings
(`logprobs: 0` + `return_tokens_as_token_ids: true`). A streamed chunk may carry several
tokens. Transport errors become `EngineUnavailable` here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import httpx

from app.errors import EngineUnavailable, InvalidRequest

logger = logging.getLogger(__name__)

TokenMode = Literal["logprobs", "token_ids"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float
    repetition_penalty: float
    stop_token_ids: tuple[int, ...]
    add_special_tokens: bool


@dataclass(frozen=True)
class ServedModel:
    id: str
    max_model_len: int | None


def parse_token_ids(choice: dict[str, Any], mode: TokenMode) -> list[int]:
    """Generated token ids carried by one streamed completion choice."""
    if mode == "token_ids":
        return list(choice.get("token_ids") or [])
    logprobs = choice.get("logprobs") or {}
    ids = []
    for token in logprobs.get("tokens") or []:
        prefix, _, number = token.partition(":")
        if prefix != "token_id":
            raise EngineUnavailable("engine returned tokens without ids", kind="malformed")
        ids.append(int(number))
    return ids


def _engine_error_message(response: httpx.Response, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


class TokenStream:
    """An open streaming completion. Iterate for lists of token ids; always `aclose()`."""

    def __init__(self, response: httpx.Response, mode: TokenMode, request_id: str):
        self._response = response
        self._mode = mode
        self.request_id = request_id
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.prompt_tokens: int | None = None  # from the engine's final usage chunk

    async def __aiter__(self) -> AsyncIterator[list[int]]:
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise EngineUnavailable("engine sent malformed stream data",
                                            kind="malformed") from exc
                if "error" in event:
                    logger.error("engine error mid-stream: %s", event["error"])
                    raise EngineUnavailable("the engine failed while generating",
                                            kind="stream_error")
                usage = event.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                    self.prompt_tokens = usage["prompt_tokens"]
                for choice in event.get("choices") or []:
                    ids = parse_token_ids(choice, self._mode)
                    self.completion_tokens += len(ids)
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
                    if ids:
                        yield ids
        except httpx.ReadTimeout as exc:
            raise EngineUnavailable("the engine stopped sending tokens", kind="stall") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable("lost the connection to the engine",
                                    kind="disconnected") from exc

    async def aclose(self) -> None:
        """Close the HTTP stream; vLLM sees the disconnect and aborts the request."""
        await self._response.aclose()


class EngineClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, model: str, mode: TokenMode,
                 stall_timeout_s: float | None = None, health_path: str = "/health"):
        """`stall_timeout_s`: a stream that sends nothing for this long is ended (and, by
        closing it, aborted in the engine); None keeps the client's read timeout.
        `health_path`: what `healthy()` polls (vllm-router: /readiness, up while any engine is)."""
        self._http = http
        self._base = base_url.rstrip("/")
        self._health_path = health_path
        self.model = model
        self.mode = mode
        self._stream_timeout: httpx.Timeout | None = None
        if stall_timeout_s is not None:
            base = http.timeout
            self._stream_timeout = httpx.Timeout(connect=base.connect, read=stall_timeout_s,
                                                 write=base.write, pool=base.pool)

    def _unreachable(self, exc: Exception, level: int = logging.WARNING) -> EngineUnavailable:
        # The engine's address is internal: it goes to the log, not to the client.
        logger.log(level, "engine at %s is unreachable: %r", self._base, exc)
        return EngineUnavailable("the speech engine is unreachable; retry shortly")

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self._http.get(self._base + path)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, logging.DEBUG) from exc

    async def healthy(self) -> bool:
        try:
            return (await self._get(self._health_path)).status_code == HTTPStatus.OK
        except EngineUnavailable:
            return False

    async def served_models(self) -> list[ServedModel]:
        response = await self._get("/v1/models")
        if response.status_code != HTTPStatus.OK:
            raise EngineUnavailable(f"engine /v1/models answered {response.status_code}",
                                    kind="rejected")
        return [
            ServedModel(m["id"], m.get("max_model_len")) for m in response.json().get("data", [])
        ]

    async def metrics_text(self) -> str:
        return (await self._get("/metrics")).text

    async def tokenize(self, text: str) -> list[int]:
        try:
            response = await self._http.post(
                self._base + "/tokenize",
                json={"model": self.model, "prompt": text, "add_special_tokens": False},
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != HTTPStatus.OK:
            raise EngineUnavailable(f"engine /tokenize answered {response.status_code}",
                                    kind="rejected")
        return list(response.json()["tokens"])

    def _body(self, prompt: str, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "repetition_penalty": params.repetition_penalty,
            "stop_token_ids": list(params.stop_token_ids),
            "skip_special_tokens": False,
            "add_special_tokens": params.add_special_tokens,
        }
        if self.mode == "token_ids":
            body["return_token_ids"] = True
        else:
            body["logprobs"] = 0
            body["return_tokens_as_token_ids"] = True
        return body

    async def open_stream(
        self, prompt: str, params: SamplingParams, request_id: str
    ) -> TokenStream:
        """Start a streaming completion; errors before the first token raise here."""
        request = self._http.build_request(
            "POST", self._base + "/v1/completions", json=self._body(prompt, params),
            headers={"X-Request-Id": request_id},
            timeout=self._stream_timeout or self._http.timeout,
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != HTTPStatus.OK:
            body = await response.aread()
            await response.aclose()
            message = _engine_error_message(response, body)
            logger.warning("engine rejected the request (%d): %s",
                           response.status_code, message)
            if response.status_code == HTTPStatus.BAD_REQUEST:
                # vLLM's 400s are about the request (e.g. prompt + max_tokens too long).
                raise InvalidRequest(f"the model rejected the request: {message}",
                                     param="input")
            raise EngineUnavailable(f"the engine answered {response.status_code}", kind="rejected")
        return TokenStream(response, self.mode, request_id)
