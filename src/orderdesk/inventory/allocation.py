"""Allocation inside the caller's transaction: routing, reservation, backorders, release.

Called by the inventory handlers (after verification, on stock arrival, on
cancellation) and by the services (retry, override). The order row is locked by
the caller; stock rows are locked by the reservations themselves, in (warehouse,
sku) order.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from uuid import UUID

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.inventory import ledger, routing
from orderdesk.inventory.models import Allocation, Backorder, StockLevel, Warehouse
from orderdesk.orders import services as orders
from orderdesk.orders.models import Order, OrderHold, OrderLine, Priority
from orderdesk.orders.states import Action, OrderStatus
from orderdesk.orders.timeline import append_event

# Optimistic attempts (plan from a plain read, reserve, re-plan if a race was lost)
# before planning under row locks, which cannot lose.
OPTIMISTIC_ATTEMPTS = 3
URGENCY = {Priority.NORMAL: 0, Priority.HIGH: 1, Priority.URGENT: 2}
# Orders in these statuses may still receive stock for their backorders.
FILLABLE = frozenset(
    {
        OrderStatus.BACKORDERED,
        OrderStatus.ALLOCATED,
        OrderStatus.PICKING,
        OrderStatus.PACKED,
        OrderStatus.PARTIALLY_SHIPPED,
    }
)


def system_actor_for(tenant_id: UUID) -> Actor:
    """Routing is the platform's decision, whoever triggered it."""
    return Actor(
        kind=ActorKind.SYSTEM, id=UUID(int=0), display_name="OrderDesk", tenant_ids=frozenset({tenant_id})
    )


class LostRace(Exception):
    """A planned reservation found fewer units than the plan read a moment before."""


async def manages_stock(session: AsyncSession, tenant_id: UUID) -> bool:
    """Tenants without warehouses keep stock elsewhere; their orders are moved by hand."""
    return bool(await session.scalar(select(exists().where(Warehouse.tenant_id == tenant_id))))


async def load_sites(session: AsyncSession, tenant_id: UUID) -> dict[UUID, routing.Site]:
    rows = await session.scalars(select(Warehouse).where(Warehouse.tenant_id == tenant_id))
    return {w.id: site_of(w) for w in rows}


def site_of(w: Warehouse) -> routing.Site:
    return routing.Site(
        id=w.id,
        code=w.code,
        country=w.country,
        region=w.region,
        priority=w.priority,
        ships_to=frozenset(w.ships_to or ()),
        active=w.active,
    )


def destination_of(order: Order) -> routing.Destination:
    address = order.shipping_address or {}
    return routing.Destination(country=address.get("country", ""), region=address.get("region"))


async def _available(
    session: AsyncSession, tenant_id: UUID, skus: set[str], *, lock: bool = False
) -> dict[tuple[UUID, str], int]:
    query = (
        select(StockLevel.warehouse_id, StockLevel.sku, StockLevel.on_hand - StockLevel.reserved)
        .where(StockLevel.tenant_id == tenant_id, StockLevel.sku.in_(sorted(skus)))
        .order_by(StockLevel.warehouse_id, StockLevel.sku)
    )
    if lock:
        query = query.with_for_update()
    return {(w, sku): available for w, sku, available in await session.execute(query)}


async def open_needs(session: AsyncSession, order: Order) -> list[routing.Need]:
    """Units of each line not yet reserved or shipped."""
    lines = (
        await session.execute(
            select(OrderLine.line_no, OrderLine.sku, OrderLine.quantity).where(
                OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id
            )
        )
    ).all()
    covered: dict[int, int] = defaultdict(int)
    rows = await session.execute(
        select(Allocation.line_no, func.sum(Allocation.reserved_qty + Allocation.shipped_qty))
        .where(Allocation.tenant_id == order.tenant_id, Allocation.order_id == order.id)
        .group_by(Allocation.line_no)
    )
    for line_no, qty in rows:
        covered[line_no] = int(qty)
    return [routing.Need(n, sku, q - covered[n]) for n, sku, q in lines if q > covered[n]]


async def _reserve_plan(session: AsyncSession, actor: Actor, order: Order, plan: routing.Plan) -> None:
    """Reserve every pick, rows locked in (warehouse, sku) order. Raises LostRace."""
    per_row: dict[tuple[UUID, str], int] = defaultdict(int)
    for pick in plan.picks:
        per_row[(pick.warehouse_id, pick.sku)] += pick.quantity
    for (warehouse_id, sku), quantity in sorted(per_row.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        ok = await ledger.try_reserve(
            session, actor, order.tenant_id, warehouse_id, sku, quantity, order_id=order.id
        )
        if not ok:
            raise LostRace


async def _record_plan(session: AsyncSession, order: Order, plan: routing.Plan) -> None:
    if plan.picks:
        upsert = pg_insert(Allocation).values(
            [
                {
                    "tenant_id": order.tenant_id,
                    "order_id": order.id,
                    "line_no": pick.line_no,
                    "warehouse_id": pick.warehouse_id,
                    "sku": pick.sku,
                    "reserved_qty": pick.quantity,
                    "shipped_qty": 0,
                }
                for pick in plan.picks
            ]
        )
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["tenant_id", "order_id", "line_no", "warehouse_id"],
                set_={"reserved_qty": Allocation.reserved_qty + upsert.excluded.reserved_qty},
            )
        )
    await session.execute(
        delete(Backorder).where(Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id)
    )
    if plan.backorders:
        await session.execute(
            pg_insert(Backorder),
            [
                {
                    "tenant_id": order.tenant_id,
                    "order_id": order.id,
                    "line_no": need.line_no,
                    "sku": need.sku,
                    "quantity": need.quantity,
                    "urgency": URGENCY[order.priority],
                    "order_created_at": order.created_at,
                }
                for need in plan.backorders
            ],
        )


async def allocate(
    session: AsyncSession, actor: Actor, order: Order, sites: dict[UUID, routing.Site] | None = None
) -> routing.Plan:
    """Route and reserve every open unit of `order`; what cannot be filled is backordered.

    Never oversells: each reservation re-checks availability under its row lock.
    A lost race re-plans from fresh figures (the savepoint releases its locks).
    """
    needs = await open_needs(session, order)
    if not needs:
        await _record_plan(session, order, routing.Plan((), ()))
        return routing.Plan((), ())
    sites = list((sites if sites is not None else await load_sites(session, order.tenant_id)).values())
    destination = destination_of(order)
    skus = {n.sku for n in needs}
    for _ in range(OPTIMISTIC_ATTEMPTS):
        plan = routing.plan_allocation(
            needs, destination, sites, await _available(session, order.tenant_id, skus)
        )
        mark = ledger.queue_mark(session)
        try:
            async with session.begin_nested():
                # Rows of our own first: the hot stock rows are locked as late as possible.
                await _record_plan(session, order, plan)
                await _reserve_plan(session, actor, order, plan)
        except LostRace:
            # The savepoint undid this attempt's reservations (and released their row locks).
            ledger.discard_since(session, mark)
            continue
        break
    else:
        plan = routing.plan_allocation(
            needs, destination, sites, await _available(session, order.tenant_id, skus, lock=True)
        )
        await _record_plan(session, order, plan)
        await _reserve_plan(session, actor, order, plan)
    return plan


def describe(plan: routing.Plan, sites: dict[UUID, routing.Site]) -> dict:
    """The plan as the timeline keeps it."""
    return {
        "picks": [
            {
                "line_no": p.line_no,
                "sku": p.sku,
                "warehouse": sites[p.warehouse_id].code,
                "quantity": p.quantity,
            }
            for p in plan.picks
        ],
        "backordered": [
            {"line_no": b.line_no, "sku": b.sku, "quantity": b.quantity} for b in plan.backorders
        ],
    }


def summary_of(plan: routing.Plan, sites: dict[UUID, routing.Site], destination: routing.Destination) -> str:
    codes = ", ".join(sites[w].code for w in plan.warehouses)
    if plan.complete:
        return f"Allocated to {codes}" if len(plan.warehouses) == 1 else f"Allocated, split across {codes}"
    waiting = ", ".join(f"{b.quantity} × {b.sku}" for b in plan.backorders)
    if not any(s.serves(destination.country) for s in sites.values()):
        return f"Backordered: no active warehouse ships to {destination.country or 'this address'}"
    return f"Backordered: waiting for {waiting}" + (f"; reserved the rest at {codes}" if codes else "")


async def allocate_after_verification(session: AsyncSession, order: Order) -> None:
    """Route a just-verified order: it becomes allocated, or backordered for what is missing."""
    actor = system_actor_for(order.tenant_id)
    sites = await load_sites(session, order.tenant_id)
    plan = await allocate(session, actor, order, sites)
    action = Action.ALLOCATE if plan.complete else Action.BACKORDER
    await orders.apply_action(
        session,
        actor,
        order,
        action,
        summary=summary_of(plan, sites, destination_of(order)),
        changes={"allocation": describe(plan, sites)},
        channel="system",
    )


async def retry_backorders(session: AsyncSession, actor: Actor, order: Order) -> routing.Plan | None:
    """Re-route an order's backordered units; allocated when nothing is missing any more."""
    if order.status not in FILLABLE:
        return None
    waiting = await session.scalar(
        select(func.count()).where(Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id)
    )
    if not waiting:
        return None
    sites = await load_sites(session, order.tenant_id)
    plan = await allocate(session, actor, order, sites)
    if not plan.picks:
        return plan
    await _after_fill(
        session,
        actor,
        order,
        plan.complete,
        describe(plan, sites),
        summary_of(plan, sites, destination_of(order)),
    )
    return plan


async def _after_fill(
    session: AsyncSession, actor: Actor, order: Order, complete: bool, changes: dict, summary: str
) -> None:
    if complete and order.status is OrderStatus.BACKORDERED:
        await orders.apply_action(
            session,
            actor,
            order,
            Action.ALLOCATE,
            summary=summary,
            changes={"allocation": changes},
            channel="system",
        )
    else:
        append_event(
            session, order, actor, "backorder_filled", summary, {"allocation": changes}, channel="system"
        )
        order.version += 1
        order.updated_at = dt.datetime.now(dt.UTC)


async def release_order(session: AsyncSession, actor: Actor, order: Order, reason: str) -> int:
    """Give back every unit still reserved for `order` and forget its backorders; returns units."""
    rows = (
        await session.scalars(
            select(Allocation)
            .where(
                Allocation.tenant_id == order.tenant_id,
                Allocation.order_id == order.id,
                Allocation.reserved_qty > 0,
            )
            .order_by(Allocation.warehouse_id, Allocation.sku)
        )
    ).all()
    per_row: dict[tuple[UUID, str], int] = defaultdict(int)
    for row in rows:
        per_row[(row.warehouse_id, row.sku)] += row.reserved_qty
    for (warehouse_id, sku), quantity in sorted(per_row.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        await ledger.release(
            session, actor, order.tenant_id, warehouse_id, sku, quantity, order_id=order.id, reason=reason
        )
    await session.execute(
        update(Allocation)
        .where(Allocation.tenant_id == order.tenant_id, Allocation.order_id == order.id)
        .values(reserved_qty=0)
    )
    await session.execute(
        delete(Backorder).where(Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id)
    )
    return sum(per_row.values())


async def fill_from_arrivals(session: AsyncSession, tenant_id: UUID, keys: set[tuple[UUID, str]]) -> int:
    """Give units that just became available to waiting backorders; returns orders served.

    Runs in the transaction that freed the units, which already holds those stock
    rows; it touches no other stock row, and skips orders another transaction has
    locked (the periodic sweep serves them later), so it cannot deadlock.
    """
    skus = {sku for _, sku in keys}
    queued = (
        await session.execute(
            select(Backorder, Order)
            .join(Order, (Order.tenant_id == Backorder.tenant_id) & (Order.id == Backorder.order_id))
            .where(
                Backorder.tenant_id == tenant_id, Backorder.sku.in_(sorted(skus)), Order.status.in_(FILLABLE)
            )
            .order_by(Backorder.urgency.desc(), Backorder.order_created_at, Backorder.order_id)
            .limit(500)
        )
    ).all()
    if not queued:
        return 0
    held = set(
        await session.scalars(
            select(OrderHold.order_id).where(
                OrderHold.tenant_id == tenant_id,
                OrderHold.order_id.in_({o.id for _, o in queued}),
                OrderHold.released_at.is_(None),
            )
        )
    )
    candidates = [(b, o) for b, o in queued if o.id not in held]
    available = {
        key: qty
        for key, qty in (await _available(session, tenant_id, skus)).items()
        if key in keys and qty > 0
    }
    if not available or not candidates:
        return 0
    sites = await load_sites(session, tenant_id)
    queue = [
        routing.QueuedBackorder(
            o.id, b.line_no, b.sku, b.quantity, b.urgency, b.order_created_at, destination_of(o)
        )
        for b, o in candidates
    ]
    fills = routing.fill_backorders(queue, sites.values(), available)
    if not fills:
        return 0
    by_order: dict[UUID, list[routing.Fill]] = defaultdict(list)
    for fill in fills:
        by_order[fill.backorder.order_id].append(fill)
    served = 0
    for order_id in sorted(by_order, key=str):
        order = await session.scalar(
            select(Order)
            .where(Order.tenant_id == tenant_id, Order.id == order_id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if order is None or order.status not in FILLABLE:
            continue
        actor = system_actor_for(tenant_id)
        taken = []
        for fill in by_order[order_id]:
            if not await ledger.try_reserve(
                session,
                actor,
                tenant_id,
                fill.warehouse_id,
                fill.backorder.sku,
                fill.quantity,
                order_id=order.id,
            ):
                continue
            taken.append(fill)
            await session.execute(
                pg_insert(Allocation)
                .values(
                    tenant_id=tenant_id,
                    order_id=order.id,
                    line_no=fill.backorder.line_no,
                    warehouse_id=fill.warehouse_id,
                    sku=fill.backorder.sku,
                    reserved_qty=fill.quantity,
                    shipped_qty=0,
                )
                .on_conflict_do_update(
                    index_elements=["tenant_id", "order_id", "line_no", "warehouse_id"],
                    set_={"reserved_qty": Allocation.reserved_qty + fill.quantity},
                )
            )
            left = fill.backorder.quantity - fill.quantity
            key = (
                (Backorder.tenant_id == tenant_id)
                & (Backorder.order_id == order.id)
                & (Backorder.line_no == fill.backorder.line_no)
            )
            if left > 0:
                await session.execute(update(Backorder).where(key).values(quantity=left))
            else:
                await session.execute(delete(Backorder).where(key))
        if not taken:
            continue
        served += 1
        remaining = await session.scalar(
            select(func.count()).where(Backorder.tenant_id == tenant_id, Backorder.order_id == order.id)
        )
        changes = {
            "picks": [
                {
                    "line_no": f.backorder.line_no,
                    "sku": f.backorder.sku,
                    "warehouse": sites[f.warehouse_id].code,
                    "quantity": f.quantity,
                }
                for f in taken
            ]
        }
        got = ", ".join(f"{f.quantity} × {f.backorder.sku} at {sites[f.warehouse_id].code}" for f in taken)
        summary = f"Stock arrived: reserved {got}" + ("" if not remaining else "; more still backordered")
        await _after_fill(session, actor, order, not remaining, changes, summary)
    return served
