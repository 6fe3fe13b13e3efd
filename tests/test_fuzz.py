"""No 5xx from any input: schemathesis over every operation in /openapi.json, then hand-written
hostile requests (every route × method, broken encodings, nesting, sizes, content types).

The app is the real one (every middleware, the real routes) in front of the scripted engine and
a codec that decodes instantly, so a run is fast and deterministic: `derandomize=True` makes
Hypothesis draw the same examples every time. The run's size (operations × examples) is written
to the terminal at the end of the module.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance

from app import openapi
from app.config import Settings
from app.server import create_app
from tests.servers import serve
from tests.vc_fakes import EncodingCodec

MAX_EXAMPLES = 50
# Every response body in OpenAI's error envelope: these keys, exactly.
ENVELOPE_KEYS = {"message", "type", "param", "code"}
JSON_ROUTES = ("/v1/audio/speech", "/synthesize", "/v1/audio/normalize")
UPLOAD_ROUTES = ("/v1/audio/vc", "/v1/audio/voices")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PATH_EXAMPLES = {"{voice_id}": "voice_0123456789abcdef", "{model}": "tts-1"}

examples_per_operation: Counter[str] = Counter()


@pytest.fixture(scope="module")
def api_url(engine_url, tmp_path_factory):
    settings_ = Settings(TTS_API=engine_url, ENGINE_STARTUP_TIMEOUT_S=10,
                         DATA_DIR=str(tmp_path_factory.mktemp("fuzz-data")))
    codec = EncodingCodec()
    with serve(create_app(settings_, codec_factory=lambda s: codec)) as url:
        yield url


@pytest.fixture(scope="module")
def api(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def fuzz_summary(request):
    """Writes the run's size to the terminal once the module's fuzzing is done."""
    yield
    total = sum(examples_per_operation.values())
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not total:
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        reporter.write_line(
            f"\nschemathesis: {len(examples_per_operation)} operations, {total} requests "
            f"(at most {MAX_EXAMPLES} examples each): "
            + ", ".join(f"{op} {n}" for op, n in sorted(examples_per_operation.items())))


def error_envelope_problem(response_status: int, content_type: str, body: bytes) -> str | None:
    """Why a 4xx/5xx response is not in OpenAI's error envelope, or None if it is."""
    if not content_type.startswith("application/json"):
        return f"{response_status} with Content-Type {content_type!r}, not JSON"
    try:
        data = json.loads(body)
    except ValueError:
        return f"{response_status} body is not JSON: {body[:200]!r}"
    if not isinstance(data, dict) or set(data) != {"error"} or not isinstance(data["error"], dict):
        return f"{response_status} body is not {{'error': {{...}}}}: {data!r}"
    error = data["error"]
    if set(error) != ENVELOPE_KEYS:
        return f"{response_status} error has keys {sorted(error)}, not {sorted(ENVELOPE_KEYS)}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"{response_status} error message is not a non-empty string: {error!r}"
    if not isinstance(error["type"], str):
        return f"{response_status} error type is not a string: {error!r}"
    if any(error[k] is not None and not isinstance(error[k], str) for k in ("param", "code")):
        return f"{response_status} error param/code are not strings or null: {error!r}"
    return None


@schemathesis.check
def error_in_openai_envelope(ctx, response, case) -> bool | None:
    """Every 4xx and 5xx body is `{"error": {"message", "type", "param", "code"}}`."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    problem = error_envelope_problem(response.status_code,
                                     response.headers.get("content-type", [""])[0],
                                     response.content)
    if problem is not None:
        raise AssertionError(problem)
    return True


# Built from the same function that serves /openapi.json (test_served_document_is_the_fuzzed_one);
# schemathesis' lazy fixture loader does not support this pytest.
schema = schemathesis.openapi.from_dict(json.loads(openapi.openapi_document()))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_fuzz_every_operation_answers_without_server_error(case, api_url, fuzz_summary):
    examples_per_operation[case.operation.label] += 1
    case.call_and_validate(
        base_url=api_url, timeout=30,
        checks=[not_a_server_error, error_in_openai_envelope, content_type_conformance])


def test_served_document_is_the_fuzzed_one(api):
    assert api.get("/openapi.json").content == openapi.openapi_document()


def concrete(path: str) -> str:
    for template, value in PATH_EXAMPLES.items():
        path = path.replace(template, value)
    return path


def documented_operations(api) -> dict[str, set[str]]:
    document = api.get("/openapi.json").json()
    return {concrete(path): {m.upper() for m in ops} for path, ops in document["paths"].items()}


def assert_envelope(response: httpx.Response, status: int | None = None) -> dict:
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.status_code >= 400, response.status_code
    problem = error_envelope_problem(response.status_code,
                                     response.headers.get("content-type", ""), response.content)
    assert problem is None, problem
    return response.json()["error"]


def test_every_route_and_method_is_answered_without_server_error(api):
    operations = documented_operations(api)
    operations["/static/docs.css"] = {"GET"}
    tried = 0
    for path, allowed in operations.items():
        for method in METHODS:
            r = api.request(method, path)
            tried += 1
            assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
            if method in allowed or (method == "HEAD" and "GET" in allowed):
                continue
            if method == "HEAD":  # a HEAD response has no body
                assert r.status_code == 405, (method, path, r.status_code)
                continue
            error = assert_envelope(r, 405)
            assert error["code"] == "method_not_allowed", (method, path, error)
    assert tried == len(operations) * len(METHODS)


def test_unknown_path_is_404_in_envelope(api):
    assert assert_envelope(api.get("/v1/nope"), 404)["code"] == "not_found"


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_routes_reject_invalid_utf8(api, path):
    r = api.post(path, content=b'{"input": "\xff\xfe caf\xe9", "text": "\xc3"}',
                 headers={"Content-Type": "application/json"})
    assert_envelope(r, 400)


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_routes_reject_deeply_nested_json(api, path):
    depth = 100_000
    body = '{"input": ' + "[" * depth + "]" * depth + "}"
    r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_envelope(r, 400)


@pytest.mark.parametrize("path", JSON_ROUTES + UPLOAD_ROUTES)
def test_declared_huge_body_is_refused_before_it_is_read(api_url, path):
    """Content-Length says 200 MB, a few bytes come: 413 at once, not after a timeout."""
    parts = urlsplit(api_url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{\"in")
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=xyz"])
def test_json_routes_answer_wrong_content_types_without_server_error(api, path, content_type):
    r = api.post(path, content=b"--xyz\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n"
                 b"hi\r\n--xyz--\r\n", headers={"Content-Type": content_type})
    assert_envelope(r, 400)


@pytest.mark.parametrize("path", UPLOAD_ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None,
                                          "multipart/form-data", "multipart/form-data; boundary="])
def test_upload_routes_reject_non_multipart_bodies(api, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = api.post(path, content=b'{"generate_text": "hi", "name": "x"}', headers=headers)
    assert_envelope(r, 400)


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_body_with_a_byte_order_mark_is_answered(api, path):
    body = b"\xef\xbb\xbf" + json.dumps({"input": "Hello.", "text": "Hello."}).encode()
    r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text[:300]
    if r.status_code >= 400:
        assert_envelope(r)


NUMERIC_FIELDS = ("temperature", "repetition_penalty", "max_tokens", "speed", "playback_speed",
                  "playback_overlap_speed")
NON_FINITE = ("1e999", "-1e999", "NaN", "Infinity", "-Infinity")


@pytest.mark.parametrize("literal", [*NON_FINITE, "1" + "0" * 5000, "1e-999", "-0.0"])
@pytest.mark.parametrize("field", [*NUMERIC_FIELDS, "input", "voice", "stream", "sample_rate"])
@pytest.mark.parametrize("path", ["/v1/audio/speech", "/synthesize"])
def test_extreme_numbers_are_answered_without_server_error(api, path, field, literal):
    text_field = "input" if path == "/v1/audio/speech" else "text"
    body = f'{{"{text_field}": "Hello.", "{field}": {literal}}}'
    r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body[:80], r.text[:300])
    if r.status_code >= 400:
        assert_envelope(r)
    if field in NUMERIC_FIELDS and literal in NON_FINITE:
        assert assert_envelope(r, 400)["param"] == field


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b"0", b'"x"', b"{", b'{"input": null}',
                                  b'{"input": "a", "input": {"x": 1}}', b"\x00" * 64])
@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_routes_reject_non_objects(api, path, body):
    r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_envelope(r, 400)
