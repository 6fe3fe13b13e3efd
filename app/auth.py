"""API keys and per-client rate limits, as pure ASGI middleware (HTTP and WebSocket).

With keys configured, an HTTP request must send `Authorization: Bearer <key>` (or
`X-API-Key: <key>`) or it gets 401 with OpenAI's envelope (code `invalid_api_key`) and
`WWW-Authenticate: Bearer`. A WebSocket may also put the key in the `api_key` query parameter,
since browsers cannot set headers on one; without a good key the handshake is closed with 1008
before it is accepted (uvicorn answers that with HTTP 403). Open paths, `/health` always among
them, and CORS preflight requests pass without a key.

Keys are compared in constant time: the SHA-256 of the offered key against the SHA-256 of every
configured key, with no early exit, so neither the position of a matching key nor the length of
a near miss shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import TooManyRequests, Unauthorized
from app.middleware import app_path, error_response

ALWAYS_OPEN_PATHS = frozenset({"/health"})
KEY_ID_CHARS = 12  # hex digits of a key's SHA-256 that name it in logs, metrics and buckets
MISSING_KEY = ("You didn't provide an API key. Send it in an Authorization header using Bearer "
               "auth (Authorization: Bearer YOUR_KEY).")
INVALID_KEY = "Incorrect API key provided."
WEBSOCKET_POLICY_VIOLATION = 1008


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, held only as SHA-256 digests. Empty means authentication is off."""

    _digests: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def load(cls, keys: Iterable[str] = (), file: str | Path | None = None) -> ApiKeys:
        """Keys from a list (API_KEYS) and/or a file (API_KEYS_FILE: one key a line, blank
        lines and lines starting with `#` ignored). Surrounding whitespace is stripped;
        duplicates count once. A file that cannot be read raises OSError: a service that was
        told to require keys must not start without them."""
        found = [key.strip() for key in keys]
        if file is not None:
            for line in Path(file).read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(line)
        digests = dict.fromkeys(_digest(key) for key in found if key)
        return cls(tuple(digests))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, candidate: str) -> str | None:
        """The id of the configured key equal to `candidate` (a digest prefix, safe to log),
        or None. Takes the same time whichever key matches, or none."""
        offered = _digest(candidate)
        match: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(offered, digest):
                match = digest
        return None if match is None else match.hex()[:KEY_ID_CHARS]


class RateLimiter:
    """A token bucket per identity (API key id, or client address when keys are off).

    Each bucket holds up to `burst` requests (default: a minute's worth) and refills at
    `requests_per_minute / 60` per second. `clock` returns seconds (monotonic); tests inject
    one. Buckets that have refilled completely are forgotten once more than `max_identities`
    are held, so a stream of new client addresses cannot grow memory without bound.
    """

    def __init__(self, requests_per_minute: float, *, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_identities: int = 10_000) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.rate_per_s = requests_per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, math.ceil(requests_per_minute)))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._max_identities = max_identities
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        """Identities with a bucket held."""
        return len(self._buckets)

    def check(self, identity: str) -> float | None:
        """Take one request from `identity`'s bucket: None if allowed, else the seconds until
        one more would be."""
        now = self._clock()
        tokens, at = self._buckets.pop(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[identity] = (tokens, now)
        if len(self._buckets) > self._max_identities:
            self._forget_full(now)
        return None if allowed else (1.0 - tokens) / self.rate_per_s

    def _forget_full(self, now: float) -> None:
        # Least recently used first: a full bucket is the same as no bucket.
        for identity, (tokens, at) in list(self._buckets.items()):
            if len(self._buckets) <= self._max_identities:
                return
            if tokens + (now - at) * self.rate_per_s >= self.burst:
                del self._buckets[identity]


class ApiKeyMiddleware:
    """Requires an API key on every HTTP request and WebSocket outside the open paths.

    `open_paths` are exact app paths (without root_path) and `open_prefixes` path prefixes that
    need no key, `open_read_paths` paths that need none for GET and HEAD; `/health` is always open. With `rate_limiter`, each key (or, with no keys
    configured, each client address) is limited; over the limit an HTTP request gets 429
    (code `rate_limit_exceeded`, `Retry-After`) and a WebSocket handshake is closed with 1008.
    Open paths and preflights are not rate limited (health probes must always get through).
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys, *, open_paths: Collection[str] = (),
                 open_prefixes: Collection[str] = (), open_read_paths: Collection[str] = (),
                 rate_limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = ALWAYS_OPEN_PATHS | frozenset(open_paths)
        # Open for GET/HEAD only: listing voices needs no key, creating one does.
        self.open_read_paths = frozenset(open_read_paths)
        self.open_prefixes = tuple(open_prefixes)
        self.rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        identity: str | None
        if self.keys:
            offered = _offered_key(scope, headers)
            identity = None if offered is None else self.keys.identify(offered)
            if identity is None:
                message = MISSING_KEY if offered is None else INVALID_KEY
                await self._refuse(scope, receive, send, Unauthorized(message),
                                   {"WWW-Authenticate": "Bearer"})
                return
            identity = f"key:{identity}"
        else:
            client = scope.get("client")
            identity = f"ip:{client[0] if client else '-'}"
        if self.rate_limiter is not None:
            wait_s = self.rate_limiter.check(identity)
            if wait_s is not None:
                exc = TooManyRequests("Rate limit reached for requests; retry after the time "
                                      "in the Retry-After header.", retry_after_s=wait_s)
                await self._refuse(scope, receive, send, exc, {})
                return
        scope.setdefault("state", {})["api_key_id"] = identity
        await self.app(scope, receive, send)

    def _is_open(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False  # open paths are pages and probes; "/" also takes a WebSocket
        path = app_path(scope)
        if path in self.open_paths or path.startswith(self.open_prefixes):
            return True
        if (path in self.open_read_paths and scope["type"] == "http"
                and scope["method"] in ("GET", "HEAD")):
            return True
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            # A CORS preflight never carries credentials: browsers send it without them.
            return Headers(scope=scope).get("access-control-request-method") is not None
        return False

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send,
                      exc: Unauthorized | TooManyRequests, headers: dict[str, str]) -> None:
        if scope["type"] == "http":
            await error_response(exc, headers)(scope, receive, send)
            return
        message = await receive()  # websocket.connect, which the protocol says comes first
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION,
                        "reason": exc.code or ""})


def _offered_key(scope: Scope, headers: Headers) -> str | None:
    """The key the client sent: Bearer token, else X-API-Key, else (WebSocket) ?api_key=."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    if scope["type"] == "websocket":
        query_string: bytes = scope.get("query_string", b"")
        query = parse_qs(query_string.decode("latin-1"))
        values = query.get("api_key")
        if values and values[0].strip():
            return values[0].strip()
    return None
