"""Retrying allocation (POST /orders/{id}/allocation/retry): the driver-connection path.

It writes the order's status, timeline row and webhook event itself instead of going
through the ORM and the domain events, so these tests hold it to what the event
handlers would have written, and to the same locking as every other allocation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import asyncpg
import pytest
from sqlalchemy import func, select

from orderdesk.core import events
from orderdesk.core.db import Database, make_engine
from orderdesk.core.errors import Conflict, InvalidTransition, NotFound
from orderdesk.integrations.models import OutboxEvent
from orderdesk.inventory import allocation
from orderdesk.inventory import services as inventory
from orderdesk.inventory.allocation import system_actor_for
from orderdesk.invoices.models import Invoice
from orderdesk.orders.models import Order, OrderEvent
from orderdesk.orders.timeline import OrderChanged, order_snapshot
from orderdesk.tenants import services as tenants
from orderdesk.workqueue.models import WorkItem
from tests.conftest import World
from tests.integration.test_inventory import (
    allocation_of,
    hold,
    level,
    make_warehouse,
    new_order,
    put_stock,
    timeline,
    verify,
)
from tests.integration.test_orders_api import bearer


async def retry(client, key: str, order: dict):
    return await client.post(f"/api/v1/orders/{order['id']}/allocation/retry", headers=bearer(key))


async def outbox_of(owner_connection, order: dict) -> list:
    rows = await owner_connection.fetch(
        "SELECT event_type, order_seq, payload FROM outbox_events WHERE order_id = $1 ORDER BY order_seq",
        uuid.UUID(order["id"]),
    )
    return [(r["event_type"], r["order_seq"], json.loads(r["payload"])) for r in rows]


async def ledger_reserved(owner_connection, order: dict) -> int:
    return await owner_connection.fetchval(
        "SELECT coalesce(sum(reserved_after - reserved_before), 0) FROM stock_movements"
        " WHERE order_id = $1 AND kind = 'reserve'",
        uuid.UUID(order["id"]),
    )


class _RollBack(Exception):
    pass


async def test_retry_writes_the_webhook_event_the_event_handlers_would_write(
    client, world: World, db, owner_connection
):
    key = world.key_a
    order = await verify(client, key, await new_order(client, key, TENT=2))
    assert order["status"] == "verified"  # no warehouse yet
    wh = await make_warehouse(client, key, "LATE")
    await put_stock(client, key, wh, TENT=5)

    answer = await retry(client, key, order)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "allocated"
    written = await outbox_of(owner_connection, order)
    assert [seq for _, seq, _ in written] == list(range(1, len(written) + 1))
    event_type, seq, payload = written[-1]
    assert event_type == "order.allocated" and payload["data"]["sequence"] == seq
    assert payload["data"]["order"]["status"] == "allocated"
    assert payload["data"]["change"]["summary"] == "Allocated to LATE"
    assert payload["data"]["change"]["changes"]["status"] == ["verified", "allocated"]

    # Hand the stored timeline event to every subscribed handler, as the ORM path did,
    # and compare what they write with what the retry wrote (then roll it back).
    system = await tenants.system_actor(db)
    with pytest.raises(_RollBack) as rolled_back:
        async with db.transaction(system.scope) as session:
            stored = await session.scalar(select(Order).where(Order.id == uuid.UUID(order["id"])))
            last = (await timeline(client, key, order))[-1]
            assert last["kind"] == "allocate"
            event = OrderEvent(
                tenant_id=stored.tenant_id,
                order_id=stored.id,
                seq=last["seq"],
                kind=last["kind"],
                actor_kind=last["actor_kind"],
                actor_id=str(uuid.UUID(int=0)),
                actor_name=last["actor_name"],
                channel=last["channel"],
                summary=last["summary"],
                changes=last["changes"],
            )
            work_before = await session.scalar(select(func.count()).select_from(WorkItem))
            invoices_before = await session.scalar(select(func.count()).select_from(Invoice))
            events.record(
                session,
                OrderChanged(stored, event, system_actor_for(stored.tenant_id), order_snapshot(stored)),
            )
            await events.dispatch(session)
            assert not session.new and not session.dirty
            assert await session.scalar(select(func.count()).select_from(WorkItem)) == work_before
            assert await session.scalar(select(func.count()).select_from(Invoice)) == invoices_before
            by_handler = await session.scalar(
                select(OutboxEvent).where(OutboxEvent.order_id == stored.id, OutboxEvent.order_seq == seq + 1)
            )
            raise _RollBack(by_handler.event_type, by_handler.payload)
    handler_type, handler_payload = rolled_back.value.args
    assert handler_type == event_type
    assert handler_payload["data"]["sequence"] == seq + 1  # the handler numbers after the retry's
    for written_by in (payload, handler_payload):
        del written_by["id"], written_by["timestamp"], written_by["data"]["sequence"]
    assert payload == handler_payload


async def test_a_backorder_filled_by_retry_stays_backordered_and_tells_no_webhook(
    client, world: World, owner_connection
):
    key = world.key_a
    wh = await make_warehouse(client, key, "DEONLY", ships_to=["DE"])
    await put_stock(client, key, wh, TENT=1)
    order = await verify(client, key, await new_order(client, key, country="FR", TENT=2))
    assert order["status"] == "backordered"
    before = await outbox_of(owner_connection, order)
    assert before[-1][0] == "order.backordered"

    patched = await client.patch(
        f"/api/v1/warehouses/{wh['id']}", json={"ships_to": ["DE", "FR"]}, headers=bearer(key)
    )
    assert patched.status_code == 200, patched.text
    answer = await retry(client, key, order)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["status"] == "backordered"
    assert [(a["warehouse_code"], a["reserved_qty"]) for a in view["allocations"]] == [("DEONLY", 1)]
    assert view["backorders"] == [{"line_no": 1, "sku": "TENT", "quantity": 1}]
    assert view == await allocation_of(client, key, order)  # the answer is what is stored
    last = (await timeline(client, key, order))[-1]
    assert last["kind"] == "backorder_filled" and last["channel"] == "system"
    assert last["summary"] == "Backordered: waiting for 1 × TENT; reserved the rest at DEONLY"
    assert await outbox_of(owner_connection, order) == before  # not a webhook event
    assert (await level(client, key, wh, "TENT"))["reserved"] == 1
    assert await ledger_reserved(owner_connection, order) == 1

    # The rest arrives: filled on arrival, allocated, and webhooks hear it next in sequence.
    await put_stock(client, key, wh, TENT=2)
    assert (await allocation_of(client, key, order))["status"] == "allocated"
    after = await outbox_of(owner_connection, order)
    assert [t for t, _, _ in after[len(before) :]] == ["order.allocated"]
    assert [seq for _, seq, _ in after] == list(range(1, len(after) + 1))


async def test_retry_of_an_order_on_hold_is_refused_and_reserves_nothing(
    client, world: World, owner_connection
):
    key = world.key_a
    order = await verify(client, key, await new_order(client, key, TENT=1))
    await hold(client, key, order, "address_problem")
    wh = await make_warehouse(client, key, "HELD")
    await put_stock(client, key, wh, TENT=3)
    before = await outbox_of(owner_connection, order)

    answer = await retry(client, key, order)
    assert answer.status_code == 409, answer.text
    assert (await level(client, key, wh, "TENT"))["reserved"] == 0
    assert await outbox_of(owner_connection, order) == before
    assert (await timeline(client, key, order))[-1]["kind"] == "hold_placed"


async def test_concurrent_retries_of_one_order_reserve_its_units_once(
    client, world: World, db, owner_connection
):
    """The retries queue on the order's row lock; each must see what the one before it wrote."""
    key = world.key_a
    wh = await make_warehouse(client, key, "ONCE", ships_to=["DE"])
    await put_stock(client, key, wh, TENT=10)
    order = await verify(client, key, await new_order(client, key, country="FR", TENT=2))
    assert order["status"] == "backordered"
    patched = await client.patch(
        f"/api/v1/warehouses/{wh['id']}", json={"ships_to": ["DE", "FR"]}, headers=bearer(key)
    )
    assert patched.status_code == 200
    system = await tenants.system_actor(db)

    async def retry_once():
        try:
            return (await inventory.retry_allocation(db, system, uuid.UUID(order["id"]))).status
        except Conflict:
            return "nothing to do"

    outcomes = await asyncio.gather(*(retry_once() for _ in range(8)))
    assert sorted(outcomes) == ["allocated"] + ["nothing to do"] * 7
    assert (await level(client, key, wh, "TENT"))["reserved"] == 2
    assert await ledger_reserved(owner_connection, order) == 2
    kinds = [e["kind"] for e in await timeline(client, key, order)]
    assert kinds.count("allocate") == 1
    assert [t for t, _, _ in await outbox_of(owner_connection, order)].count("order.allocated") == 1


async def test_concurrent_retries_never_oversell(client, world: World, db, owner_connection):
    """Twenty orders verified before any warehouse existed race for seven units in two warehouses."""
    key = world.key_a
    orders = [
        await verify(client, key, await new_order(client, key, region="Berlin", HOT=1)) for _ in range(20)
    ]
    ber = await make_warehouse(client, key, "RB", region="Berlin")
    muc = await make_warehouse(client, key, "RM", region="Bayern")
    await put_stock(client, key, ber, HOT=4)
    await put_stock(client, key, muc, HOT=3)
    system = await tenants.system_actor(db)
    views = await asyncio.gather(
        *(inventory.retry_allocation(db, system, uuid.UUID(o["id"])) for o in orders)
    )
    statuses = [v.status for v in views]
    assert statuses.count("allocated") == 7 and statuses.count("backordered") == 13
    assert (
        (await level(client, key, ber, "HOT"))["reserved"],
        (await level(client, key, muc, "HOT"))["reserved"],
    ) == (4, 3)
    assert sum([await ledger_reserved(owner_connection, o) for o in orders]) == 7
    for o, view in zip(orders, views, strict=True):
        written = await outbox_of(owner_connection, o)
        assert [seq for _, seq, _ in written] == list(range(1, len(written) + 1))
        assert written[-1][0] == f"order.{view.status}"
        assert written[-1][2]["data"]["order"]["status"] == view.status


async def _transaction_of(owner_connection, order: dict) -> str:
    """The transaction that last wrote the order's row (its xmin)."""
    return await owner_connection.fetchval(
        "SELECT CAST(xmin AS text) FROM orders WHERE id = $1", uuid.UUID(order["id"])
    )


async def test_retries_made_together_share_one_transaction_and_each_gets_its_own_answer(
    client, world: World, db, owner_connection
):
    """Served in one batch: the urgent order gets the last unit though it asked last, and a
    missing order, another tenant's order and an order on hold get their own errors
    without holding the others back."""
    key = world.key_a
    waiting = [await verify(client, key, await new_order(client, key, HOT=1)) for _ in range(3)]
    urgent = await verify(client, key, await new_order(client, key, priority="urgent", HOT=1))
    held = await verify(client, key, await new_order(client, key, HOT=1))
    await hold(client, key, held, "address_problem")
    foreign = await verify(client, world.key_b, await new_order(client, world.key_b, HOT=1))
    wh = await make_warehouse(client, key, "TOGETHER")
    await put_stock(client, key, wh, HOT=3)
    actor = dataclasses.replace(await tenants.system_actor(db), tenant_ids=frozenset({world.a.id}))

    asked = [*waiting, urgent, held, foreign]
    outcomes = await asyncio.gather(
        *(inventory.retry_allocation(db, actor, uuid.UUID(o["id"])) for o in asked),
        inventory.retry_allocation(db, actor, uuid.uuid4()),
        return_exceptions=True,
    )
    views, held_error, foreign_error, missing_error = outcomes[:4], outcomes[4], outcomes[5], outcomes[6]
    assert [v.status for v in views].count("allocated") == 3
    assert views[3].status == "allocated"  # the urgent order first, whatever the asking order
    assert isinstance(held_error, InvalidTransition)
    assert type(foreign_error) is type(missing_error) is NotFound
    assert str(foreign_error) == str(missing_error)

    allocated = [o for o, v in zip(asked, views, strict=False) if v.status == "allocated"]
    assert len({await _transaction_of(owner_connection, o) for o in allocated}) == 1
    assert (await level(client, key, wh, "HOT"))["reserved"] == 3
    for order, view in zip(asked, views, strict=False):
        assert view.model_dump(mode="json") == await allocation_of(client, key, order)
    assert (await allocation_of(client, key, held))["allocations"] == []
    assert (await allocation_of(client, world.key_b, foreign))["status"] == "verified"


async def test_a_batch_that_fails_serves_each_order_alone(
    client, world: World, db, owner_connection, monkeypatch
):
    """A database error in one order's write aborts the batch's transaction: the others
    are allocated on their own, and only that order's caller sees the error."""
    key = world.key_a
    orders = [await verify(client, key, await new_order(client, key, HOT=1)) for _ in range(4)]
    wh = await make_warehouse(client, key, "ALONE")
    await put_stock(client, key, wh, HOT=10)
    broken = uuid.UUID(orders[2]["id"])
    prepare_reservation = allocation.prepare_reservation

    def failing_for_one(order, stock):
        reservation = prepare_reservation(order, stock)
        if order.id == broken:  # a status the database refuses
            return dataclasses.replace(reservation, params={**reservation.params, "status": "mislaid"})
        return reservation

    monkeypatch.setattr(allocation, "prepare_reservation", failing_for_one)
    batch_sizes = []
    allocate_locked = inventory._allocate_locked

    async def counting(driver, tenant_ids, order_ids):
        batch_sizes.append(len(order_ids))
        return await allocate_locked(driver, tenant_ids, order_ids)

    monkeypatch.setattr(inventory, "_allocate_locked", counting)
    system = await tenants.system_actor(db)
    outcomes = await asyncio.gather(
        *(inventory.retry_allocation(db, system, uuid.UUID(o["id"])) for o in orders), return_exceptions=True
    )
    assert batch_sizes == [4, 1, 1, 1, 1]  # one batch, then each order alone
    assert isinstance(outcomes[2], asyncpg.InvalidTextRepresentationError)
    assert [o.status for i, o in enumerate(outcomes) if i != 2] == ["allocated"] * 3
    assert (await allocation_of(client, key, orders[2]))["status"] == "verified"
    assert (await level(client, key, wh, "HOT"))["reserved"] == 3
    assert sum([await ledger_reserved(owner_connection, o) for o in orders]) == 3


async def test_an_order_held_elsewhere_does_not_hold_up_the_rest_of_its_batch(
    client, world: World, db, owner_connection, monkeypatch
):
    """Another transaction holds one order of the batch: after its lock timeout the batch
    gives up, the other orders are allocated, and the busy one waits for its row alone
    (no error for its caller), then is allocated too."""
    monkeypatch.setattr(inventory, "ALLOCATION_BATCH_LOCK_TIMEOUT", "100ms")
    key = world.key_a
    orders = [await verify(client, key, await new_order(client, key, HOT=1)) for _ in range(3)]
    wh = await make_warehouse(client, key, "BUSY")
    await put_stock(client, key, wh, HOT=3)
    busy = orders[1]
    system = await tenants.system_actor(db)
    async with owner_connection.transaction():
        await owner_connection.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", uuid.UUID(busy["id"]))
        asked = {
            o["id"]: asyncio.create_task(inventory.retry_allocation(db, system, uuid.UUID(o["id"])))
            for o in orders
        }
        others = [task for order_id, task in asked.items() if order_id != busy["id"]]
        done, _ = await asyncio.wait(others, timeout=10)
        assert done == set(others)
        assert [task.result().status for task in others] == ["allocated", "allocated"]
        await asyncio.sleep(0.3)  # well past the timeout: still waiting for its row
        assert not asked[busy["id"]].done()
    assert (await asked[busy["id"]]).status == "allocated"
    assert (await level(client, key, wh, "HOT"))["reserved"] == 3


async def _until(condition, seconds: float = 5.0) -> bool:
    """Poll `condition` (a pool's count: nothing to wait on) until it holds."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def test_a_retry_waiting_for_another_batch_holds_no_connection(
    client, settings, world: World, db, owner_connection
):
    """A request authenticated by an API key holds the look-up's transaction until its
    work begins (`Database.continuing`). Waiting for a batch that other requests lead,
    it must give that connection back: on a fixed pool, requests holding connections
    while they wait for batches that need one would stall each other."""
    key = world.key_a
    orders = [await verify(client, key, await new_order(client, key, TINY=1)) for _ in range(3)]
    wh = await make_warehouse(client, key, "WAITING")
    await put_stock(client, key, wh, TINY=3)
    actor = dataclasses.replace(await tenants.system_actor(db), tenant_ids=frozenset({world.a.id}))
    small = Database(make_engine(settings.app_url, pool_size=3, max_overflow=0))
    pool = small.engine.pool
    try:
        async with owner_connection.transaction():
            # Both batches a process runs at once stop at the stock row, each on a connection.
            await owner_connection.execute(
                "SELECT 1 FROM stock_levels WHERE warehouse_id = $1 FOR UPDATE", uuid.UUID(wh["id"])
            )
            leading = []
            for order in orders[:2]:
                leading.append(
                    asyncio.create_task(inventory.retry_allocation(small, actor, uuid.UUID(order["id"])))
                )
                assert await _until(lambda n=len(leading): pool.checkedout() == n)
            request_db = small.continuing(await small.begin(actor.scope), actor.scope)
            assert pool.checkedout() == 3
            waiting = asyncio.create_task(
                inventory.retry_allocation(request_db, actor, uuid.UUID(orders[2]["id"]))
            )
            assert await _until(lambda: pool.checkedout() == 2)
            assert not waiting.done()
        statuses = [view.status for view in await asyncio.gather(*leading, waiting)]
        await request_db.release_open_transaction()
    finally:
        await small.dispose()
    assert statuses == ["allocated"] * 3
    assert (await level(client, key, wh, "TINY"))["reserved"] == 3


async def test_a_batch_whose_writes_differ_from_its_plans_is_rolled_back(
    client, world: World, db, monkeypatch
):
    """After writing, the batch reads its stock rows again: if they do not show exactly
    what its plans reserved, nothing of the batch stays, and every caller hears so."""
    key = world.key_a
    orders = [await verify(client, key, await new_order(client, key, HOT=1)) for _ in range(3)]
    wh = await make_warehouse(client, key, "CHECKED")
    await put_stock(client, key, wh, HOT=10)
    write_reservations = allocation.write_reservations

    async def losing_the_last(driver, reservations):
        await write_reservations(driver, reservations[:-1])

    monkeypatch.setattr(allocation, "write_reservations", losing_the_last)
    system = await tenants.system_actor(db)
    outcomes = await asyncio.gather(
        *(inventory.retry_allocation(db, system, uuid.UUID(o["id"])) for o in orders), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == ["the stock rows do not show what the batch's plans reserved"] * 3
    assert (await level(client, key, wh, "HOT"))["reserved"] == 0
    assert [(await allocation_of(client, key, o))["status"] for o in orders] == ["verified"] * 3
