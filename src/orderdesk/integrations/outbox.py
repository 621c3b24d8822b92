"""Writes outbox events in the transaction of the change they describe.

Payloads are versioned JSON (see docs/webhooks.md):

    {"id": "<event id>", "type": "order.verified", "version": 1, "timestamp": "...",
     "tenant_id": "...", "data": {"order": {...snapshot...}, "change": {...}, "sequence": 3}}

`sequence` counts the order's events 1, 2, 3… so a receiver can tell a gap from a
late delivery.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import DateTime, String, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core.db import session_driver
from orderdesk.core.ids import new_id
from orderdesk.integrations.models import OutboxEvent
from orderdesk.orders.models import Order
from orderdesk.orders.timeline import OrderChanged, OrdersCaptured, created_in_transaction, order_snapshot

PAYLOAD_VERSION = 1

# Timeline kinds that client systems hear about, and the event type they hear.
EVENT_TYPE_OF_TIMELINE_KIND = {
    "created": "order.created",
    "verification_needed": "order.verification_needed",
    "verified": "order.verified",
    "verify": "order.verified",
    "allocate": "order.allocated",
    "backorder": "order.backordered",
    "release_stock": "order.stock_released",
    "start_picking": "order.picking",
    "pack": "order.packed",
    "ship_partially": "order.partially_shipped",
    "ship": "order.shipped",
    "deliver": "order.delivered",
    "close": "order.closed",
    "cancel": "order.cancelled",
    "hold_placed": "order.on_hold",
    "hold_released": "order.released",
    "payment_updated": "order.payment_updated",
    "request_return": "return.requested",
    "receive_return": "return.received",
    "refund": "return.refunded",
    "reject_return": "return.rejected",
}
EVENT_TYPES = frozenset(EVENT_TYPE_OF_TIMELINE_KIND.values()) | {
    "shipment.created",
    "shipment.updated",
    "endpoint.test",
}


# An order's next sequence number is taken in the INSERT itself: one round trip, and
# every later event of the same transaction sees the ones before it. The caller holds
# the order's row lock, so two transactions never take the same number (the unique
# index on (tenant_id, order_id, order_seq) would refuse it anyway).
_INSERT_ORDER_EVENT = text("""
INSERT INTO outbox_events (tenant_id, id, event_type, order_id, order_seq, payload, created_at)
SELECT :tenant_id, :id, :event_type, :order_id, next.seq,
       jsonb_set(CAST(:payload AS jsonb), '{data,sequence}', to_jsonb(next.seq)), :created_at
FROM (SELECT coalesce(max(order_seq), 0) + 1 AS seq FROM outbox_events
      WHERE tenant_id = :tenant_id AND order_id = :order_id) AS next
RETURNING order_seq
""").bindparams(
    bindparam("tenant_id", type_=Uuid),
    bindparam("id", type_=Uuid),
    bindparam("event_type", type_=String),
    bindparam("order_id", type_=Uuid),
    bindparam("payload", type_=String),
    bindparam("created_at", type_=DateTime(timezone=True)),
)


def _payload(event_id: UUID, event_type: str, timestamp: str, tenant_id: str, data: dict[str, Any]) -> dict:
    return {
        "id": str(event_id),
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "timestamp": timestamp,
        "tenant_id": tenant_id,
        "data": data,
    }


# Last sequence number given to each order created in the transaction (see write_event).
_NEW_ORDER_SEQ_KEY = "orderdesk.outbox_new_order_seq"


async def write_event(
    session: AsyncSession,
    tenant_id: UUID,
    event_type: str,
    data: dict[str, Any],
    *,
    order: Order | None = None,
    snapshot: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
) -> OutboxEvent:
    """Add one outbox event to the current transaction. Other features call this for
    their own event types (shipment.created, …); order changes arrive via `on_order_changed`.

    An order's events are written at once, numbered in the statement; other events are
    added to the session."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    event_id = new_id()
    occurred_at = occurred_at or dt.datetime.now(dt.UTC)
    payload = _payload(
        event_id,
        event_type,
        occurred_at.isoformat(),
        str(tenant_id),
        {**data, **({"order": snapshot or order_snapshot(order), "sequence": None} if order else {})},
    )
    event = OutboxEvent(
        tenant_id=tenant_id,
        id=event_id,
        event_type=event_type,
        order_id=order.id if order else None,
        payload=payload,
        created_at=occurred_at,
    )
    if order is None:
        session.add(event)
        return event
    if created_in_transaction(session, order.id):
        # A new order's events are numbered here, from 1, and written with the session's
        # next flush (one statement for all of them): nothing can be before them.
        numbered = session.info.setdefault(_NEW_ORDER_SEQ_KEY, {})
        event.order_seq = payload["data"]["sequence"] = numbered[order.id] = numbered.get(order.id, 0) + 1
        session.add(event)
        return event
    event.order_seq = await session.scalar(
        _INSERT_ORDER_EVENT,
        {
            "tenant_id": tenant_id,
            "id": event_id,
            "event_type": event_type,
            "order_id": order.id,
            "payload": json.dumps(payload, default=str),
            "created_at": occurred_at,
        },
    )
    payload["data"]["sequence"] = event.order_seq
    return event


async def on_order_changed(session: AsyncSession, changed: OrderChanged) -> None:
    """Domain-event handler: every externally visible order change becomes an outbox event."""
    event_type = EVENT_TYPE_OF_TIMELINE_KIND.get(changed.event.kind)
    if event_type is None:
        return
    await write_event(
        session,
        changed.order.tenant_id,
        event_type,
        _change_data(changed.event),
        order=changed.order,
        snapshot=changed.snapshot,
    )


# A batch of new orders: every event of every order in one statement. A new order has no
# outbox event yet, so its sequence is counted here from 1, as `_INSERT_ORDER_EVENT` would.
_INSERT_CAPTURED_EVENTS = (
    "INSERT INTO outbox_events (tenant_id, id, event_type, order_id, order_seq, payload, created_at)"
    " SELECT $1, e.id, e.event_type, e.order_id, e.order_seq, e.payload::jsonb, $2"
    " FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::integer[], $7::text[])"
    " AS e(id, event_type, order_id, order_seq, payload)"
)


async def on_orders_captured(session: AsyncSession, captured: OrdersCaptured) -> None:
    """Domain-event handler: the outbox events of a batch of new orders, as `on_order_changed`
    writes them one by one (same types, payloads and sequence numbers)."""
    occurred_at = dt.datetime.now(dt.UTC)
    timestamp, tenant_id = occurred_at.isoformat(), str(captured.tenant_id)
    ids, types, order_ids, sequences, payloads = [], [], [], [], []
    for order in captured.orders:
        sequence = 0
        for event in order.events:
            event_type = EVENT_TYPE_OF_TIMELINE_KIND.get(event.kind)
            if event_type is None:
                continue
            sequence += 1
            event_id = new_id()
            data = {**_change_data(event), "order": event.snapshot, "sequence": sequence}
            payload = _payload(event_id, event_type, timestamp, tenant_id, data)
            ids.append(event_id)
            types.append(event_type)
            order_ids.append(order.id)
            sequences.append(sequence)
            payloads.append(json.dumps(payload, default=str))
    if ids:
        driver = await session_driver(session)
        arrays = (ids, types, order_ids, sequences, payloads)
        await driver.execute(_INSERT_CAPTURED_EVENTS, captured.tenant_id, occurred_at, *arrays)


@dataclass(frozen=True, slots=True)
class OrderOutboxRow:
    """The outbox row `on_order_changed` would write for one timeline event, for a
    statement that writes it itself. `payload` is JSON whose `data.sequence` is null:
    the statement numbers the row after the order's last event, as `write_event` does."""

    id: UUID
    event_type: str
    payload: str
    created_at: dt.datetime


def order_outbox_row(
    tenant_id: UUID, event: Any, snapshot: dict[str, Any], *, occurred_at: dt.datetime | None = None
) -> OrderOutboxRow | None:
    """What client systems hear about timeline `event` (kind, summary, changes, channel,
    actor_kind) of an order as `snapshot` shows it; None for kinds they do not hear about.

    For write paths that record the timeline without the ORM (allocation): the same
    payload, byte for byte apart from id and time, as the domain-event handler writes.
    """
    event_type = EVENT_TYPE_OF_TIMELINE_KIND.get(event.kind)
    if event_type is None:
        return None
    event_id = new_id()
    occurred_at = occurred_at or dt.datetime.now(dt.UTC)
    data = {**_change_data(event), "order": snapshot, "sequence": None}
    payload = _payload(event_id, event_type, occurred_at.isoformat(), str(tenant_id), data)
    return OrderOutboxRow(event_id, event_type, json.dumps(payload, default=str), occurred_at)


def _change_data(event: Any) -> dict[str, Any]:
    return {
        "change": {
            "summary": event.summary,
            "changes": event.changes,
            "channel": event.channel,
            "actor_kind": event.actor_kind,
        }
    }
