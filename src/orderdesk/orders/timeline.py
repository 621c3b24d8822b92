"""The order timeline: who did what, through which channel, before → after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core import events
from orderdesk.orders.models import Order, OrderEvent


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
