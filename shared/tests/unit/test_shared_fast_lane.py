"""The fast lane of the shared HTTP app: hot routes answered ahead of the middleware stack."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from clientela.shared.http import add_fast_route, create_app, noop_lifespan

PATH = "/v1/things/{kind}/{value}"


async def fast_thing(request: Request) -> Response:
    """Answer like the declared route, naming the lane so tests can tell."""
    kind, value = request.path_params["kind"], request.path_params["value"]
    if kind == "missing":
        raise HTTPException(404, "thing not found", headers={"X-Why": "missing"})
    if kind == "storage":
        raise OperationalError("select", {}, Exception("down"))
    if kind == "broken":
        raise RuntimeError("bug")
    return Response(f"lane {value}".encode(), media_type="text/plain")


def app_with_lane() -> FastAPI:
    """Return a shared app whose thing route is declared and also served by the lane."""
    app = create_app(
        title="Clientela test", description="", lifespan=noop_lifespan, readiness=lambda _: {}
    )

    @app.get(PATH)
    async def thing(kind: str, value: str) -> Response:
        return Response(f"router {value}".encode(), media_type="text/plain")

    @app.post(PATH)
    async def post_thing(kind: str, value: str) -> Response:
        return Response(b"router post", media_type="text/plain")

    add_fast_route(app, "GET", PATH, fast_thing)
    return app


def sample(name: str, **labels: str) -> float:
    """Return the current value of a sample of the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_lane_answers_its_route_and_counts_it_by_template() -> None:
    labels = {"method": "GET", "route": PATH, "status": "200"}
    before = sample("clientela_http_requests_total", **labels)
    with TestClient(app_with_lane()) as client:
        response = client.get("/v1/things/a/b%20c")
    assert response.status_code == 200
    assert response.text == "lane b c"
    assert sample("clientela_http_requests_total", **labels) == before + 1


def test_other_methods_and_paths_go_through_the_stack() -> None:
    with TestClient(app_with_lane()) as client:
        assert client.post("/v1/things/a/b").text == "router post"
        assert client.get("/v1/things/a/b/c").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}


def test_errors_are_answered_by_the_apps_handlers() -> None:
    with TestClient(app_with_lane(), raise_server_exceptions=False) as client:
        missing = client.get("/v1/things/missing/x")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "thing not found"}
        assert missing.headers["x-why"] == "missing"
        storage = client.get("/v1/things/storage/x")
        assert storage.status_code == 503
        assert storage.headers["retry-after"] == "5"
        broken = client.get("/v1/things/broken/x")
        assert broken.status_code == 500
        assert broken.text == "Internal Server Error"


def test_an_unexpected_error_still_reaches_the_server() -> None:
    with TestClient(app_with_lane()) as client, pytest.raises(RuntimeError):
        client.get("/v1/things/broken/x")


def test_fast_routes_take_string_parameters_only() -> None:
    with pytest.raises(ValueError, match="string parameters"):
        add_fast_route(app_with_lane(), "GET", "/v1/n/{n:int}", fast_thing)
