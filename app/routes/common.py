"""Helpers shared by routes: request body parsing into protocol models."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from app.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """First validation error as (client message, param)."""
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
    param = loc[0] if loc else None
    where = ".".join(loc)
    return (f"{where}: {error['msg']}" if where else error["msg"]), param


def parse_model(model: type[M], data: object) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise InvalidRequest(message, param=param) from None


async def parse_json(request: Request, model: type[M]) -> M:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    return parse_model(model, data)
