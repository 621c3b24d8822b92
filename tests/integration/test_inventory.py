"""Warehouses, stock feeds and the ledger, allocation on verification, backorders, release, override."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import func, select

from orderdesk.inventory.models import MovementKind, StockLevel, StockMovement
from orderdesk.orders import services as order_services
from orderdesk.orders.states import Action
from orderdesk.tenants import services as tenants
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import bearer, order_body


async def make_warehouse(
    client, key: str, code: str, country: str = "DE", region: str | None = None, **extra
) -> dict:
    body = {"code": code, "name": f"Warehouse {code}", "country": country, "region": region, **extra}
    response = await client.post("/api/v1/warehouses", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


async def put_stock(client, key: str, warehouse: dict, event_id: str | None = None, **levels: int) -> dict:
    updates = [{"sku": sku.replace("_", "-"), "on_hand": qty} for sku, qty in levels.items()]
    response = await client.post(
        f"/api/v1/warehouses/{warehouse['id']}/stock",
        json={"event_id": event_id or uuid.uuid4().hex, "updates": updates},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    return response.json()


def lines(**quantities: int) -> list[dict]:
    return [
        {"sku": sku.replace("_", "-"), "quantity": qty, "unit_price_minor": 1000}
        for sku, qty in quantities.items()
    ]


async def new_order(
    client,
    key: str,
    *,
    region: str | None = None,
    country: str = "DE",
    priority: str = "normal",
    **quantities: int,
) -> dict:
    body = order_body(lines=lines(**quantities), priority=priority)
    body["shipping_address"] = {**body["shipping_address"], "region": region}
    if country != "DE":
        body["shipping_address"].update(country=country, postal_code="75004", city="Paris")
    response = await client.post("/api/v1/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


async def verify(client, key: str, order: dict) -> dict:
    response = await client.post(f"/api/v1/orders/{order['id']}/verify", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


async def allocation_of(client, key: str, order: dict) -> dict:
    response = await client.get(f"/api/v1/orders/{order['id']}/allocation", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


async def level(client, key: str, warehouse: dict, sku: str) -> dict:
    rows = (
        await client.get(f"/api/v1/warehouses/{warehouse['id']}/stock?sku={sku}", headers=bearer(key))
    ).json()
    return rows[0]


async def timeline(client, key: str, order: dict) -> list[dict]:
    return (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(key))).json()


# ---------------------------------------------------------------- warehouses and stock


async def test_warehouse_crud_and_field_errors(client, world: World):
    key = world.key_a
    created = await make_warehouse(
        client,
        key,
        "BER-1",
        region="Berlin",
        ships_to=["de", "AT"],
        cutoff_time="15:30:00",
        time_zone="Europe/Berlin",
    )
    assert created["ships_to"] == ["AT", "DE"] and created["cutoff_time"] == "15:30:00"
    again = await client.post(
        "/api/v1/warehouses", json={"code": "BER-1", "name": "x", "country": "DE"}, headers=bearer(key)
    )
    assert again.status_code == 409
    bad = await client.post(
        "/api/v1/warehouses",
        json={
            "code": "no spaces",
            "name": "x",
            "country": "XX",
            "ships_to": ["DE", "ZZ"],
            "time_zone": "Mars/Base",
        },
        headers=bearer(key),
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"code", "country", "ships_to.1", "time_zone"}
    patched = await client.patch(
        f"/api/v1/warehouses/{created['id']}", json={"priority": 5, "active": False}, headers=bearer(key)
    )
    assert patched.status_code == 200 and patched.json()["priority"] == 5 and not patched.json()["active"]
    listed = (await client.get("/api/v1/warehouses", headers=bearer(key))).json()
    assert [w["code"] for w in listed] == ["BER-1"]
    assert (await client.get("/api/v1/warehouses", headers=bearer(world.key_b))).json() == []
    spare = await make_warehouse(client, key, "SPARE")
    assert (await client.delete(f"/api/v1/warehouses/{spare['id']}", headers=bearer(key))).status_code == 204
    await put_stock(client, key, created, TENT=1)
    used = await client.delete(f"/api/v1/warehouses/{created['id']}", headers=bearer(key))
    assert used.status_code == 409 and "active=false" in used.json()["detail"]


async def test_stock_feed_is_idempotent_by_event_id_and_refuses_bad_levels(client, world: World, db):
    key = world.key_a
    wh = await make_warehouse(client, key, "FEED")
    url = f"/api/v1/warehouses/{wh['id']}/stock"
    body = {
        "event_id": "asn-1",
        "reason": "ASN 1",
        "updates": [{"sku": "TENT", "delta": 5}, {"sku": "MAT", "on_hand": 2, "low_stock_threshold": 3}],
    }
    first = await client.post(url, json=body, headers=bearer(key))
    retry = await client.post(url, json=body, headers=bearer(key))
    assert first.status_code == retry.status_code == 200
    assert retry.json()["replayed"] is True and first.json()["replayed"] is False
    assert retry.json()["levels"] == first.json()["levels"]
    levels = {row["sku"]: row for row in first.json()["levels"]}
    assert levels["TENT"]["on_hand"] == 5 and levels["MAT"]["low_stock"] is True
    assert (await level(client, key, wh, "TENT"))["on_hand"] == 5  # applied once
    other = await client.post(
        url, json={**body, "updates": [{"sku": "TENT", "delta": 6}]}, headers=bearer(key)
    )
    assert other.status_code == 409
    below = await client.post(
        url,
        json={
            "updates": [
                {"sku": "TENT", "delta": -6},
                {"sku": "MAT", "on_hand": 1},
                {"sku": "LAMP", "delta": -1},
            ]
        },
        headers=bearer(key),
    )
    assert below.status_code == 422
    errors = {e["field"]: e["message"] for e in below.json()["errors"]}
    assert set(errors) == {"updates.0.delta", "updates.2.delta"}
    assert "below zero" in errors["updates.0.delta"]
    assert (await level(client, key, wh, "MAT"))["on_hand"] == 2  # nothing of a refused feed applies
    both = await client.post(
        url, json={"updates": [{"sku": "TENT", "delta": 1, "on_hand": 1}]}, headers=bearer(key)
    )
    assert both.status_code == 400
    twice = await client.post(
        url, json={"updates": [{"sku": "TENT", "delta": 1}, {"sku": "TENT", "delta": 1}]}, headers=bearer(key)
    )
    assert twice.status_code == 422 and twice.json()["errors"][0]["field"] == "updates.1.sku"
    missing = await client.post(f"/api/v1/warehouses/{uuid.uuid4()}/stock", json=body, headers=bearer(key))
    assert missing.status_code == 404
    ledger = (await client.get(f"{url}/TENT/movements", headers=bearer(key))).json()
    assert [(m["kind"], m["on_hand_before"], m["on_hand_after"], m["source_event_id"]) for m in ledger] == [
        ("receipt", 0, 5, "asn-1")
    ]
    assert ledger[0]["actor_kind"] == "api_key" and ledger[0]["reason"] == "ASN 1"
    low = (await client.get("/api/v1/stock?low=true", headers=bearer(key))).json()
    assert [(r["warehouse_code"], r["sku"]) for r in low] == [("FEED", "MAT")]


async def test_agent_adjustment_needs_staff_and_a_reason(client, world: World):
    wh = await make_warehouse(client, world.key_a, "ADJ")
    await put_stock(client, world.key_a, wh, TENT=4)
    url = f"/api/v1/warehouses/{wh['id']}/stock/TENT/adjustments"
    by_key = await client.post(url, json={"delta": -1, "reason": "broken"}, headers=bearer(world.key_a))
    assert by_key.status_code == 403
    await sign_in(client, world.agent_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    no_reason = await client.post(url, json={"delta": -1, "reason": "  "}, headers=csrf)
    assert no_reason.status_code in (400, 422)
    too_many = await client.post(url, json={"delta": -5, "reason": "lost"}, headers=csrf)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "delta"
    done = await client.post(url, json={"delta": -1, "reason": "Dropped a tent, torn"}, headers=csrf)
    assert done.status_code == 200 and done.json()["on_hand"] == 3
    [entry, _] = (
        await client.get(f"/api/v1/warehouses/{wh['id']}/stock/TENT/movements", headers=csrf)
    ).json()
    assert entry["kind"] == "adjustment" and entry["reason"] == "Dropped a tent, torn"
    assert entry["actor_kind"] == "staff" and (entry["on_hand_before"], entry["on_hand_after"]) == (4, 3)


# ---------------------------------------------------------------- allocation


async def test_verification_allocates_the_whole_order_from_the_nearest_warehouse(client, world: World):
    key = world.key_a
    far = await make_warehouse(client, key, "PAR", country="FR", priority=1)
    near = await make_warehouse(client, key, "BER", region="Berlin", priority=50)
    other = await make_warehouse(client, key, "MUC", region="Bayern", priority=10)
    for wh in (far, near, other):
        await put_stock(client, key, wh, TENT=10, MAT=10)
    order = await new_order(client, key, region="Berlin", TENT=2, MAT=1)
    verified = await verify(client, key, order)
    assert verified["status"] == "allocated"
    allocation = await allocation_of(client, key, order)
    assert {(a["line_no"], a["warehouse_code"], a["reserved_qty"]) for a in allocation["allocations"]} == {
        (1, "BER", 2),
        (2, "BER", 1),
    }
    assert (await level(client, key, near, "TENT"))["reserved"] == 2
    events = await timeline(client, key, order)
    assert [e["kind"] for e in events][-2:] == ["verify", "allocate"]
    assert events[-1]["summary"] == "Allocated to BER" and events[-1]["actor_kind"] == "system"
    manual = await client.post(f"/api/v1/orders/{order['id']}/start-picking", headers=bearer(key))
    assert manual.status_code == 200


async def test_split_backorder_and_reallocation_when_stock_arrives(client, world: World):
    key = world.key_a
    ber = await make_warehouse(client, key, "BER", region="Berlin")
    muc = await make_warehouse(client, key, "MUC", region="Bayern")
    await put_stock(client, key, ber, TENT=2)
    await put_stock(client, key, muc, MAT=1)
    split = await verify(client, key, await new_order(client, key, region="Berlin", TENT=2, MAT=1))
    assert split["status"] == "allocated"
    assert {a["warehouse_code"] for a in (await allocation_of(client, key, split))["allocations"]} == {
        "BER",
        "MUC",
    }

    older = await verify(client, key, await new_order(client, key, LAMP=2))
    urgent = await verify(client, key, await new_order(client, key, priority="urgent", LAMP=1, TENT=1))
    assert older["status"] == urgent["status"] == "backordered"
    assert (await allocation_of(client, key, older))["backorders"] == [
        {"line_no": 1, "sku": "LAMP", "quantity": 2}
    ]
    summary = (await timeline(client, key, urgent))[-1]["summary"]
    assert summary.startswith("Backordered: waiting for 1 × LAMP, 1 × TENT")

    # One lamp arrives: the urgent order is served first, though it is newer.
    await client.post(
        f"/api/v1/warehouses/{muc['id']}/stock",
        json={"updates": [{"sku": "LAMP", "delta": 1}]},
        headers=bearer(key),
    )
    urgent_now = await allocation_of(client, key, urgent)
    assert urgent_now["backorders"] == [{"line_no": 2, "sku": "TENT", "quantity": 1}]
    assert urgent_now["status"] == "backordered"
    assert (await allocation_of(client, key, older))["backorders"][0]["quantity"] == 2
    await put_stock(client, key, ber, TENT=3)  # 2 reserved + 1 more
    assert (await allocation_of(client, key, urgent))["status"] == "allocated"
    events = await timeline(client, key, urgent)
    assert [e["kind"] for e in events][-2:] == ["backorder_filled", "allocate"]
    assert "Stock arrived" in events[-1]["summary"]

    # Two more lamps: the older order now gets both, and becomes allocated.
    await client.post(
        f"/api/v1/warehouses/{ber['id']}/stock",
        json={"updates": [{"sku": "LAMP", "delta": 5}]},
        headers=bearer(key),
    )
    assert (await allocation_of(client, key, older))["status"] == "allocated"
    assert (await level(client, key, ber, "LAMP"))["reserved"] == 2


async def test_cancellation_releases_reservations_to_waiting_orders(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "ONE")
    await put_stock(client, key, wh, TENT=2)
    first = await verify(client, key, await new_order(client, key, TENT=2))
    second = await verify(client, key, await new_order(client, key, TENT=2))
    assert (first["status"], second["status"]) == ("allocated", "backordered")
    cancelled = await client.post(f"/api/v1/orders/{first['id']}/cancel", headers=bearer(key))
    assert cancelled.status_code == 200
    assert (await allocation_of(client, key, first))["allocations"][0]["reserved_qty"] == 0
    assert (await allocation_of(client, key, second))["status"] == "allocated"
    stock = await level(client, key, wh, "TENT")
    assert (stock["on_hand"], stock["reserved"]) == (2, 2)
    kinds = [
        m["kind"]
        for m in (
            await client.get(f"/api/v1/warehouses/{wh['id']}/stock/TENT/movements", headers=bearer(key))
        ).json()
    ]
    assert kinds == ["reserve", "release", "reserve", "count"]


async def test_manual_allocation_is_refused_where_stock_is_managed(client, world: World):
    key = world.key_a
    await make_warehouse(client, key, "ONLY")
    order = await new_order(client, key, TENT=1)
    backordered = await verify(client, key, order)
    assert backordered["status"] == "backordered"
    refused = await client.post(f"/api/v1/orders/{order['id']}/allocate", headers=bearer(key))
    assert refused.status_code == 409 and "automatic" in refused.json()["detail"]
    assert (await client.get(f"/api/v1/orders/{order['id']}", headers=bearer(key))).json()[
        "status"
    ] == "backordered"


async def test_staff_override_moves_the_reservation_with_a_reason(client, world: World):
    key = world.key_a
    ber = await make_warehouse(client, key, "BER", region="Berlin")
    muc = await make_warehouse(client, key, "MUC", region="Bayern")
    await put_stock(client, key, ber, TENT=5)
    await put_stock(client, key, muc, TENT=1)
    order = await verify(client, key, await new_order(client, key, region="Berlin", TENT=2))
    url = f"/api/v1/orders/{order['id']}/allocation/override"
    by_key = await client.post(url, json={"warehouse_id": muc["id"], "reason": "pickup"}, headers=bearer(key))
    assert by_key.status_code == 403
    await sign_in(client, world.lead_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    short = await client.post(
        url, json={"warehouse_id": muc["id"], "reason": "Customer collects"}, headers=csrf
    )
    assert short.status_code == 409 and "MUC cannot take 2 × TENT" in short.json()["detail"]
    await put_stock(client, key, muc, TENT=3)
    moved = await client.post(
        url, json={"warehouse_id": muc["id"], "reason": "Customer collects"}, headers=csrf
    )
    assert moved.status_code == 200, moved.text
    assert {(a["warehouse_code"], a["reserved_qty"]) for a in moved.json()["allocations"]} == {
        ("BER", 0),
        ("MUC", 2),
    }
    assert (await level(client, key, ber, "TENT"))["reserved"] == 0
    assert (await level(client, key, muc, "TENT"))["reserved"] == 2
    last = (await timeline(client, key, order))[-1]
    assert (
        last["kind"] == "warehouse_overridden"
        and last["summary"] == "Warehouse overridden to MUC: Customer collects"
    )
    assert last["actor_kind"] == "staff"


async def test_retry_allocates_orders_verified_before_any_warehouse_existed(client, world: World):
    key = world.key_a
    order = await verify(client, key, await new_order(client, key, TENT=1))
    assert order["status"] == "verified"
    no_stock_here = await client.post(f"/api/v1/orders/{order['id']}/allocation/retry", headers=bearer(key))
    assert no_stock_here.status_code == 409
    wh = await make_warehouse(client, key, "LATE")
    await put_stock(client, key, wh, TENT=1)
    retried = await client.post(f"/api/v1/orders/{order['id']}/allocation/retry", headers=bearer(key))
    assert retried.status_code == 200 and retried.json()["status"] == "allocated"


# ---------------------------------------------------------------- concurrency


async def test_concurrent_allocations_never_oversell(client, world: World, db):
    """Forty verifications race for five units of one SKU in two warehouses."""
    key = world.key_a
    ber = await make_warehouse(client, key, "RACE-B", region="Berlin")
    muc = await make_warehouse(client, key, "RACE-M", region="Bayern")
    await put_stock(client, key, ber, HOT=3)
    await put_stock(client, key, muc, HOT=2)
    orders = [await new_order(client, key, region="Berlin", HOT=1) for _ in range(40)]
    system = await tenants.system_actor(db)

    async def verify_one(order_id):
        view = await order_services.perform_action(db, system, uuid.UUID(order_id), Action.VERIFY)
        return view.status

    statuses = await asyncio.gather(*(verify_one(o["id"]) for o in orders))
    assert statuses.count("allocated") == 5 and statuses.count("backordered") == 35
    async with db.transaction(system.scope) as session:
        levels = (
            await session.scalars(
                select(StockLevel).where(StockLevel.tenant_id == world.a.id, StockLevel.sku == "HOT")
            )
        ).all()
        assert sorted((s.on_hand, s.reserved) for s in levels) == [(2, 2), (3, 3)]
        reserved_in_ledger = await session.scalar(
            select(func.sum(StockMovement.reserved_after - StockMovement.reserved_before)).where(
                StockMovement.tenant_id == world.a.id,
                StockMovement.sku == "HOT",
                StockMovement.kind == MovementKind.RESERVE,
            )
        )
        assert reserved_in_ledger == 5


async def test_the_sweep_serves_backorders_whose_stock_arrived_unseen(
    client, world: World, db, owner_connection
):
    key = world.key_a
    wh = await make_warehouse(client, key, "SWEEP")
    order = await verify(client, key, await new_order(client, key, TENT=1))
    assert order["status"] == "backordered"
    # Stock that appears without passing through the services (a restore, a race with verification).
    await owner_connection.execute(
        "INSERT INTO stock_levels (tenant_id, warehouse_id, sku, on_hand, reserved)"
        " VALUES ($1, $2, 'TENT', 1, 0)",
        world.a.id,
        uuid.UUID(wh["id"]),
    )
    from orderdesk.fulfillment.jobs import sweep_fulfillment

    result = await sweep_fulfillment({"db": db})
    assert result["backorders_served"] >= 1
    assert (await allocation_of(client, key, order))["status"] == "allocated"
    assert (await sweep_fulfillment({"db": db}))["backorders_served"] == 0


async def test_override_to_another_tenants_warehouse_is_404(client, world: World):
    order = await verify(client, world.key_a, await new_order(client, world.key_a, TENT=1))
    b_wh = await make_warehouse(client, world.key_b, "B-ONLY")
    await sign_in(client, world.lead_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    response = await client.post(
        f"/api/v1/orders/{order['id']}/allocation/override",
        json={"warehouse_id": b_wh["id"], "reason": "closer"},
        headers=csrf,
    )
    assert response.status_code == 404 and response.json()["detail"] == "Warehouse not found"


async def test_stock_csv_applies_good_rows_and_reports_the_others(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "CSV")
    await put_stock(client, key, wh, LAMP=1)
    await verify(client, key, await new_order(client, key, LAMP=1))  # LAMP: 1 on hand, 1 reserved
    body = (
        "SKU,on_hand,delta,low_stock_threshold\r\n"
        "TENT,40,,5\r\n"
        "MAT,,3,\r\n"
        "TENT,1,,\r\n"
        "STOVE,many,,\r\n"
        "LAMP,0,,\r\n"
        ",,,\r\n"
        "PAN,2,1,\r\n"
    )
    url = f"/api/v1/warehouses/{wh['id']}/stock.csv?event_id=csv-1"
    headers = {**bearer(key), "Content-Type": "text/csv"}
    first = await client.post(url, content=body.encode(), headers=headers)
    assert first.status_code == 200, first.text
    report = first.json()
    assert {(r["sku"], r["on_hand"]) for r in report["levels"]} == {("TENT", 40), ("MAT", 3)}
    assert [(r["line"], r["field"]) for r in report["rejected"]] == [
        (4, "sku"),
        (5, "on_hand"),
        (6, "on_hand"),
        (8, "on_hand"),
    ]
    assert "reserved" in report["rejected"][2]["message"]
    again = await client.post(url, content=body.encode(), headers=headers)
    assert again.json() == {**report, "replayed": True}
    assert (await level(client, key, wh, "MAT"))["on_hand"] == 3
    unusable = await client.post(
        f"/api/v1/warehouses/{wh['id']}/stock.csv", content=b"name,count\nx,1\n", headers=headers
    )
    assert unusable.status_code == 422 and unusable.json()["errors"][0]["field"] == "file"


async def test_concurrent_retries_of_one_stock_event_apply_once(client, app_client_factory, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "DUPS")
    body = {"event_id": "asn-dup", "updates": [{"sku": "TENT", "delta": 4}]}

    async def post_once():
        async with app_client_factory() as other:
            return await other.post(f"/api/v1/warehouses/{wh['id']}/stock", json=body, headers=bearer(key))

    answers = await asyncio.gather(*(post_once() for _ in range(6)))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["replayed"] for a in answers].count(False) == 1
    assert (await level(client, key, wh, "TENT"))["on_hand"] == 4


async def test_an_order_verified_at_capture_is_allocated_in_the_same_answer(client, world: World, db):
    from orderdesk.orders import catalog
    from orderdesk.orders.verification import VerificationPolicy

    key = world.key_a
    await catalog.set_verification_policy(
        db, await tenants.system_actor(db), world.a.id, VerificationPolicy(auto_verify=True)
    )
    wh = await make_warehouse(client, key, "AUTO")
    await put_stock(client, key, wh, TENT=1)
    order = await new_order(client, key, TENT=1)
    assert order["status"] == "allocated"
    assert [e["kind"] for e in await timeline(client, key, order)] == ["created", "verified", "allocate"]


# ---------------------------------------------------------------- holds and reservations


async def hold(client, key: str, order: dict, reason: str, *, release: bool = False) -> dict:
    path = f"/api/v1/orders/{order['id']}/holds" + ("/release" if release else "")
    response = await client.post(path, json={"reason": reason}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_payment_hold_gives_the_stock_back_and_its_release_allocates_again(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "ONE")
    await put_stock(client, key, wh, TENT=2)
    held = await verify(client, key, await new_order(client, key, TENT=2))
    assert held["status"] == "allocated"

    on_hold = await hold(client, key, held, "awaiting_payment")
    assert (on_hold["status"], on_hold["on_hold"]) == ("verified", True)
    stock = await level(client, key, wh, "TENT")
    assert (stock["on_hand"], stock["reserved"]) == (2, 0)
    assert (await allocation_of(client, key, held))["allocations"][0]["reserved_qty"] == 0
    events = await timeline(client, key, held)
    assert [e["kind"] for e in events][-2:] == ["hold_placed", "release_stock"]
    assert events[-1]["summary"].startswith(
        "Reserved stock given back while on hold (awaiting payment): 2 units"
    )
    assert events[-1]["changes"]["status"] == ["allocated", "verified"]
    # People cannot take the platform's step themselves.
    by_hand = await client.post(f"/api/v1/orders/{held['id']}/allocate", headers=bearer(key))
    assert by_hand.status_code == 409

    # Meanwhile the freed units serve the next order.
    other = await verify(client, key, await new_order(client, key, TENT=1))
    assert other["status"] == "allocated"

    # The hold ends: the order is routed again, and gets what is left.
    released = await hold(client, key, held, "awaiting_payment", release=True)
    assert (released["status"], released["on_hold"]) == ("backordered", False)
    after = await allocation_of(client, key, held)
    assert sum(a["reserved_qty"] for a in after["allocations"]) == 1
    assert after["backorders"] == [{"line_no": 1, "sku": "TENT", "quantity": 1}]
    kinds = [e["kind"] for e in await timeline(client, key, held)]
    assert kinds[-2:] == ["hold_released", "backorder"]
    stock = await level(client, key, wh, "TENT")
    assert (stock["on_hand"], stock["reserved"]) == (2, 2)


async def test_an_address_hold_keeps_the_reservation(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "ONE")
    await put_stock(client, key, wh, TENT=2)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    on_hold = await hold(client, key, order, "address_problem")
    assert (on_hold["status"], on_hold["on_hold"]) == ("allocated", True)
    assert (await level(client, key, wh, "TENT"))["reserved"] == 2
    released = await hold(client, key, order, "address_problem", release=True)
    assert released["status"] == "allocated"
    assert (await level(client, key, wh, "TENT"))["reserved"] == 2


async def test_a_backordered_order_on_fraud_review_waits_out_of_the_queue(client, world: World):
    key = world.key_a
    wh = await make_warehouse(client, key, "ONE")
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, TENT=3))
    assert order["status"] == "backordered"
    on_hold = await hold(client, key, order, "fraud_review")
    assert on_hold["status"] == "verified"
    assert (await allocation_of(client, key, order))["backorders"] == []
    # Stock arriving now is not given to an order under review.
    await put_stock(client, key, wh, TENT=5)
    assert (await level(client, key, wh, "TENT"))["reserved"] == 0
    released = await hold(client, key, order, "fraud_review", release=True)
    assert released["status"] == "allocated"
    assert (await level(client, key, wh, "TENT"))["reserved"] == 3


# ---------------------------------------------------------------- daily cut-off


async def test_the_warehouse_cut_off_sets_the_dispatch_day_and_serves_ship_by_dates(
    client, world: World, monkeypatch
):
    from orderdesk.inventory import allocation

    # Thursday 26 November 2026, 16:00 in Berlin: past BER's 15:00 cut-off, before MUC's 18:00.
    monkeypatch.setattr(allocation, "utcnow", lambda: dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC))
    key = world.key_a
    ber = await make_warehouse(
        client, key, "BER", region="Berlin", priority=1, time_zone="Europe/Berlin", cutoff_time="15:00:00"
    )
    muc = await make_warehouse(
        client, key, "MUC", region="Bayern", priority=2, time_zone="Europe/Berlin", cutoff_time="18:00:00"
    )
    await put_stock(client, key, ber, TENT=5)
    await put_stock(client, key, muc, TENT=5)

    # No deadline: the nearest warehouse, which now dispatches on Friday.
    relaxed = await verify(client, key, await new_order(client, key, region="Berlin", TENT=1))
    event = (await timeline(client, key, relaxed))[-1]
    assert event["summary"] == "Allocated to BER; BER dispatches Fri 27 Nov (cut-off 15:00 Europe/Berlin)"
    assert event["changes"]["allocation"]["ships_on"] == {"BER": "2026-11-27"}

    # Must ship today: Munich still makes today's dispatch, Berlin does not.
    body = order_body(lines=lines(TENT=1), ship_by="2026-11-26T22:00:00Z")
    body["shipping_address"] = {**body["shipping_address"], "region": "Berlin"}
    created = await client.post("/api/v1/orders", json=body, headers=bearer(key))
    assert created.status_code == 201, created.text
    urgent = await verify(client, key, created.json())
    assert [a["warehouse_code"] for a in (await allocation_of(client, key, urgent))["allocations"]] == ["MUC"]
    assert (await timeline(client, key, urgent))[-1]["summary"] == (
        "Allocated to MUC; MUC dispatches Thu 26 Nov (cut-off 18:00 Europe/Berlin)"
    )
