"""Invoicing's reactions, in the recording transaction: the invoice at the moment the
tenant chose (verification or first shipment), a credit note for every refund."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core import events
from orderdesk.fulfillment.models import Return
from orderdesk.fulfillment.policy import policy_of
from orderdesk.fulfillment.returns import ReturnRefunded
from orderdesk.inventory.allocation import system_actor_for
from orderdesk.invoices import services
from orderdesk.orders.models import Order
from orderdesk.orders.timeline import OrderChanged, OrdersCaptured, order_changes_of

MOMENTS = {
    "verify": "verification",
    "verified": "verification",
    "ship": "shipment",
    "ship_partially": "shipment",
}


async def on_order_changed(session: AsyncSession, event: OrderChanged) -> None:
    moment = MOMENTS.get(event.event.kind)
    if moment is None:
        return
    policy = await policy_of(session, event.order.tenant_id)
    if policy.invoice_on == moment:
        await services.issue_invoice_in(session, system_actor_for(event.order.tenant_id), event.order)


async def on_orders_captured(session: AsyncSession, captured: OrdersCaptured) -> None:
    """A batch of new orders: those verified automatically are invoiced as after `capture_order`."""
    for changed in await order_changes_of(session, captured, MOMENTS.keys()):
        await on_order_changed(session, changed)


async def on_return_refunded(session: AsyncSession, event: ReturnRefunded) -> None:
    order = await session.scalar(
        select(Order).where(Order.tenant_id == event.tenant_id, Order.id == event.order_id)
    )
    rma = await session.scalar(
        select(Return.rma).where(Return.tenant_id == event.tenant_id, Return.id == event.return_id)
    )
    await services.issue_credit_note_in(
        session, system_actor_for(event.tenant_id), order, event.return_id, rma, event.amount_minor
    )


def connect() -> None:
    """Subscribe invoicing's handlers (called from `orderdesk.wiring`)."""
    events.subscribe(OrderChanged, on_order_changed)
    events.subscribe(OrdersCaptured, on_orders_captured)
    events.subscribe(ReturnRefunded, on_return_refunded)
