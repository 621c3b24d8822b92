"""Inventory's reactions to other features' domain events, in the recording transaction.

- An order is verified: route and reserve it (allocated or backordered).
- An order is cancelled: its reservations go back to stock, its backorders are dropped.
- A hold that frees stock is placed on an allocated or backordered order: its
  reservations go back to stock and it is verified again.
- An order's last hold is released: a verified order is allocated, backorders get
  another chance.
- Units become available anywhere: waiting backorders are filled, most urgent first.
- Someone moves an order to allocated/backordered by hand while the tenant keeps
  stock here: refused, because an allocated order must hold reserved stock.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core import events
from orderdesk.core.errors import Conflict
from orderdesk.inventory import allocation, ledger
from orderdesk.orders.states import HoldReason, OrderStatus
from orderdesk.orders.timeline import OrderChanged, OrdersCaptured, order_changes_of

_FREED_KEY = "orderdesk.stock_freed"


class FillBackorders:
    """Recorded once per batch of freed stock, so that backorders are filled in one pass."""


async def on_order_changed(session: AsyncSession, event: OrderChanged) -> None:
    kind = event.event.kind
    order = event.order
    if kind in ("verify", "verified"):
        if order.status is OrderStatus.VERIFIED:
            stock = await allocation.read_order_stock(session, order)
            if stock.managed:
                await allocation.allocate_after_verification(session, order, stock)
    elif kind == "cancel":
        await allocation.release_order(
            session,
            allocation.system_actor_for(order.tenant_id),
            order,
            reason=f"order #{order.number} cancelled",
        )
    elif kind == "hold_placed":
        reason = (event.event.changes.get("hold") or [None, None])[1]
        if reason and HoldReason(reason) in allocation.STOCK_RELEASING_HOLDS:
            await allocation.release_for_hold(session, order, HoldReason(reason))
    elif kind == "hold_released":
        if event.event.changes.get("still_on_hold"):
            return
        if order.status is OrderStatus.VERIFIED:
            # Its stock was given back for the hold (or never reserved): route it now.
            stock = await allocation.read_order_stock(session, order)
            if stock.managed:
                await allocation.allocate_after_verification(session, order, stock)
        elif await allocation.manages_stock(session, order.tenant_id):
            await allocation.retry_backorders(session, allocation.system_actor_for(order.tenant_id), order)
    elif kind in ("allocate", "backorder") and "allocation" not in event.event.changes:
        if await allocation.manages_stock(session, order.tenant_id):
            raise Conflict(
                "Allocation is automatic for tenants with warehouses: verify the order, retry its "
                "backorders, or override the warehouse"
            )


# The timeline kinds `on_order_changed` acts on.
_KINDS = frozenset({"verify", "verified", "cancel", "hold_placed", "hold_released", "allocate", "backorder"})


async def on_orders_captured(session: AsyncSession, captured: OrdersCaptured) -> None:
    """A batch of new orders: those verified automatically are routed one by one, as after
    `capture_order`; the others (waiting for an agent) need nothing and cost no query."""
    for changed in await order_changes_of(session, captured, _KINDS):
        await on_order_changed(session, changed)


async def on_stock_freed(session: AsyncSession, event: ledger.StockFreed) -> None:
    freed = session.info.get(_FREED_KEY)
    if freed is None:
        freed = session.info[_FREED_KEY] = set()
        events.record(session, FillBackorders())
    freed.add((event.tenant_id, event.warehouse_id, event.sku))


async def on_fill_backorders(session: AsyncSession, _event: FillBackorders) -> None:
    freed = session.info.pop(_FREED_KEY, set())
    for tenant_id in sorted({t for t, _, _ in freed}, key=str):
        keys = {(w, sku) for t, w, sku in freed if t == tenant_id}
        await allocation.fill_from_arrivals(session, tenant_id, keys)


def connect() -> None:
    """Subscribe inventory's handlers (called from `orderdesk.wiring`)."""
    events.subscribe(OrderChanged, on_order_changed)
    events.subscribe(OrdersCaptured, on_orders_captured)
    events.subscribe(ledger.StockFreed, on_stock_freed)
    events.subscribe(FillBackorders, on_fill_backorders)
    events.subscribe(ledger.MovementsQueued, ledger.flush_movements)
