"""Orders through the API: capture, verification, lifecycle actions, timeline, listing."""

from __future__ import annotations

import asyncio
import copy
import uuid

import pytest

from tests.conftest import World

ORDER = {
    "external_ref": None,
    "customer": {"name": "Erika Mustermann", "email": "erika@example.com", "phone": "030 1234567"},
    "shipping_address": {
        "line1": "Unter den Linden 1",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "currency": "EUR",
    "lines": [
        {
            "sku": "TENT-2P",
            "description": "Tent",
            "quantity": 2,
            "unit_price_minor": 19900,
            "tax_minor": 7562,
        },
        {"sku": "MAT-1", "quantity": 1, "unit_price_minor": 2500},
    ],
    "shipping_minor": 495,
    "payment_status": "paid",
    "tags": ["Summer", "vip"],
}


def order_body(**changes) -> dict:
    body = copy.deepcopy(ORDER)
    body["external_ref"] = f"REF-{uuid.uuid4().hex[:10]}"
    body["customer"]["email"] = f"{uuid.uuid4().hex[:8]}@example.com"
    body.update(changes)
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_create_computes_totals_normalises_and_waits_for_verification(client, world: World):
    response = await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["subtotal_minor"] == 2 * 19900 + 2500
    assert order["tax_minor"] == 7562
    assert order["total_minor"] == 2 * 19900 + 2500 + 7562 + 495
    assert order["customer_phone"] == "+49301234567"
    assert order["tags"] == ["summer", "vip"]
    assert order["channel"] == "api"
    assert order["status"] == "awaiting_verification"  # tenants verify by hand unless they opt in
    assert order["number"] >= 1001
    assert {c["check"]: c["result"] for c in order["checks"]}["payment_confirmed"] == "passed"
    assert "verify" in order["allowed_actions"] and "ship" not in order["allowed_actions"]
    events = (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(world.key_a))).json()
    assert [e["kind"] for e in events] == ["created", "verification_needed"]
    assert events[0]["actor_kind"] == "api_key" and events[0]["channel"] == "api"


async def test_numbers_are_per_tenant_and_increase(client, world: World):
    numbers_a = [
        (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()["number"]
        for _ in range(2)
    ]
    number_b = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_b))).json()[
        "number"
    ]
    assert numbers_a[1] == numbers_a[0] + 1
    assert number_b == 1001  # B's own sequence, unaffected by A's orders


async def test_client_total_must_match(client, world: World):
    response = await client.post(
        "/api/v1/orders", json=order_body(total_minor=1), headers=bearer(world.key_a)
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "total_minor"
    assert "add up to 50357" in error["message"] and "503.57 EUR" in error["message"]


async def test_existing_external_ref_returns_the_existing_order(client, world: World):
    body = order_body()
    first = await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    again = await client.post(
        "/api/v1/orders", json={**body, "notes": "second try"}, headers=bearer(world.key_a)
    )
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


async def test_bad_input_lists_every_field(client, world: World):
    body = order_body(currency="XYZ")
    body["shipping_address"] = {**body["shipping_address"], "country": "DE", "postal_code": "ABC"}
    body["customer"] = {"name": "Bad\x00Name", "email": "not-an-email"}
    response = await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"currency", "shipping_address.postal_code", "customer.name", "customer.email"} <= fields


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["lines"][0].update(quantity=0), "lines.0.quantity"),
        (lambda b: b["lines"][0].update(quantity=-3), "lines.0.quantity"),
        (lambda b: b["lines"][0].update(unit_price_minor=2**70), "lines.0.unit_price_minor"),
        (lambda b: b["lines"][0].update(quantity="two"), "lines.0.quantity"),
        (lambda b: b.update(surprise=True), "surprise"),
        (lambda b: b.update(lines=[]), "lines"),
        (lambda b: b["customer"].update(name="x" * 201), "customer.name"),
    ],
)
async def test_schema_errors_name_the_field(client, world: World, mutate, field):
    body = order_body()
    mutate(body)
    response = await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    assert response.status_code == 400, response.text
    assert any(field in e["field"] for e in response.json()["errors"]), response.json()


async def test_jpy_has_no_minor_unit_and_kwd_has_three(client, world: World):
    body = order_body(currency="JPY", total_minor=None)
    body["lines"] = [{"sku": "A", "quantity": 1, "unit_price_minor": 1500}]
    body["shipping_minor"] = 0
    body["total_minor"] = 1
    jpy = await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    assert "1500 JPY" in jpy.text
    body.update(currency="KWD", external_ref=f"K-{uuid.uuid4().hex[:6]}")
    kwd = await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    assert "1.500 KWD" in kwd.text


async def test_lifecycle_actions_and_illegal_ones(client, world: World):
    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    base = f"/api/v1/orders/{order['id']}"
    refused = await client.post(f"{base}/ship", headers=bearer(world.key_a))
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["state"] == "awaiting_verification"
    assert "verify" in problem["allowed_actions"] and "ship" not in problem["allowed_actions"]
    for step in ("verify", "allocate", "start-picking", "pack", "ship", "deliver", "close"):
        response = await client.post(f"{base}/{step}", headers=bearer(world.key_a))
        assert response.status_code == 200, (step, response.text)
    assert response.json()["status"] == "closed" and response.json()["allowed_actions"] == []
    kinds = [e["kind"] for e in (await client.get(f"{base}/events", headers=bearer(world.key_a))).json()]
    assert kinds[-7:] == ["verify", "allocate", "start_picking", "pack", "ship", "deliver", "close"]


async def test_holds_stack_and_the_order_resumes_where_it_stood(client, world: World):
    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    base = f"/api/v1/orders/{order['id']}"
    headers = bearer(world.key_a)
    await client.post(f"{base}/verify", headers=headers)
    await client.post(f"{base}/holds", json={"reason": "fraud_review"}, headers=headers)
    held = await client.post(
        f"{base}/holds", json={"reason": "address_problem", "note": "no house number"}, headers=headers
    )
    assert held.json()["on_hold"] and held.json()["status"] == "verified"
    assert (
        (await client.post(f"{base}/allocate", headers=headers))
        .json()["detail"]
        .startswith("The order is on hold")
    )
    twice = await client.post(f"{base}/holds", json={"reason": "fraud_review"}, headers=headers)
    assert twice.status_code == 409
    one = await client.post(f"{base}/holds/release", json={"reason": "fraud_review"}, headers=headers)
    assert one.json()["on_hold"] is True
    both = await client.post(f"{base}/holds/release", json={"reason": "address_problem"}, headers=headers)
    assert both.json()["on_hold"] is False and both.json()["status"] == "verified"
    assert "allocate" in both.json()["allowed_actions"]


async def test_failed_checks_need_an_override_before_verify(client, world: World):
    order = (
        await client.post(
            "/api/v1/orders", json=order_body(payment_status="pending"), headers=bearer(world.key_a)
        )
    ).json()
    base = f"/api/v1/orders/{order['id']}"
    refused = await client.post(f"{base}/verify", headers=bearer(world.key_a))
    assert refused.status_code == 409 and "payment_confirmed" in refused.json()["detail"]
    paid = await client.post(
        f"{base}/payment", json={"payment_status": "authorized"}, headers=bearer(world.key_a)
    )
    assert {c["check"]: c["result"] for c in paid.json()["checks"]}["payment_confirmed"] == "passed"
    assert (await client.post(f"{base}/verify", headers=bearer(world.key_a))).status_code == 200


async def test_duplicate_suspicion_is_a_failed_check(client, world: World):
    body = order_body()
    await client.post("/api/v1/orders", json=body, headers=bearer(world.key_a))
    second = await client.post(
        "/api/v1/orders",
        json={**body, "external_ref": "OTHER-" + body["external_ref"]},
        headers=bearer(world.key_a),
    )
    checks = {c["check"]: c for c in second.json()["checks"]}
    assert checks["duplicate_suspected"]["result"] == "failed"


async def test_list_filters_and_keyset_pages(client, world: World):
    headers = bearer(world.key_b)
    tag = f"batch{uuid.uuid4().hex[:6]}"
    created = []
    for _ in range(5):
        response = await client.post("/api/v1/orders", json=order_body(tags=[tag]), headers=headers)
        created.append(response.json()["id"])
    seen, cursor = [], None
    while True:
        url = f"/api/v1/orders?tag={tag}&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=headers)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(created))
    one = (await client.get(f"/api/v1/orders/{created[0]}", headers=headers)).json()
    found = (await client.get(f"/api/v1/orders?q={one['customer_email'][:6]}", headers=headers)).json()[
        "items"
    ]
    assert [o["id"] for o in found] == [created[0]]
    by_number = (await client.get(f"/api/v1/orders?q=%23{one['number']}", headers=headers)).json()["items"]
    assert created[0] in [o["id"] for o in by_number]
    bad = await client.get("/api/v1/orders?cursor=garbage!!", headers=headers)
    assert bad.status_code == 422
    bad_status = await client.get("/api/v1/orders?status=teleported", headers=headers)
    assert bad_status.status_code == 422


async def test_events_cannot_be_changed_by_the_application(world: World, client, db):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    for statement in (
        "UPDATE order_events SET summary = 'x' WHERE order_id = :id",
        "DELETE FROM order_events WHERE order_id = :id",
    ):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with db.transaction(world_scope(world)) as session:
                await session.execute(text(statement), {"id": order["id"]})


def world_scope(world: World):
    from orderdesk.core.tenancy import Scope

    return Scope(tenant_ids=frozenset({world.a.id}))


async def test_concurrent_creates_with_one_idempotency_key_make_one_order(
    client, app_client_factory, world: World
):
    body = order_body()
    key = uuid.uuid4().hex
    headers = {**bearer(world.key_a), "Idempotency-Key": key}
    async with app_client_factory() as other:
        first, second = await asyncio.gather(
            client.post("/api/v1/orders", json=body, headers=headers),
            other.post("/api/v1/orders", json=body, headers=headers),
        )
    assert sorted([first.status_code, second.status_code]) == [201, 201]
    assert first.json()["id"] == second.json()["id"]
    replay = await client.post("/api/v1/orders", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    conflict = await client.post("/api/v1/orders", json={**body, "notes": "changed"}, headers=headers)
    assert conflict.status_code == 409
    assert "different request body" in conflict.json()["detail"]
