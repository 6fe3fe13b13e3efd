"""Exceptions and their mapping to HTTP status and OpenAI's error envelope.

    TTSError
    ├── InvalidRequest      400  bad field value          (invalid_request_error)
    │   └── Unsupported     400  valid OpenAI value we do not implement
    ├── NotFound            404  unknown model or voice id (invalid_request_error)
    ├── PayloadTooLarge     413  upload over the limit
    ├── Overloaded          503  too many streams          (server_error)
    └── EngineUnavailable   503  vLLM down or failing      (server_error)

Messages are written for clients: never put `str()` of an internal exception in one.
"""

from __future__ import annotations

from http import HTTPStatus


class TTSError(Exception):
    status = HTTPStatus.INTERNAL_SERVER_ERROR
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return error_envelope(self.message, self.type, self.param, self.code)


class InvalidRequest(TTSError):
    status = HTTPStatus.BAD_REQUEST
    type = "invalid_request_error"


class Unsupported(InvalidRequest):
    code = "unsupported_value"


class NotFound(TTSError):
    status = HTTPStatus.NOT_FOUND
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(TTSError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(TTSError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "overloaded"


class EngineUnavailable(TTSError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "engine_unavailable"


def error_envelope(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
