"""The API reference: /docs served offline under a strict CSP, a typed OpenAPI document, and
the response contract check that the suite's servers run with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from pydantic import BaseModel
from starlette.responses import Response
from starlette.testclient import TestClient

from roomserver import errors
from roomserver.api import contract, openapi
from roomserver.api.http import Endpoint, reply
from roomserver.app import all_endpoints, create_app
from roomserver.config import Settings

SPEC = openapi.build(all_endpoints(), title="roomserver", version="test")


@pytest.fixture(scope="module")
def docs_app(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The real app without its lifespan: the reference pages need no database."""
    settings = Settings.from_env({}, data_dir=Path(tmp_path_factory.mktemp("data")))
    return TestClient(create_app(settings))


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_docs_page_runs_offline_under_a_strict_csp(docs_app: TestClient) -> None:
    page = docs_app.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="/docs/assets/' in attrs and not body.strip() for attrs, body in scripts)
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/assets/docs.js"} <= set(assets)
    for url in assets:
        got = docs_app.get(url)
        assert got.status_code == 200 and len(got.content) > 50, url
        assert got.headers["x-content-type-options"] == "nosniff"
    assert b"SwaggerUIBundle" in docs_app.get("/docs/assets/swagger-ui-bundle.js").content
    assert b'"/openapi.json"' in docs_app.get("/docs/assets/docs.js").content
    assert docs_app.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert not re.search(r"https?://", page.text), "no CDN or other origin"


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "..%2Fcore.py", "app.js"])
def test_only_listed_assets_are_served(docs_app: TestClient, name: str) -> None:
    assert docs_app.get(f"/docs/assets/{name}").status_code == 404


def test_served_documents_are_the_built_ones(docs_app: TestClient) -> None:
    served = docs_app.get("/openapi.json").json()
    assert served["openapi"] == "3.1.0" and set(served["paths"]) >= set(SPEC["paths"])
    asyncapi = docs_app.get("/asyncapi.json").json()
    assert asyncapi["asyncapi"] == "3.0.0" and asyncapi["servers"]["this"]["host"] == "testserver"


def test_the_document_is_valid_openapi_3_1() -> None:
    schemathesis.openapi.from_dict(SPEC).validate()  # the OpenAPI 3.1 meta-schema
    broken = {**SPEC, "paths": {"/x": {"get": {"responses": {"200": {"content": 1}}}}}}
    with pytest.raises(Exception, match="content"):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_ref_resolves() -> None:
    for ref in refs(SPEC):
        assert resolve(SPEC, ref) is not None, ref


def test_path_and_query_parameters_are_typed() -> None:
    for method, path, op in operations(SPEC):
        names = re.findall(r"\{(\w+)\}", path)
        params = {p["name"]: p for p in op.get("parameters", ())}
        for name in names:
            schema = params[name]["schema"]
            assert params[name]["in"] == "path" and ("format" in schema or "pattern" in schema), (method, path, name)
        for p in params.values():
            assert p["schema"], (method, path, p["name"])
    rooms = {p["name"]: p["schema"] for p in SPEC["paths"]["/api/v1/rooms"]["get"]["parameters"]}
    assert rooms["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert rooms["room_type"]["enum"] == ["public", "private", "token_gated", "nft_gated"]
    assert SPEC["paths"]["/api/v1/rooms/{room_id}"]["get"]["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}


def test_every_model_and_error_is_documented() -> None:
    schemas = SPEC["components"]["schemas"]
    for ep in all_endpoints():
        for model in (ep.body, ep.query, ep.response):
            assert model is None or model.__name__ in schemas, (ep.path, model)
        op = SPEC["paths"][ep.path][ep.method.lower()]
        assert {int(s) for s in op["responses"] if s != "default"} == openapi.statuses(ep)
        for status, answer in op["responses"].items():
            if status == "default" or int(status) >= 400:
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
        if ep.auth:
            assert op["security"] == [{"bearer": []}] and "401" in op["responses"]
    assert SPEC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert set(schemas["ErrorEnvelope"]["properties"]) == {"error"}
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "details"}
    ask = SPEC["paths"]["/api/v1/rooms/{room_id}/tutor"]["post"]["responses"]["200"]
    assert list(ask["content"]) == ["text/event-stream"]


def test_an_undeclared_path_parameter_fails_the_build() -> None:
    async def h(request: Any) -> Response:
        return reply({})

    with pytest.raises(KeyError, match="widget_id"):
        openapi.build([Endpoint("GET", "/w/{widget_id}", h, "w", "t")], title="t", version="1")


class Thing(BaseModel):
    id: int
    tags: list[str] = []


def test_body_problem_finds_wrong_types_and_undeclared_fields() -> None:
    assert contract.body_problem(Thing, b'{"id": 1, "tags": ["a"]}') is None
    assert "does not match" in (contract.body_problem(Thing, b'{"tags": []}') or "")
    assert "secret" in (contract.body_problem(Thing, b'{"id": 1, "secret": "x"}') or "")
    assert contract.undeclared({"a": [{"b": 1, "c": 2}]}, {"a": [{"b": 1}]}) == ["a[0].c"]


async def test_checked_handlers_answer_only_what_they_declare() -> None:
    async def good(request: Any) -> Response:
        return reply(Thing(id=1))

    async def extra(request: Any) -> Response:
        return reply({"id": 1, "leak": True})

    async def undeclared_error(request: Any) -> Response:
        raise errors.Conflict("no", code="clash")

    async def declared_error(request: Any) -> Response:
        raise errors.NotFound("no", code="gone")

    def ep(handler: Any) -> Endpoint:
        return Endpoint("GET", "/t", handler, "t", "t", response=Thing, auth=False, errors=(404,))

    assert (await contract.checked(ep(good))(None)).status_code == 200  # type: ignore[arg-type]
    with pytest.raises(contract.ContractBreach, match="leak"):
        await contract.checked(ep(extra))(None)  # type: ignore[arg-type]
    with pytest.raises(contract.ContractBreach, match="409"):
        await contract.checked(ep(undeclared_error))(None)  # type: ignore[arg-type]
    with pytest.raises(errors.NotFound):
        await contract.checked(ep(declared_error))(None)  # type: ignore[arg-type]


def test_validate_responses_wraps_the_handlers(tmp_path: Path) -> None:
    """Endpoints without a session, operator token or JSON body keep their own handler object, so the check shows."""
    plain = [ep.path for ep in all_endpoints() if not ep.auth and not ep.operator and ep.body is None]

    def handlers(validate: bool) -> list[str]:
        settings = Settings.from_env({}, data_dir=tmp_path, validate_responses=validate)
        routes = {getattr(r, "path", ""): r for r in create_app(settings).routes}
        return [routes[path].endpoint.__qualname__ for path in plain]  # type: ignore[attr-defined]

    assert len(plain) >= 4
    assert all(name.startswith("checked.") for name in handlers(True))
    assert not any(name.startswith("checked.") for name in handlers(False))
