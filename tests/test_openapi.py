"""The OpenAPI document (app/openapi.py) and the /openapi.json and /docs endpoints."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import urljoin

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from app.openapi import (
    STATIC_DIR,
    ApiResponse,
    ApiRoute,
    api_routes,
    build_openapi,
    docs_route,
    enum_values,
    openapi_document,
    openapi_route,
)
from app.protocol import SpeechRequest

OPENAI_FORMATS = {"mp3", "opus", "aac", "flac", "wav", "pcm"}
AUDIO_MEDIA_TYPES = {"audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav",
                     "audio/pcm"}


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(openapi_document())


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_openapi_document_validates_as_openapi_3_1(document):
    validator = pytest.importorskip("openapi_spec_validator")
    assert document["openapi"].startswith("3.1")
    validator.validate(document)


def test_openapi_document_has_every_route(document):
    routes = api_routes()
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item}
    assert documented == {(route.path, route.method) for route in routes}
    for path in ("/readyz", "/v1/audio/speech", "/v1/audio/vc", "/v1/audio/voices",
                 "/v1/audio/voices/{voice_id}", "/v1/audio/speaker", "/v1/audio/models",
                 "/v1/models", "/v1/models/{model}", "/v1/audio/normalize", "/synthesize",
                 "/health", "/metrics", "/", "/openapi.json", "/docs"):
        assert path in document["paths"], path
    assert set(document["paths"]["/v1/audio/voices"]) == {"get", "post"}
    assert set(document["paths"]["/v1/audio/voices/{voice_id}"]) == {"get", "delete"}
    operation_ids = [op["operationId"] for item in document["paths"].values()
                     for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_openapi_speech_request_schema_comes_from_the_model(document):
    schema = document["components"]["schemas"]["SpeechRequest"]
    body = document["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SpeechRequest"}
    assert "input" in schema["required"]
    formats = enum_values(schema["properties"]["response_format"])
    assert set(formats) == OPENAI_FORMATS
    assert formats == enum_values(SpeechRequest.model_json_schema()["properties"]
                                  ["response_format"])
    SpeechRequest.model_validate(body["application/json"]["example"])


def test_openapi_speech_responses_list_audio_sse_and_errors(document):
    responses = document["paths"]["/v1/audio/speech"]["post"]["responses"]
    assert set(responses["200"]["content"]) == AUDIO_MEDIA_TYPES | {"text/event-stream"}
    for status in ("400", "401", "404", "413", "429", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]["error"]["required"]) == {"message", "type", "param", "code"}


def test_openapi_components_have_no_dangling_refs(document):
    text = json.dumps(document)
    for kind, name in re.findall(r'"#/components/(\w+)/([^"]+)"', text):
        assert name in document["components"][kind], f"{kind}/{name}"
    assert "$defs" not in text


@pytest.mark.parametrize("path,file_field,form_field", [
    ("/v1/audio/vc", "reference_audio", "generate_text"),
    ("/v1/audio/voices", "audio_sample", "name"),
])
def test_openapi_multipart_bodies_list_the_file_as_binary(document, path, file_field,
                                                           form_field):
    content = document["paths"][path]["post"]["requestBody"]["content"]
    schema = content["multipart/form-data"]["schema"]
    assert schema["properties"][file_field] == {
        "type": "string", "format": "binary", "description": schema["properties"][file_field][
            "description"]}
    assert file_field in schema["required"] and form_field in schema["required"]
    for name, prop in schema["properties"].items():  # a form field cannot be sent as null
        assert {"type": "null"} not in prop.get("anyOf", []), name
        assert "default" not in prop or prop["default"] is not None, name


def test_openapi_security_is_global_except_public_routes(document):
    assert {"bearerAuth": []} in document["security"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert document["paths"]["/health"]["get"]["security"] == []
    speech = document["paths"]["/v1/audio/speech"]["post"]
    assert "security" not in speech
    assert {"401", "429"} <= set(speech["responses"])
    assert not {"401", "429"} & set(document["paths"]["/health"]["get"]["responses"])


def test_openapi_path_parameters_are_declared(document):
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


class _Body(BaseModel):
    text: str


def test_build_openapi_rejects_undeclared_path_parameters():
    route = ApiRoute("/things/{thing_id}", "GET", "a thing", "getThing",
                     responses={HTTPStatus.OK: ApiResponse("ok")})
    with pytest.raises(ValueError, match="path_params"):
        build_openapi(title="t", version="1", routes=[route])


def test_build_openapi_rejects_a_route_described_twice():
    route = ApiRoute("/things", "POST", "make", "makeThing", request_model=_Body,
                     responses={HTTPStatus.OK: ApiResponse("ok")})
    with pytest.raises(ValueError, match="twice"):
        build_openapi(title="t", version="1", routes=[route, route])


def test_build_openapi_returns_a_fresh_document():
    routes = api_routes()
    first = build_openapi(title="t", version="1", routes=routes)
    first["components"]["schemas"]["Error"]["title"] = "changed"
    assert build_openapi(title="t", version="1", routes=routes)[
        "components"]["schemas"]["Error"]["title"] == "Error"


@pytest.fixture(scope="module")
def client():
    app = Starlette(routes=[
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Route("/docs", docs_route, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ])
    with TestClient(app) as client:
        yield client


def test_openapi_route_serves_the_document(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == HTTPStatus.OK
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document


def test_docs_route_serves_the_page_and_its_assets(client):
    response = client.get("/docs")
    assert response.status_code == HTTPStatus.OK
    assert response.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', response.text)
    assert {asset.rsplit(".", 1)[1] for asset in assets} == {"js", "css"}
    assert "openapi.json" in client.get(urljoin("/docs", next(
        a for a in assets if a.endswith(".js")))).text
    for asset in assets:
        loaded = client.get(urljoin("/docs", asset))
        assert loaded.status_code == HTTPStatus.OK, asset
        assert loaded.text.strip()
    assert not re.search(r'(?:src|href)="(?:https?:)?//', response.text)  # no CDN


def test_openapi_documents_every_route_of_create_app():
    from app.config import Settings
    from app.server import create_app

    app = create_app(Settings(_env_file=None))
    documented = {(route.path, route.method) for route in api_routes()}
    served = {
        (re.sub(r"{(\w+):\w+}", r"{\1}", route.path), method)
        for route in app.routes if isinstance(route, Route)
        for method in route.methods or () if method != "HEAD"
    }
    assert served and served <= documented
