"""Liveness, readiness and request ids."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from orderdesk.app import create_app


async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_names_the_missing_dependency(settings):
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with AsyncTestClient(app=create_app(broken)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["redis"].startswith("unavailable")


async def test_request_id_is_echoed(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert len((await client.get("/healthz")).headers["x-request-id"]) == 32


async def test_openapi_is_published(client):
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/api-keys/{key_id}" in schema["paths"]
    assert schema["info"]["title"] == "OrderDesk API"


async def test_static_files_are_served_from_our_own_folder(client):
    css = await client.get("/static/app.css")
    assert css.status_code == 200 and "--accent" in css.text
    htmx = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and len(htmx.content) > 10_000
