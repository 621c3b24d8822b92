"""The order timeline: who did what, through which channel, before → after."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core import events
from orderdesk.orders.models import Order, OrderEvent, Priority
from orderdesk.orders.states import OrderStatus


@dataclass(frozen=True, slots=True)
class OrderChanged:
    """Recorded with every timeline event; other features react to it in the same transaction."""

    order: Order
    event: OrderEvent
    actor: Actor
    # The order as it stood right after this event (handlers run later, at commit).
    snapshot: dict[str, Any]


def order_snapshot(order: Order) -> dict[str, Any]:
    """What the outside world is told about an order: no internal notes, no checks."""
    return {
        "id": str(order.id),
        "number": order.number,
        "external_ref": order.external_ref,
        "status": order.status.value,
        "payment_status": order.payment_status.value,
        "priority": order.priority.value,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "customer": {"name": order.customer_name, "email": order.customer_email},
    }


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """One timeline entry of a captured order, as its reactions see it."""

    seq: int
    kind: str
    summary: str
    changes: dict[str, Any]
    channel: str
    actor_kind: str
    # The order as it stood right after this event (what `order_snapshot` gives).
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CapturedOrder:
    """A new order of an `OrdersCaptured` batch: the values reactions read, and its timeline."""

    tenant_id: UUID
    id: UUID
    number: int
    status: OrderStatus  # after its last event
    priority: Priority
    currency: str
    total_minor: int
    events: tuple[CapturedEvent, ...]


@dataclass(frozen=True, slots=True)
class OrdersCaptured:
    """Recorded once for a batch of new orders written set-based (a CSV import's batch).

    It stands for the `OrderChanged` of every event in `orders`: no `OrderChanged` is
    recorded for them, so every feature that reacts to `OrderChanged` subscribes to this
    too (a test holds the wiring to that) and handles the whole batch at once.
    """

    tenant_id: UUID
    actor: Actor
    orders: tuple[CapturedOrder, ...]


# Orders whose timeline began through `append_event` in this transaction. Not the orders of
# an `OrdersCaptured` batch: their reactions wrote their rows set-based, and a later event
# of theirs in the same transaction is numbered after those rows, as for any other order.
_CREATED_KEY = "orderdesk.orders_created"


def created_in_transaction(session: AsyncSession, order_id: object) -> bool:
    """Whether the order's timeline began in this session's transaction: nothing about
    it (outbox rows, work items) can exist yet outside what this transaction wrote."""
    return order_id in session.info.get(_CREATED_KEY, ())


CHANNEL_OF_ACTOR = {
    ActorKind.STAFF: "console",
    ActorKind.CLIENT: "portal",
    ActorKind.API_KEY: "api",
    ActorKind.SYSTEM: "system",
    ActorKind.CUSTOMER: "tracking",
}


def append_event(
    session: AsyncSession,
    order: Order,
    actor: Actor,
    kind: str,
    summary: str,
    changes: dict[str, Any] | None = None,
    *,
    channel: str | None = None,
) -> OrderEvent:
    """Add the next event of `order`'s timeline to the session (the order row must be locked)."""
    order.last_event_seq += 1
    if order.last_event_seq == 1:
        session.info.setdefault(_CREATED_KEY, set()).add(order.id)
    event = OrderEvent(
        tenant_id=order.tenant_id,
        order_id=order.id,
        seq=order.last_event_seq,
        kind=kind,
        actor_kind=actor.kind.value,
        actor_id=str(actor.id),
        actor_name=actor.display_name,
        channel=channel or CHANNEL_OF_ACTOR[actor.kind],
        summary=summary,
        changes=changes or {},
    )
    session.add(event)
    events.record(
        session, OrderChanged(order=order, event=event, actor=actor, snapshot=order_snapshot(order))
    )
    return event


async def order_changes_of(
    session: AsyncSession, captured: OrdersCaptured, kinds: Collection[str]
) -> list[OrderChanged]:
    """The `OrderChanged` that each event of `kinds` in the batch stands for, in timeline order.

    For reactions that work on one order at a time (allocation, invoicing): the orders
    concerned are loaded in one query, and nothing is read when no event matches.
    """
    wanted = [(order, event) for order in captured.orders for event in order.events if event.kind in kinds]
    if not wanted:
        return []
    loaded = await session.scalars(
        select(Order).where(Order.tenant_id == captured.tenant_id, Order.id.in_({o.id for o, _ in wanted}))
    )
    by_id = {order.id: order for order in loaded}
    actor = captured.actor
    return [
        OrderChanged(
            order=by_id[order.id],
            event=OrderEvent(
                tenant_id=captured.tenant_id,
                order_id=order.id,
                seq=event.seq,
                kind=event.kind,
                actor_kind=event.actor_kind,
                actor_id=str(actor.id),
                actor_name=actor.display_name,
                channel=event.channel,
                summary=event.summary,
                changes=event.changes,
            ),
            actor=actor,
            snapshot=event.snapshot,
        )
        for order, event in wanted
    ]
