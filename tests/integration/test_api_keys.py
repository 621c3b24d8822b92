"""Tenant API keys: shown once, stored hashed, revocable, with last-used time."""

from __future__ import annotations

import gc
import uuid
import warnings

from sqlalchemy.exc import SAWarning

from orderdesk.accounts.tokens import digest
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import order_body


async def client_admin_headers(client, world: World) -> dict[str, str]:
    await sign_in(client, world.client_admin_a)
    return {"X-CSRF-Token": session_csrf((await client.get("/portal")).text)}


async def test_key_is_shown_once_and_stored_only_as_a_hash(client, world: World, owner_connection):
    headers = await client_admin_headers(client, world)
    created = await client.post("/api/v1/api-keys", json={"name": "ERP"}, headers=headers)
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("odk_")
    fetched = await client.get(f"/api/v1/api-keys/{created.json()['id']}")
    assert "secret" not in fetched.json()
    stored = await owner_connection.fetchrow("SELECT * FROM api_keys WHERE id = $1", fetched.json()["id"])
    assert secret not in str(dict(stored))
    assert stored["secret_hash"] == digest(secret)


async def test_key_authenticates_records_use_and_stops_when_revoked(client, world: World):
    bearer = {"Authorization": f"Bearer {world.key_a}"}
    me = await client.get("/api/v1/me", headers=bearer)
    assert me.status_code == 200
    assert me.json()["kind"] == "api_key"
    headers = await client_admin_headers(client, world)
    listed = {k["id"]: k for k in (await client.get("/api/v1/api-keys")).json()}
    assert listed[str(world.key_a_id)]["last_used_at"] is not None
    revoked = await client.delete(f"/api/v1/api-keys/{world.key_a_id}", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    client.cookies.clear()
    refused = await client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The API key has been revoked"


async def test_unknown_key_is_401_with_problem_body(client):
    response = await client.get("/api/v1/me", headers={"Authorization": "Bearer odk_" + "x" * 43})
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401 and body["detail"] == "The API key is not valid"


async def test_viewer_cannot_create_keys(client, world: World):
    await sign_in(client, world.client_viewer_a)
    headers = {"X-CSRF-Token": session_csrf((await client.get("/portal")).text)}
    response = await client.post("/api/v1/api-keys", json={"name": "nope"}, headers=headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "Only administrators can manage API keys"


async def test_api_key_cannot_mint_more_keys(client, world: World):
    response = await client.post(
        "/api/v1/api-keys", json={"name": "child"}, headers={"Authorization": f"Bearer {world.key_a}"}
    )
    assert response.status_code == 403


async def test_bad_bodies_get_field_level_problems(client, world: World):
    headers = await client_admin_headers(client, world)
    unknown = await client.post("/api/v1/api-keys", json={"name": "x", "colour": "red"}, headers=headers)
    assert unknown.status_code == 400
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"] == "colour" for e in unknown.json()["errors"]), unknown.json()
    empty = await client.post("/api/v1/api-keys", json={"name": ""}, headers=headers)
    assert empty.status_code == 400
    assert any(e["field"] == "name" for e in empty.json()["errors"])
    malformed = await client.post(
        "/api/v1/api-keys", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    control = await client.post("/api/v1/api-keys", json={"name": "bad\x07name"}, headers=headers)
    assert control.status_code == 422
    assert control.json()["errors"] == [{"field": "name", "message": "must not contain control characters"}]


async def test_oversized_body_is_413(client, world: World):
    headers = await client_admin_headers(client, world)
    response = await client.post(
        "/api/v1/api-keys",
        content=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["status"] == 413


async def test_key_use_is_recorded_even_when_the_request_then_fails(client, world: World, owner_connection):
    await owner_connection.execute("UPDATE api_keys SET last_used_at = NULL WHERE id = $1", world.key_a_id)
    bearer = {"Authorization": f"Bearer {world.key_a}", "Idempotency-Key": "used-twice"}
    first = await client.post("/api/v1/orders", json=order_body(), headers=bearer)
    assert first.status_code == 201
    await owner_connection.execute("UPDATE api_keys SET last_used_at = NULL WHERE id = $1", world.key_a_id)
    # Refused inside the order's transaction (same key, another body): rolled back whole.
    refused = await client.post("/api/v1/orders", json=order_body(), headers=bearer)
    assert refused.status_code == 409
    used = await owner_connection.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", world.key_a_id)
    assert used is not None


async def test_key_requests_give_their_connection_back_whatever_the_answer(client, world: World):
    bearer = {"Authorization": f"Bearer {world.key_a}"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answers = [
            await client.post("/api/v1/orders", json=order_body(), headers=bearer),  # created
            await client.post("/api/v1/orders", json={"currency": "EUR"}, headers=bearer),  # refused body
            await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=bearer),  # not found
            await client.get("/api/v1/orders", headers=bearer),  # a list
            await client.get("/api/v1/no-such-route", headers=bearer),  # no route
        ]
        gc.collect()
    assert [a.status_code for a in answers] == [201, 400, 404, 200, 404]
    # The transaction that found the key is continued by the work or given back, never
    # left for the garbage collector (an idle transaction holds a connection and locks).
    assert client.app.state.db.engine.pool.checkedout() == 0
    assert not [w for w in caught if issubclass(w.category, SAWarning)]
