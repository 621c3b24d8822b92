"""Shipments, tracking, delivery, returns and refunds, and the full lifecycle through the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from orderdesk.fulfillment import policy as policies
from orderdesk.fulfillment import services as fulfillment
from orderdesk.tenants import services as tenants
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_inventory import (
    allocation_of,
    level,
    make_warehouse,
    new_order,
    put_stock,
    timeline,
    verify,
)
from tests.integration.test_orders_api import bearer

NOW = dt.datetime.now(dt.UTC)
# Scans are reported after the fact: minute 0 of a test's story is three hours ago.
START = NOW - dt.timedelta(hours=3)


def at(minutes: int) -> str:
    return (START + dt.timedelta(minutes=minutes)).isoformat()


async def ship(client, key: str, order: dict, warehouse: dict, lines: list[tuple[int, int]], **extra) -> dict:
    body = {
        "warehouse_id": warehouse["id"],
        "carrier": "DHL",
        "service": "Paket",
        "tracking_number": uuid.uuid4().hex[:16],
        "tracking_url": "https://tracking.example.com/x",
        "lines": [{"line_no": n, "quantity": q} for n, q in lines],
        "shipped_at": at(0),
        **extra,
    }
    response = await client.post(f"/api/v1/orders/{order['id']}/shipments", json=body, headers=bearer(key))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def track(
    client, key: str, shipment: dict, status: str, minutes: int, event_id: str | None = None, **extra
) -> dict:
    response = await client.post(
        f"/api/v1/shipments/{shipment['id']}/tracking-events",
        json={
            "event_id": event_id or uuid.uuid4().hex,
            "status": status,
            "occurred_at": at(minutes),
            **extra,
        },
        headers=bearer(key),
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def status_of(client, key: str, order: dict) -> str:
    return (await client.get(f"/api/v1/orders/{order['id']}", headers=bearer(key))).json()["status"]


async def kinds(client, key: str, order: dict) -> list[str]:
    return [e["kind"] for e in await timeline(client, key, order)]


async def test_full_lifecycle_capture_to_refund(client, world: World):
    """capture → verify → allocate → pick → pack → two partial shipments → tracking → delivered
    → return → refund, with the timeline checked at each step."""
    key = world.key_a
    ber = await make_warehouse(client, key, "BER", region="Berlin")
    muc = await make_warehouse(client, key, "MUC", region="Bayern")
    await put_stock(client, key, ber, TENT=5)
    await put_stock(client, key, muc, MAT=5)

    order = await new_order(client, key, region="Berlin", TENT=2, MAT=1)  # captured (paid)
    assert order["status"] == "awaiting_verification"
    assert await kinds(client, key, order) == ["created", "verification_needed"]

    verified = await verify(client, key, order)
    assert verified["status"] == "allocated"
    events = await timeline(client, key, order)
    assert [e["kind"] for e in events][-2:] == ["verify", "allocate"]
    assert events[-1]["summary"] == "Allocated, split across BER, MUC"

    for step, status in (("start-picking", "picking"), ("pack", "packed")):
        response = await client.post(f"/api/v1/orders/{order['id']}/{step}", headers=bearer(key))
        assert response.status_code == 200 and response.json()["status"] == status
        assert (await kinds(client, key, order))[-1] == step.replace("-", "_")

    first = await ship(client, key, order, ber, [(1, 2)], external_ref="SHP-1")
    assert first["number"] == 1 and first["warehouse_code"] == "BER" and first["status"] == "shipped"
    assert await status_of(client, key, order) == "partially_shipped"
    last = (await timeline(client, key, order))[-1]
    assert last["kind"] == "ship_partially"
    assert last["summary"].startswith("Shipment 1 left BER via DHL Paket, tracking ")
    stock = await level(client, key, ber, "TENT")
    assert (stock["on_hand"], stock["reserved"]) == (3, 0)  # shipping consumed the reservation
    again = await ship(client, key, order, ber, [(1, 2)], external_ref="SHP-1")
    assert again["id"] == first["id"]  # a retried create changes nothing

    second = await ship(client, key, order, muc, [(2, 1)])
    assert await status_of(client, key, order) == "shipped"
    assert (await kinds(client, key, order))[-1] == "ship"
    assert [a["shipped_qty"] for a in (await allocation_of(client, key, order))["allocations"]] == [2, 1]

    await track(client, key, first, "in_transit", 10, location="Leipzig, DE", raw_status="Sendung unterwegs")
    assert (await timeline(client, key, order))[-1]["summary"] == (
        "Shipment 1: in transit at Leipzig, DE (Sendung unterwegs)"
    )
    delivered_1 = await track(client, key, first, "delivered", 60, location="Berlin")
    assert delivered_1["shipment"]["status"] == "delivered"
    assert await status_of(client, key, order) == "shipped"  # the other parcel is still out
    await track(client, key, second, "out_for_delivery", 70)
    await track(client, key, second, "delivered", 90)
    assert await status_of(client, key, order) == "delivered"
    assert (await kinds(client, key, order))[-3:] == ["tracking_update", "shipment_delivered", "deliver"]

    returned = await client.post(
        f"/api/v1/orders/{order['id']}/returns",
        json={"reason": "damaged", "note": "Pole snapped", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=bearer(key),
    )
    assert returned.status_code == 201, returned.text
    rma = returned.json()
    assert rma["rma"] == f"RMA-{order['number']}-1" and rma["status"] == "requested"
    assert await status_of(client, key, order) == "return_requested"
    assert (await timeline(client, key, order))[-1]["summary"] == (
        f"Return {rma['rma']} requested (damaged): 1 × TENT"
    )
    base = f"/api/v1/returns/{rma['id']}"
    approved = await client.post(f"{base}/approve", json={"note": "Photo received"}, headers=bearer(key))
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert (await kinds(client, key, order))[-1] == "return_approved"
    received = await client.post(
        f"{base}/receive",
        json={
            "warehouse_id": ber["id"],
            "lines": [{"line_no": 1, "restock_quantity": 1, "condition": "as new"}],
        },
        headers=bearer(key),
    )
    assert received.status_code == 200, received.text
    assert await status_of(client, key, order) == "return_received"
    assert (await level(client, key, ber, "TENT"))["on_hand"] == 4  # restocked
    assert (await timeline(client, key, order))[-1][
        "summary"
    ] == f"Return {rma['rma']} received; restocked 1 × TENT at BER"

    too_much = await client.post(
        f"{base}/refund", json={"amount_minor": order["total_minor"] + 1}, headers=bearer(key)
    )
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount_minor"
    refunded = await client.post(f"{base}/refund", json={"amount_minor": 1000}, headers=bearer(key))
    assert refunded.status_code == 200 and refunded.json()["status"] == "refunded"
    # The rest of the order may still come back while the window lasts.
    final = (await client.get(f"/api/v1/orders/{order['id']}", headers=bearer(key))).json()
    assert final["status"] == "delivered"
    events = await timeline(client, key, order)
    assert [e["kind"] for e in events][-2:] == ["refund", "reopen_returns"]
    assert events[-2]["summary"] == f"Refunded 10.00 EUR for return {rma['rma']}"
    assert events[-1]["summary"].startswith("Open for further returns until ")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_shipments_refuse_what_is_not_reserved_there(client, world: World):
    key = world.key_a
    ber = await make_warehouse(client, key, "BER")
    muc = await make_warehouse(client, key, "MUC")
    await put_stock(client, key, ber, TENT=5)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    url = f"/api/v1/orders/{order['id']}/shipments"
    body = {
        "warehouse_id": muc["id"],
        "carrier": "UPS",
        "lines": [{"line_no": 1, "quantity": 1}, {"line_no": 9, "quantity": 1}],
    }
    wrong = await client.post(url, json=body, headers=bearer(key))
    assert wrong.status_code == 422
    assert {e["field"]: e["message"] for e in wrong.json()["errors"]} == {
        "lines.0.quantity": "only 0 of line 1 (TENT) are reserved at MUC",
        "lines.1.line_no": "the order has no line 9",
    }
    too_many = await client.post(
        url,
        json={**body, "warehouse_id": ber["id"], "lines": [{"line_no": 1, "quantity": 3}]},
        headers=bearer(key),
    )
    assert too_many.status_code == 422
    foreign = await client.post(url, json={**body, "warehouse_id": str(uuid.uuid4())}, headers=bearer(key))
    assert foreign.status_code == 404
    # A full shipment straight from "allocated" implies picking and packing.
    await ship(client, key, order, ber, [(1, 2)])
    assert (await kinds(client, key, order))[-3:] == ["start_picking", "pack", "ship"]
    cancelled_after = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=bearer(key))
    assert cancelled_after.status_code == 409


async def test_tracking_events_are_idempotent_and_exceptions_are_flagged(client, world: World, db):
    key = world.key_a
    wh = await make_warehouse(client, key, "TRK")
    await put_stock(client, key, wh, TENT=2)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    shipment = await ship(client, key, order, wh, [(1, 1)])
    first = await track(client, key, shipment, "in_transit", 5, event_id="e-1")
    retry = await track(client, key, shipment, "in_transit", 5, event_id="e-1")
    assert first["duplicate"] is False and retry["duplicate"] is True
    assert len(retry["shipment"]["events"]) == 1
    changed = await client.post(
        f"/api/v1/shipments/{shipment['id']}/tracking-events",
        json={"event_id": "e-1", "status": "delivered", "occurred_at": at(5)},
        headers=bearer(key),
    )
    assert changed.status_code == 409
    unknown = await client.post(
        f"/api/v1/shipments/{uuid.uuid4()}/tracking-events",
        json={"event_id": "x", "status": "in_transit", "occurred_at": at(1)},
        headers=bearer(key),
    )
    assert unknown.status_code == 404
    bad = await client.post(
        f"/api/v1/shipments/{shipment['id']}/tracking-events",
        json={"event_id": "y", "status": "teleported", "occurred_at": at(1)},
        headers=bearer(key),
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"

    flagged = await track(
        client, key, shipment, "failed_attempt", 30, raw_status="Empfänger nicht angetroffen"
    )
    assert flagged["shipment"]["attention"] == "failed_attempt"
    last = (await timeline(client, key, order))[-1]
    assert last["kind"] == "shipment_exception" and "failed attempt" in last["summary"]
    late_old_scan = await track(client, key, shipment, "info_received", 1)
    assert late_old_scan["shipment"]["status"] == "failed_attempt"  # an older scan changes nothing
    back = await track(client, key, shipment, "out_for_delivery", 40)
    assert back["shipment"]["attention"] is None
    assert (await timeline(client, key, order))[-1]["summary"].endswith("; back on track")
    await track(client, key, shipment, "exception", 50, raw_status="Beschädigt")
    listed = (await client.get(f"/api/v1/orders/{order['id']}/shipments", headers=bearer(key))).json()
    assert listed[0]["attention"] == "exception"  # visible on the order

    await sign_in(client, world.agent_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    cleared = await client.post(
        f"/api/v1/shipments/{shipment['id']}/attention/clear", json={"note": "Carrier re-sends"}, headers=csrf
    )
    assert cleared.status_code == 200 and cleared.json()["attention"] is None


async def test_stuck_shipments_are_flagged_once(client, world: World, db):
    key = world.key_a
    wh = await make_warehouse(client, key, "STK")
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, TENT=1))
    old = (NOW - dt.timedelta(hours=100)).isoformat()
    shipment = await ship(client, key, order, wh, [(1, 1)], shipped_at=old)
    system = await tenants.system_actor(db)
    a_only = system.__class__(
        **{
            **{f: getattr(system, f) for f in system.__dataclass_fields__},
            "tenant_ids": frozenset({world.a.id}),
        }
    )
    assert await fulfillment.flag_stuck_shipments(db, a_only) == 1
    assert await fulfillment.flag_stuck_shipments(db, a_only) == 0
    view = (await client.get(f"/api/v1/shipments/{shipment['id']}", headers=bearer(key))).json()
    assert view["attention"] == "stuck" and "no tracking news for 100 h" in view["attention_detail"]
    assert (await timeline(client, key, order))[-1]["kind"] == "shipment_exception"


async def test_returns_respect_the_window_the_quantities_and_the_steps(client, world: World, db):
    key = world.key_a
    wh = await make_warehouse(client, key, "RET")
    await put_stock(client, key, wh, TENT=3)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    early = await client.post(
        f"/api/v1/orders/{order['id']}/returns",
        json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=bearer(key),
    )
    assert early.status_code == 409  # not delivered yet
    shipment = await ship(client, key, order, wh, [(1, 2)])
    await track(client, key, shipment, "delivered", 5)
    url = f"/api/v1/orders/{order['id']}/returns"
    too_many = await client.post(
        url,
        json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 3}, {"line_no": 4, "quantity": 1}]},
        headers=bearer(key),
    )
    assert too_many.status_code == 422
    assert {e["field"] for e in too_many.json()["errors"]} == {"lines.0.quantity", "lines.1.line_no"}
    bad_reason = await client.post(
        url, json={"reason": "meh", "lines": [{"line_no": 1, "quantity": 1}]}, headers=bearer(key)
    )
    assert bad_reason.status_code == 400

    # Outside the window: the delivery is moved 40 days back.
    async with db.transaction((await tenants.system_actor(db)).scope) as session:
        from sqlalchemy import update

        from orderdesk.fulfillment.models import Shipment

        await session.execute(
            update(Shipment)
            .where(Shipment.id == uuid.UUID(shipment["id"]))
            .values(delivered_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
        )
    late = await client.post(
        url,
        json={"reason": "no_longer_needed", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=bearer(key),
    )
    assert late.status_code == 409 and "return window of 30 days ended" in late.json()["detail"]
    by_key = await client.put(
        f"/api/v1/tenants/{world.a.id}/fulfillment-policy",
        json={"return_window_days": 60},
        headers=bearer(key),
    )
    assert by_key.status_code == 403  # administrators set the policy
    await policies.set_policy(
        db, await tenants.system_actor(db), world.a.id, policies.FulfillmentPolicy(return_window_days=60)
    )
    shown = await client.get(f"/api/v1/tenants/{world.a.id}/fulfillment-policy", headers=bearer(key))
    assert shown.json() == {
        "stuck_after_hours": 72,
        "return_window_days": 60,
        "invoice_on": "manual",
        "transit_days": 3,
    }
    rma = await client.post(
        url,
        json={"reason": "no_longer_needed", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=bearer(key),
    )
    assert rma.status_code == 201
    rid = rma.json()["id"]
    not_yet = await client.post(f"/api/v1/returns/{rid}/receive", json={}, headers=bearer(key))
    assert not_yet.status_code == 409 and "approve it" in not_yet.json()["detail"]
    rejected = await client.post(
        f"/api/v1/returns/{rid}/reject", json={"reason": "Used, not resellable"}, headers=bearer(key)
    )
    assert rejected.status_code == 200
    # Rejected units count as not returned: the order takes another return in its window.
    assert await status_of(client, key, order) == "delivered"
    assert (await kinds(client, key, order))[-2:] == ["reject_return", "reopen_returns"]


async def test_partial_returns_over_time_until_nothing_is_left(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "PRT")
    await put_stock(client, key, wh, TENT=3)
    order = await verify(client, key, await new_order(client, key, TENT=3))
    shipment = await ship(client, key, order, wh, [(1, 3)])
    await track(client, key, shipment, "delivered", 5)
    url = f"/api/v1/orders/{order['id']}/returns"

    async def request(quantity: int) -> dict:
        response = await client.post(
            url,
            json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": quantity}]},
            headers=bearer(key),
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def step(rma: dict, action: str, body: dict | None = None) -> None:
        response = await client.post(
            f"/api/v1/returns/{rma['id']}/{action}", json=body or {}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text

    async def receive_and_refund(rma: dict, amount: int) -> None:
        await step(rma, "approve")
        await step(
            rma, "receive", {"warehouse_id": wh["id"], "lines": [{"line_no": 1, "restock_quantity": 0}]}
        )
        await step(rma, "refund", {"amount_minor": amount})

    first = await request(1)
    assert first["rma"] == f"RMA-{order['number']}-1"
    while_open = await client.post(
        url, json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]}, headers=bearer(key)
    )
    assert while_open.status_code == 409  # one return at a time
    await receive_and_refund(first, 1000)
    assert await status_of(client, key, order) == "delivered"
    assert (await timeline(client, key, order))[-1]["summary"].endswith("2 units may still come back")

    # A week later, the second one: more than what is left is refused.
    too_many = await client.post(
        url, json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 3}]}, headers=bearer(key)
    )
    assert too_many.status_code == 422 and "only 2 of line 1" in too_many.json()["errors"][0]["message"]
    second = await request(2)
    assert second["rma"] == f"RMA-{order['number']}-2"
    await step(second, "approve")
    await step(
        second, "receive", {"warehouse_id": wh["id"], "lines": [{"line_no": 1, "restock_quantity": 2}]}
    )
    left = order["total_minor"] - 1000  # what was paid, less the first refund
    over = await client.post(
        f"/api/v1/returns/{second['id']}/refund", json={"amount_minor": left + 1}, headers=bearer(key)
    )
    assert over.status_code == 422 and f"must not exceed {left}" in over.json()["errors"][0]["message"]
    await step(second, "refund", {"amount_minor": left})
    # Everything came back: nothing left to return, the order closes.
    assert await status_of(client, key, order) == "closed"
    events = await timeline(client, key, order)
    assert [
        e["kind"] for e in events if e["kind"] in ("request_return", "refund", "reopen_returns", "close")
    ] == [
        "request_return",
        "refund",
        "reopen_returns",
        "request_return",
        "refund",
        "close",
    ]
    assert (await client.get(f"/api/v1/orders/{order['id']}", headers=bearer(key))).json()[
        "payment_status"
    ] == "refunded"
    returns = (await client.get(url, headers=bearer(key))).json()
    assert [(r["rma"], r["status"], r["refund_minor"]) for r in returns] == [
        (f"RMA-{order['number']}-1", "refunded", 1000),
        (f"RMA-{order['number']}-2", "refunded", left),
    ]


async def test_client_users_request_returns_but_do_not_receive_them(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "CLI")
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, TENT=1))
    shipment = await ship(client, key, order, wh, [(1, 1)])
    await track(client, key, shipment, "delivered", 1)
    await sign_in(client, world.client_viewer_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/portal")).text)}
    rma = await client.post(
        f"/api/v1/orders/{order['id']}/returns",
        json={"reason": "wrong_item", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=csrf,
    )
    assert rma.status_code == 201 and rma.json()["channel"] == "portal"
    approve = await client.post(f"/api/v1/returns/{rma.json()['id']}/approve", headers=csrf)
    assert approve.status_code == 403
    shipping = await client.post(
        f"/api/v1/orders/{order['id']}/shipments",
        json={"warehouse_id": wh["id"], "carrier": "x", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=csrf,
    )
    assert shipping.status_code == 403


async def test_delivered_orders_close_when_the_return_window_is_over(
    client, world: World, db, owner_connection
):
    key = world.key_a
    wh = await make_warehouse(client, key, "CLS")
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, TENT=1))
    shipment = await ship(client, key, order, wh, [(1, 1)])
    await track(client, key, shipment, "delivered", 5)
    assert await status_of(client, key, order) == "delivered"
    system = await tenants.system_actor(db)
    await fulfillment.close_settled_orders(db, system)
    assert await status_of(client, key, order) == "delivered"  # still inside the window
    await owner_connection.execute(
        "UPDATE shipments SET delivered_at = now() - interval '31 days' WHERE id = $1",
        uuid.UUID(shipment["id"]),
    )
    assert await fulfillment.close_settled_orders(db, system) >= 1
    assert await status_of(client, key, order) == "closed"
    assert (await timeline(client, key, order))[-1]["summary"] == "Closed: the 30-day return window is over"


async def test_concurrent_retries_of_one_tracking_event_apply_once(client, app_client_factory, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "DUP")
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, TENT=1))
    shipment = await ship(client, key, order, wh, [(1, 1)])
    body = {"event_id": "same-scan", "status": "in_transit", "occurred_at": at(5), "location": "Halle"}
    url = f"/api/v1/shipments/{shipment['id']}/tracking-events"

    async def post_once():
        async with app_client_factory() as other:
            return await other.post(url, json=body, headers=bearer(key))

    answers = await asyncio.gather(*(post_once() for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert [a.json()["duplicate"] for a in answers].count(False) == 1
    assert (await kinds(client, key, order)).count("tracking_update") == 1


async def test_a_return_request_opens_a_work_item_that_receiving_or_rejecting_settles(
    client, world: World, db
):
    """The RETURN item lives as long as its return needs someone: received → done, rejected → done."""
    from sqlalchemy import select

    from orderdesk.core.tenancy import Scope
    from orderdesk.workqueue.models import WorkItem
    from orderdesk.workqueue.states import WorkItemKind

    async def return_items(order: dict) -> list[tuple[str, str | None]]:
        async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
            items = await session.scalars(
                select(WorkItem)
                .where(WorkItem.order_id == uuid.UUID(order["id"]), WorkItem.kind == WorkItemKind.RETURN)
                .order_by(WorkItem.created_at)
            )
            return [(i.status.value, i.outcome.value if i.outcome else None) for i in items]

    key = world.key_a
    wh = await make_warehouse(client, key, "RETITEM")
    await put_stock(client, key, wh, TENT=4)
    received, rejected = [await verify(client, key, await new_order(client, key, TENT=2)) for _ in range(2)]
    rmas = {}
    for order in (received, rejected):
        shipment = await ship(client, key, order, wh, [(1, 2)])
        await track(client, key, shipment, "delivered", 5)
        assert await return_items(order) == []
        rma = await client.post(
            f"/api/v1/orders/{order['id']}/returns",
            json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]},
            headers=bearer(key),
        )
        assert rma.status_code == 201, rma.text
        rmas[order["id"]] = rma.json()["id"]
        assert await return_items(order) == [("open", None)]

    for action, body in (
        ("approve", {}),
        ("receive", {"warehouse_id": wh["id"], "lines": [{"line_no": 1, "restock_quantity": 1}]}),
    ):
        step = await client.post(
            f"/api/v1/returns/{rmas[received['id']]}/{action}", json=body, headers=bearer(key)
        )
        assert step.status_code == 200, step.text
    refused = await client.post(
        f"/api/v1/returns/{rmas[rejected['id']]}/reject", json={"reason": "Used"}, headers=bearer(key)
    )
    assert refused.status_code == 200, refused.text
    [(received_status, _)] = await return_items(received)
    [(rejected_status, _)] = await return_items(rejected)
    assert received_status == rejected_status == "done"
