"""The lead's operations view: stuck measured from entering a status, and delivery timelines."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from orderdesk.fulfillment import policy as policies
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import operations
from tests.conftest import World, sign_in
from tests.integration.test_fulfillment import START, ship, track
from tests.integration.test_inventory import hold, make_warehouse, new_order, put_stock, verify
from tests.integration.test_orders_api import bearer, order_body

HTMX = {"HX-Request": "true"}
TRANSIT_DAYS = 2


async def status_changed_at(owner_connection, order: dict) -> dt.datetime:
    return await owner_connection.fetchval(
        "SELECT status_changed_at FROM orders WHERE id = $1", uuid.UUID(order["id"])
    )


async def backdate_status(owner_connection, order: dict, hours: int) -> None:
    await owner_connection.execute(
        "UPDATE orders SET status_changed_at = now() - make_interval(hours => $2) WHERE id = $1",
        uuid.UUID(order["id"]),
        hours,
    )


async def promise(owner_connection, order: dict, deliver_by: dt.datetime) -> None:
    await owner_connection.execute(
        "UPDATE orders SET deliver_by = $2 WHERE id = $1", uuid.UUID(order["id"]), deliver_by
    )


async def pending_order(client, key: str) -> dict:
    response = await client.post("/api/v1/orders", json=order_body(), headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------- stuck


async def test_stuck_counts_from_entering_the_status_not_from_the_last_edit(
    client, world: World, db, owner_connection
):
    key = world.key_a
    edited = await pending_order(client, key)  # awaiting verification: stuck after 8 hours
    moved = await pending_order(client, key)
    await backdate_status(owner_connection, edited, 9)
    await backdate_status(owner_connection, moved, 9)
    # An edit that keeps the status (a hold) moves updated_at, not the time in the status.
    await hold(client, key, edited, "customer_request")
    await hold(client, key, edited, "customer_request", release=True)
    # A status change starts the clock again.
    await verify(client, key, moved)

    view = await operations.operations_view(db, world.lead_a_actor())
    [stuck] = view.stuck
    assert stuck.id == uuid.UUID(edited["id"]) and stuck.status == "awaiting_verification"
    assert dt.datetime.now(dt.UTC) - stuck.since > dt.timedelta(hours=8, minutes=59)
    assert view.tenants[0].stuck_by_status == {"awaiting_verification": 1}
    assert dt.datetime.now(dt.UTC) - await status_changed_at(owner_connection, moved) < dt.timedelta(
        minutes=1
    )

    page = await _board(client, world)
    assert "In this status since" in page and f"/console/orders/{edited['id']}" in page


async def test_a_status_change_by_the_allocations_own_sql_sets_the_time(
    client, world: World, owner_connection
):
    key = world.key_a
    warehouse = await make_warehouse(client, key, "BER", region="Berlin")
    waiting = await verify(client, key, await new_order(client, key, LAMP=1))
    assert waiting["status"] == "backordered"
    await backdate_status(owner_connection, waiting, 30)
    # Stock arriving fills the backorder through RESERVE_PLAN, a raw UPDATE of orders.
    await put_stock(client, key, warehouse, LAMP=1)
    row = await owner_connection.fetchrow(
        "SELECT status::text, status_changed_at FROM orders WHERE id = $1", uuid.UUID(waiting["id"])
    )
    assert row["status"] == "allocated"
    assert dt.datetime.now(dt.UTC) - row["status_changed_at"] < dt.timedelta(minutes=1)


# ---------------------------------------------------------------- delivery timelines


async def _shipped_order(client, key: str, warehouse: dict, sku: str) -> tuple[dict, dict]:
    order = await verify(client, key, await new_order(client, key, **{sku: 1}))
    assert order["status"] == "allocated", order
    shipment = await ship(client, key, order, warehouse, [(1, 1)])
    return order, shipment


async def _board(client, world: World) -> str:
    await sign_in(client, world.lead_a)
    response = await client.get("/console/operations/board", headers=HTMX)
    assert response.status_code == 200, response.text
    return response.text


async def test_expected_delivery_counts_and_the_slipping_list(client, world: World, db, owner_connection):
    key = world.key_a
    await policies.set_policy(
        db, await tenants.system_actor(db), world.a.id, policies.FulfillmentPolicy(transit_days=TRANSIT_DAYS)
    )
    warehouse = await make_warehouse(client, key, "BER", region="Berlin")
    await put_stock(client, key, warehouse, TENT=5, MAT=5)
    now = dt.datetime.now(dt.UTC)
    carrier_says = (now + dt.timedelta(hours=20)).replace(microsecond=0)

    # Shipped, the carrier's estimate in time for the promise: on track.
    by_carrier, parcel = await _shipped_order(client, key, warehouse, "TENT")
    await track(client, key, parcel, "in_transit", 10, estimated_delivery=carrier_says.isoformat())
    await promise(owner_connection, by_carrier, now + dt.timedelta(days=1))
    # Shipped three hours ago, no estimate: expected two transit days after leaving.
    by_transit, _ = await _shipped_order(client, key, warehouse, "MAT")
    await promise(owner_connection, by_transit, now + dt.timedelta(days=1))
    # Not shipped: now plus the transit days at the soonest.
    unshipped = await pending_order(client, key)
    await promise(owner_connection, unshipped, now + dt.timedelta(hours=1))
    # The promise passed already.
    overdue = await pending_order(client, key)
    await promise(owner_connection, overdue, now - dt.timedelta(days=1))
    # Another tenant's late order never shows in this lead's view.
    foreign = await pending_order(client, world.key_b)
    await promise(owner_connection, foreign, now - dt.timedelta(days=5))

    view = await operations.operations_view(db, world.lead_a_actor(), now=now)
    [tenant] = view.tenants
    assert (tenant.on_track, tenant.expected_late, tenant.late) == (1, 2, 1)
    assert tenant.transit_days == TRANSIT_DAYS
    assert [o.id for o in view.slipping] == [uuid.UUID(o["id"]) for o in (overdue, unshipped, by_transit)]
    worst, middle, least = view.slipping
    assert worst.late and not middle.late and not least.late
    assert worst.expected_at == middle.expected_at == now + dt.timedelta(days=TRANSIT_DAYS)
    assert worst.slip == dt.timedelta(days=TRANSIT_DAYS + 1)
    assert least.expected_at == START + dt.timedelta(days=TRANSIT_DAYS)
    assert {o.expected_source for o in view.slipping} == {"estimate"}

    # The carrier's estimate slips past the promise: the order is expected late, by the carrier.
    later = carrier_says + dt.timedelta(days=2)
    await track(client, key, parcel, "in_transit", 20, estimated_delivery=later.isoformat())
    view = await operations.operations_view(db, world.lead_a_actor(), now=now)
    carrier_row = next(o for o in view.slipping if o.id == uuid.UUID(by_carrier["id"]))
    assert carrier_row.expected_source == "carrier" and carrier_row.expected_at == later
    assert (view.tenants[0].on_track, view.tenants[0].expected_late) == (0, 3)

    page = await _board(client, world)
    assert 'data-testid="operations-slipping"' in page
    assert f'data-order="{overdue["id"]}"' in page and f"/console/orders/{by_carrier['id']}" in page
    assert 'data-source="carrier"' in page and 'data-source="estimate"' in page
    assert foreign["id"] not in page and world.b.name not in page


async def test_the_latest_estimate_is_kept_and_a_date_means_the_end_of_that_day(client, world: World):
    key = world.key_a
    warehouse = await make_warehouse(client, key, "BER", region="Berlin")
    await put_stock(client, key, warehouse, TENT=1)
    _, parcel = await _shipped_order(client, key, warehouse, "TENT")
    day = (START + dt.timedelta(days=3)).date()
    newer = await track(client, key, parcel, "in_transit", 60, estimated_delivery=day.isoformat())
    # The end of that day where the client is.
    zone = ZoneInfo(world.a.time_zone)
    end_of_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    assert dt.datetime.fromisoformat(newer["shipment"]["estimated_delivery_at"]) == end_of_day
    # An older scan arriving late keeps its own estimate, but the shipment keeps the newer one.
    older = await track(
        client, key, parcel, "info_received", 5, estimated_delivery=(START + dt.timedelta(days=9)).isoformat()
    )
    assert dt.datetime.fromisoformat(older["shipment"]["estimated_delivery_at"]) == end_of_day
    assert dt.datetime.fromisoformat(older["shipment"]["events"][0]["estimated_delivery_at"]) == START + (
        dt.timedelta(days=9)
    )
    # A retry without an estimate, as events were sent before estimates existed, is the same event.
    plain = {
        "event_id": "plain-1",
        "status": "in_transit",
        "occurred_at": (START + dt.timedelta(hours=2)).isoformat(),
    }
    path = f"/api/v1/shipments/{parcel['id']}/tracking-events"
    first = await client.post(path, json=plain, headers=bearer(key))
    again = await client.post(path, json=plain, headers=bearer(key))
    assert first.status_code in (200, 201) and not first.json()["duplicate"]
    assert again.json()["duplicate"]


async def test_a_bad_estimated_delivery_gets_a_specific_error(client, world: World):
    key = world.key_a
    warehouse = await make_warehouse(client, key, "BER", region="Berlin")
    await put_stock(client, key, warehouse, TENT=1)
    _, parcel = await _shipped_order(client, key, warehouse, "TENT")
    path = f"/api/v1/shipments/{parcel['id']}/tracking-events"

    def event(estimate) -> dict:
        return {
            "event_id": uuid.uuid4().hex,
            "status": "in_transit",
            "occurred_at": START.isoformat(),
            "estimated_delivery": estimate,
        }

    for shapeless in ("2026-02-30", "next tuesday", 1735689600):
        bad = await client.post(path, json=event(shapeless), headers=bearer(key))
        assert bad.status_code == 400, bad.text
        [error] = bad.json()["errors"]
        assert error["field"] == "estimated_delivery" and "2026-05-05" in error["message"]
    before = await client.post(
        path, json=event((START - dt.timedelta(days=1)).isoformat()), headers=bearer(key)
    )
    assert before.status_code == 422
    assert before.json()["errors"][0]["field"] == "estimated_delivery"
    assert "before the shipment left" in before.json()["errors"][0]["message"]
    far = await client.post(
        path, json=event((START + dt.timedelta(days=400)).isoformat()), headers=bearer(key)
    )
    assert far.status_code == 422 and "90 days" in far.json()["errors"][0]["message"]
    # Nothing of the refused events was kept.
    shipment = (await client.get(f"/api/v1/shipments/{parcel['id']}", headers=bearer(key))).json()
    assert shipment["events"] == [] and shipment["estimated_delivery_at"] is None


async def test_transit_days_out_of_range_are_refused_and_the_policy_kept(client, world: World):
    """The fulfillment policy's transit days: a clear error per field, nothing of the request kept."""
    from tests.conftest import session_csrf

    await sign_in(client, world.admin)
    headers = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    url = f"/api/v1/tenants/{world.a.id}/fulfillment-policy"
    saved = await client.put(url, json={"transit_days": 5}, headers=headers)
    assert saved.status_code == 200, saved.text
    for bad in (0, 61):
        refused = await client.put(url, json={"transit_days": bad, "return_window_days": 10}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["transit_days"]
    not_a_number = await client.put(url, json={"transit_days": "three"}, headers=headers)
    assert not_a_number.status_code == 400
    assert [e["field"] for e in not_a_number.json()["errors"]] == ["transit_days"]
    kept = (await client.get(url, headers=headers)).json()
    assert kept["transit_days"] == 5 and kept["return_window_days"] == 30
