"""The work queue's reactions to order events, in the transaction that recorded them.

Each `OrderChanged` is mapped to reactions (`reactions.py`); they are collected
for the whole transaction and applied in one pass just before commit, so a CSV
import of thousands of orders opens its items with one insert, not thousands.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core import events
from orderdesk.orders.timeline import OrderChanged, OrdersCaptured
from orderdesk.workqueue import reactions, services

_PENDING_KEY = "orderdesk.work_reactions"


class WorkReactionsQueued:
    """Recorded once per batch of collected reactions; its handler applies them."""


async def on_order_changed(session: AsyncSession, event: OrderChanged) -> None:
    found = reactions.reactions_to(event.event.kind, event.event.changes or {}, event.order.number)
    if not found:
        return
    pending = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []
        events.record(session, WorkReactionsQueued())
    pending.extend((reaction, event.order, event.actor) for reaction in found)


async def on_orders_captured(session: AsyncSession, captured: OrdersCaptured) -> None:
    """A batch of new orders: the items their events open go in with one statement.

    Anything else their events ask for (settling, cancelling) goes the way of
    `on_order_changed`, in event order.
    """
    opened, other = [], []
    for order in captured.orders:
        for event in order.events:
            for reaction in reactions.reactions_to(event.kind, event.changes, order.number):
                if isinstance(reaction, reactions.OpenItem):
                    opened.append((reaction, order))
                else:
                    other.append((reaction, order, captured.actor))
    await services.open_items_for_new_orders(session, captured.tenant_id, captured.actor, opened)
    if other:
        await services.apply_order_reactions(session, other)


async def on_reactions_queued(session: AsyncSession, _event: WorkReactionsQueued) -> None:
    pending = session.info.pop(_PENDING_KEY, [])
    if pending:
        await services.apply_order_reactions(session, pending)


def connect() -> None:
    """Subscribe the work queue's handlers (called from `orderdesk.wiring`)."""
    events.subscribe(OrderChanged, on_order_changed)
    events.subscribe(OrdersCaptured, on_orders_captured)
    events.subscribe(WorkReactionsQueued, on_reactions_queued)
