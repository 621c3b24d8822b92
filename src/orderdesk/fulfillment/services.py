"""Shipments and tracking: goods leave a warehouse, carriers report, the order follows.

Every function takes the acting `Actor`, works in one transaction scoped to the
actor's tenants, locks the order row before changing anything of it (so two
reports about one order are applied one after the other) and raises domain
errors only: NotFound (also for other tenants' objects), ValidationFailed,
Conflict, PermissionDenied, InvalidTransition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core import events
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.fulfillment.models import Attention, Shipment, ShipmentLine, TrackingEvent, TrackingStatus
from orderdesk.fulfillment.policy import policy_of
from orderdesk.fulfillment.schemas import (
    MAX_ESTIMATE_DAYS,
    ShipmentIn,
    ShipmentLineView,
    ShipmentPatch,
    ShipmentView,
    TrackingEventIn,
    TrackingEventView,
    TrackingResult,
)
from orderdesk.inventory import ledger
from orderdesk.inventory.allocation import system_actor_for
from orderdesk.inventory.models import Allocation, Warehouse
from orderdesk.orders import services as orders
from orderdesk.orders.models import Order, OrderLine
from orderdesk.orders.states import Action, OrderStatus
from orderdesk.orders.timeline import append_event
from orderdesk.tenants.models import Tenant

SHIPPABLE = frozenset(
    {
        OrderStatus.ALLOCATED,
        OrderStatus.BACKORDERED,
        OrderStatus.PICKING,
        OrderStatus.PACKED,
        OrderStatus.PARTIALLY_SHIPPED,
    }
)
# A full shipment from an earlier step implies the steps in between.
STEPS_TO_SHIPPED = {
    OrderStatus.ALLOCATED: (Action.START_PICKING, Action.PACK, Action.SHIP),
    OrderStatus.PICKING: (Action.PACK, Action.SHIP),
    OrderStatus.PACKED: (Action.SHIP,),
    OrderStatus.PARTIALLY_SHIPPED: (Action.SHIP,),
}
PROBLEMS = {
    TrackingStatus.FAILED_ATTEMPT: Attention.FAILED_ATTEMPT,
    TrackingStatus.EXCEPTION: Attention.EXCEPTION,
    TrackingStatus.RETURNED_TO_SENDER: Attention.RETURNED_TO_SENDER,
}


@dataclass(frozen=True, slots=True)
class ShipmentNeedsAttention:
    """Recorded when a shipment gets stuck, fails delivery or hits an exception.

    The work queue turns it into a work item; the order shows it meanwhile.
    """

    tenant_id: UUID
    order_id: UUID
    shipment_id: UUID
    attention: Attention
    detail: str


def _require_operator(actor: Actor) -> None:
    if actor.kind is ActorKind.CLIENT:
        raise PermissionDenied(
            "Shipments and tracking come from the warehouse, the carrier or the operations team"
        )


def _touch(order: Order) -> None:
    order.version += 1
    order.updated_at = dt.datetime.now(dt.UTC)


async def _find_shipment(session: AsyncSession, actor: Actor, shipment_id: UUID) -> Shipment:
    shipment = await session.scalar(
        select(Shipment).where(Shipment.id == shipment_id, Shipment.tenant_id.in_(actor.tenant_ids))
    )
    if shipment is None:
        raise NotFound("Shipment")
    return shipment


async def _lock_order_of(session: AsyncSession, shipment: Shipment) -> Order:
    return await session.scalar(
        select(Order)
        .where(Order.tenant_id == shipment.tenant_id, Order.id == shipment.order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def shipment_view(
    session: AsyncSession, shipment: Shipment, *, with_events: bool = False
) -> ShipmentView:
    code = await session.scalar(
        select(Warehouse.code).where(
            Warehouse.tenant_id == shipment.tenant_id, Warehouse.id == shipment.warehouse_id
        )
    )
    lines = await session.scalars(
        select(ShipmentLine)
        .where(ShipmentLine.tenant_id == shipment.tenant_id, ShipmentLine.shipment_id == shipment.id)
        .order_by(ShipmentLine.line_no)
    )
    tracking = []
    if with_events:
        tracking = [
            TrackingEventView.model_validate(e)
            for e in await session.scalars(
                select(TrackingEvent)
                .where(
                    TrackingEvent.tenant_id == shipment.tenant_id, TrackingEvent.shipment_id == shipment.id
                )
                .order_by(TrackingEvent.occurred_at, TrackingEvent.received_at)
            )
        ]
    return ShipmentView(
        id=shipment.id,
        order_id=shipment.order_id,
        number=shipment.number,
        warehouse_id=shipment.warehouse_id,
        warehouse_code=code,
        external_ref=shipment.external_ref,
        carrier=shipment.carrier,
        service=shipment.service,
        tracking_number=shipment.tracking_number,
        tracking_url=shipment.tracking_url,
        status=shipment.status.value,
        attention=shipment.attention.value if shipment.attention else None,
        attention_since=shipment.attention_since,
        attention_detail=shipment.attention_detail,
        shipped_at=shipment.shipped_at,
        last_event_at=shipment.last_event_at,
        delivered_at=shipment.delivered_at,
        estimated_delivery_at=shipment.estimated_delivery_at,
        lines=[ShipmentLineView.model_validate(line) for line in lines],
        events=tracking,
    )


# ---------------------------------------------------------------- shipments


@dataclass(frozen=True, slots=True)
class ShipmentResult:
    shipment: ShipmentView
    created: bool  # False: a shipment with this external_ref already existed


async def create_shipment(db: Database, actor: Actor, order_id: UUID, data: ShipmentIn) -> ShipmentResult:
    """Record goods leaving one warehouse; their reservations are consumed.

    The order becomes partially shipped, or shipped once every unit has left
    (a full shipment from an earlier step implies picking and packing). A repeat
    with the same `external_ref` returns the first shipment.

    Raises NotFound (order, warehouse), PermissionDenied, ValidationFailed (unknown
    lines, more units than are reserved there), InvalidTransition (status or holds).
    """
    _require_operator(actor)
    check_text = [
        ("carrier", data.carrier),
        ("service", data.service or ""),
        ("tracking_number", data.tracking_number or ""),
    ]
    errors = [
        FieldError(f, "must not contain control characters") for f, v in check_text if not v.isprintable()
    ]
    if data.tracking_url and not data.tracking_url.startswith(("https://", "http://")):
        errors.append(FieldError("tracking_url", "must be an http(s) URL"))
    seen: set[int] = set()
    for i, line in enumerate(data.lines):
        if line.line_no in seen:
            errors.append(FieldError(f"lines.{i}.line_no", f"line {line.line_no} appears twice"))
        seen.add(line.line_no)
    if errors:
        raise ValidationFailed(errors)
    async with db.transaction(actor.scope) as session:
        order = await orders.lock_order(session, actor, order_id)
        if data.external_ref:
            existing = await session.scalar(
                select(Shipment).where(
                    Shipment.tenant_id == order.tenant_id, Shipment.external_ref == data.external_ref
                )
            )
            if existing is not None:
                if existing.order_id != order.id:
                    raise Conflict(f"Shipment {data.external_ref!r} belongs to another order")
                return ShipmentResult(await shipment_view(session, existing), created=False)
        warehouse = await session.scalar(
            select(Warehouse).where(Warehouse.tenant_id == order.tenant_id, Warehouse.id == data.warehouse_id)
        )
        if warehouse is None:
            raise NotFound("Warehouse")
        if order.status not in SHIPPABLE:
            allowed = tuple(a.value for a in orders.states.allowed_actions(order.status))
            raise orders.InvalidTransition(
                order.status.value,
                Action.SHIP.value,
                allowed,
                detail=f"Cannot ship an order that is {order.status.value.replace('_', ' ')}",
            )
        order_lines = {
            line.line_no: line
            for line in await session.scalars(
                select(OrderLine).where(
                    OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id
                )
            )
        }
        allocations = {
            a.line_no: a
            for a in await session.scalars(
                select(Allocation).where(
                    Allocation.tenant_id == order.tenant_id,
                    Allocation.order_id == order.id,
                    Allocation.warehouse_id == warehouse.id,
                )
            )
        }
        for i, line in enumerate(data.lines):
            if line.line_no not in order_lines:
                errors.append(FieldError(f"lines.{i}.line_no", f"the order has no line {line.line_no}"))
                continue
            reserved = allocations[line.line_no].reserved_qty if line.line_no in allocations else 0
            if line.quantity > reserved:
                errors.append(
                    FieldError(
                        f"lines.{i}.quantity",
                        f"only {reserved} of line {line.line_no} ({order_lines[line.line_no].sku}) "
                        f"are reserved at {warehouse.code}",
                    )
                )
        if errors:
            raise ValidationFailed(errors)
        number = 1 + (
            await session.scalar(
                select(func.coalesce(func.max(Shipment.number), 0)).where(
                    Shipment.tenant_id == order.tenant_id, Shipment.order_id == order.id
                )
            )
        )
        now = dt.datetime.now(dt.UTC)
        shipment = Shipment(
            tenant_id=order.tenant_id,
            id=new_id(),
            order_id=order.id,
            number=number,
            warehouse_id=warehouse.id,
            external_ref=data.external_ref or None,
            carrier=data.carrier,
            service=data.service,
            tracking_number=data.tracking_number,
            tracking_url=data.tracking_url,
            status=TrackingStatus.SHIPPED,
            shipped_at=data.shipped_at or now,
            last_event_at=data.shipped_at or now,
            created_at=now,
            updated_at=now,
        )
        session.add(shipment)
        await session.flush()
        per_sku: dict[str, int] = defaultdict(int)
        for line in data.lines:
            sku = order_lines[line.line_no].sku
            session.add(
                ShipmentLine(
                    tenant_id=order.tenant_id,
                    shipment_id=shipment.id,
                    line_no=line.line_no,
                    order_id=order.id,
                    sku=sku,
                    quantity=line.quantity,
                )
            )
            allocation = allocations[line.line_no]
            allocation.reserved_qty -= line.quantity
            allocation.shipped_qty += line.quantity
            per_sku[sku] += line.quantity
        for sku in sorted(per_sku):
            await ledger.consume(
                session,
                actor,
                order.tenant_id,
                warehouse.id,
                sku,
                per_sku[sku],
                order_id=order.id,
                reason=f"shipment {number} of order #{order.number}",
            )
        await session.flush()
        shipped = dict(
            (
                await session.execute(
                    select(Allocation.line_no, func.sum(Allocation.shipped_qty))
                    .where(Allocation.tenant_id == order.tenant_id, Allocation.order_id == order.id)
                    .group_by(Allocation.line_no)
                )
            ).all()
        )
        complete = all(shipped.get(n, 0) >= line.quantity for n, line in order_lines.items())
        contents = ", ".join(f"{per_sku[s]} × {s}" for s in sorted(per_sku))
        via = data.carrier + (f" {data.service}" if data.service else "")
        tracking = f", tracking {data.tracking_number}" if data.tracking_number else ""
        summary = f"Shipment {number} left {warehouse.code} via {via}{tracking}: {contents}"
        changes = {
            "shipment": {
                "id": str(shipment.id),
                "number": number,
                "warehouse": warehouse.code,
                "carrier": data.carrier,
                "tracking_number": data.tracking_number,
            }
        }
        if complete:
            steps = STEPS_TO_SHIPPED[order.status]
            for step in steps[:-1]:
                await orders.apply_action(
                    session,
                    actor,
                    order,
                    step,
                    summary=f"{orders.EVENT_SUMMARIES[step]} (reported with shipment {number})",
                )
            await orders.apply_action(session, actor, order, Action.SHIP, summary=summary, changes=changes)
        elif order.status is OrderStatus.PARTIALLY_SHIPPED:
            append_event(session, order, actor, "shipment_created", summary, changes)
            _touch(order)
        else:
            await orders.apply_action(
                session, actor, order, Action.SHIP_PARTIALLY, summary=summary, changes=changes
            )
        await session.flush()
        return ShipmentResult(await shipment_view(session, shipment), created=True)


async def update_shipment(
    db: Database, actor: Actor, shipment_id: UUID, patch: ShipmentPatch
) -> ShipmentView:
    """Correct carrier, service, tracking number or URL; on the timeline.
    Raises NotFound, PermissionDenied, ValidationFailed."""
    _require_operator(actor)
    values = patch.model_dump(exclude_unset=True)
    if values.get("tracking_url") and not values["tracking_url"].startswith(("https://", "http://")):
        raise ValidationFailed([FieldError("tracking_url", "must be an http(s) URL")])
    if not values:
        raise ValidationFailed([FieldError("body", "give at least one field to change")])
    async with db.transaction(actor.scope) as session:
        shipment = await _find_shipment(session, actor, shipment_id)
        order = await _lock_order_of(session, shipment)
        changes = {k: [getattr(shipment, k), v] for k, v in values.items() if getattr(shipment, k) != v}
        for name, value in values.items():
            setattr(shipment, name, value)
        if changes:
            shipment.updated_at = dt.datetime.now(dt.UTC)
            append_event(
                session,
                order,
                actor,
                "shipment_updated",
                f"Shipment {shipment.number} updated: {', '.join(sorted(changes))}",
                {"shipment": str(shipment.id), **changes},
            )
            _touch(order)
        await session.flush()
        return await shipment_view(session, shipment)


async def list_shipments(db: Database, actor: Actor, order_id: UUID) -> list[ShipmentView]:
    """The order's shipments with their tracking, first first. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        order = await session.scalar(
            select(Order).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
        )
        if order is None:
            raise NotFound("Order")
        rows = await session.scalars(
            select(Shipment)
            .where(Shipment.tenant_id == order.tenant_id, Shipment.order_id == order.id)
            .order_by(Shipment.number)
        )
        return [await shipment_view(session, s, with_events=True) for s in rows]


async def get_shipment(db: Database, actor: Actor, shipment_id: UUID) -> ShipmentView:
    """Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        return await shipment_view(
            session, await _find_shipment(session, actor, shipment_id), with_events=True
        )


# ---------------------------------------------------------------- tracking


def _event_hash(data: TrackingEventIn) -> str:
    content = data.model_dump(mode="json")
    # Left out when absent, so that a retry of an event recorded before estimates existed
    # hashes as it did then and is still recognised as the same event.
    if content.get("estimated_delivery") is None:
        content.pop("estimated_delivery", None)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _flag(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    shipment: Shipment,
    attention: Attention,
    detail: str,
    now: dt.datetime,
) -> None:
    shipment.attention = attention
    shipment.attention_since = now
    shipment.attention_detail = detail[:500]
    append_event(
        session,
        order,
        actor,
        "shipment_exception",
        f"Shipment {shipment.number} needs attention ({attention.value.replace('_', ' ')}): {detail}",
        {"shipment": str(shipment.id), "attention": [None, attention.value]},
    )
    _touch(order)
    events.record(session, ShipmentNeedsAttention(order.tenant_id, order.id, shipment.id, attention, detail))


async def record_tracking_event(
    db: Database, actor: Actor, shipment_id: UUID, data: TrackingEventIn
) -> TrackingResult:
    """Record one tracking event; the shipment and then the order follow it.

    Idempotent by `event_id` per shipment: a retry is recorded once
    (`duplicate`), the same id with other content raises Conflict. Events may
    arrive out of order: the newest by `occurred_at` sets the status, and a
    delivered shipment stays delivered. Failed attempts, exceptions and returns
    to sender flag the shipment for agents; the order is delivered when every
    shipment is and nothing is left to ship.

    A carrier's `estimated_delivery` is kept with the event and, when no newer event
    gave one, on the shipment (a date means the end of that day in the tenant's zone).

    Raises NotFound (unknown or foreign shipment), PermissionDenied,
    ValidationFailed (a time in the future; an estimate before the shipment left or
    more than MAX_ESTIMATE_DAYS after), Conflict.
    """
    _require_operator(actor)
    now = dt.datetime.now(dt.UTC)
    occurred_at = data.occurred_at if data.occurred_at.tzinfo else data.occurred_at.replace(tzinfo=dt.UTC)
    if occurred_at > now + dt.timedelta(minutes=10):
        raise ValidationFailed([FieldError("occurred_at", "is in the future")])
    fingerprint = _event_hash(data)
    async with db.transaction(actor.scope) as session:
        shipment = await _find_shipment(session, actor, shipment_id)
        order = await _lock_order_of(session, shipment)
        await session.refresh(shipment)
        estimate = await _estimated_delivery_at(session, shipment, data)
        inserted = await session.scalar(
            pg_insert(TrackingEvent)
            .values(
                tenant_id=shipment.tenant_id,
                id=new_id(),
                shipment_id=shipment.id,
                external_event_id=data.event_id,
                request_hash=fingerprint,
                status=data.status,
                raw_status=data.raw_status,
                location=data.location,
                description=data.description,
                occurred_at=occurred_at,
                estimated_delivery_at=estimate,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "shipment_id", "external_event_id"])
            .returning(TrackingEvent.id)
        )
        if inserted is None:
            stored = await session.scalar(
                select(TrackingEvent.request_hash).where(
                    TrackingEvent.tenant_id == shipment.tenant_id,
                    TrackingEvent.shipment_id == shipment.id,
                    TrackingEvent.external_event_id == data.event_id,
                )
            )
            if stored != fingerprint:
                raise Conflict(
                    f"Tracking event {data.event_id!r} was already recorded with different content"
                )
            return TrackingResult(
                duplicate=True, shipment=await shipment_view(session, shipment, with_events=True)
            )
        newest_before = await session.scalar(
            select(func.max(TrackingEvent.occurred_at)).where(
                TrackingEvent.tenant_id == shipment.tenant_id,
                TrackingEvent.shipment_id == shipment.id,
                TrackingEvent.id != inserted,
            )
        )
        if estimate is not None:
            await _keep_latest_estimate(session, shipment, inserted, estimate, occurred_at, now)
        await _apply_tracking(session, actor, order, shipment, data, occurred_at, now, newest_before)
        await session.flush()
        return TrackingResult(
            duplicate=False, shipment=await shipment_view(session, shipment, with_events=True)
        )


async def _estimated_delivery_at(
    session: AsyncSession, shipment: Shipment, data: TrackingEventIn
) -> dt.datetime | None:
    """The event's estimate as a moment; raises ValidationFailed when it cannot be right."""
    raw = data.estimated_delivery
    if raw is None:
        return None
    if isinstance(raw, dt.datetime):
        estimate = raw if raw.tzinfo else raw.replace(tzinfo=dt.UTC)
    else:
        # "Delivery on the 5th" holds until the 5th is over where the customer is.
        zone = ZoneInfo(await session.scalar(select(Tenant.time_zone).where(Tenant.id == shipment.tenant_id)))
        estimate = dt.datetime.combine(raw + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    if estimate < shipment.shipped_at:
        raise ValidationFailed(
            [
                FieldError(
                    "estimated_delivery",
                    f"is before the shipment left ({shipment.shipped_at.isoformat(timespec='minutes')})",
                )
            ]
        )
    if estimate > shipment.shipped_at + dt.timedelta(days=MAX_ESTIMATE_DAYS):
        raise ValidationFailed(
            [
                FieldError(
                    "estimated_delivery", f"is more than {MAX_ESTIMATE_DAYS} days after the shipment left"
                )
            ]
        )
    return estimate


async def _keep_latest_estimate(
    session: AsyncSession,
    shipment: Shipment,
    event_id: UUID,
    estimate: dt.datetime,
    occurred_at: dt.datetime,
    now: dt.datetime,
) -> None:
    # Updates arrive out of order: an older scan's estimate must not replace a newer one's.
    newest_estimate_before = await session.scalar(
        select(func.max(TrackingEvent.occurred_at)).where(
            TrackingEvent.tenant_id == shipment.tenant_id,
            TrackingEvent.shipment_id == shipment.id,
            TrackingEvent.id != event_id,
            TrackingEvent.estimated_delivery_at.is_not(None),
        )
    )
    if newest_estimate_before is None or occurred_at >= newest_estimate_before:
        shipment.estimated_delivery_at = estimate
        shipment.updated_at = now


async def _apply_tracking(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    shipment: Shipment,
    data: TrackingEventIn,
    occurred_at: dt.datetime,
    now: dt.datetime,
    newest_before: dt.datetime | None,
) -> None:
    if shipment.status is TrackingStatus.DELIVERED:
        return  # delivery closed the shipment; later scans are kept but change nothing
    if (
        newest_before is not None
        and occurred_at < newest_before
        and data.status is not TrackingStatus.DELIVERED
    ):
        return  # an older scan arriving late: kept, but the newer one stands
    before = shipment.status
    shipment.status = data.status
    shipment.last_event_at = max(occurred_at, shipment.last_event_at or occurred_at)
    shipment.updated_at = now
    where = f" at {data.location}" if data.location else ""
    said = f" ({data.raw_status})" if data.raw_status else ""
    if data.status is TrackingStatus.DELIVERED:
        shipment.delivered_at = occurred_at
        shipment.attention = None
        shipment.attention_since = None
        shipment.attention_detail = None
        append_event(
            session,
            order,
            actor,
            "shipment_delivered",
            f"Shipment {shipment.number} delivered{where}{said}",
            {"shipment": str(shipment.id), "tracking": [before.value, data.status.value]},
        )
        _touch(order)
        await _deliver_order_if_done(session, actor, order)
        return
    problem = PROBLEMS.get(data.status)
    if problem is not None:
        _flag(
            session,
            actor,
            order,
            shipment,
            problem,
            f"{data.status.value.replace('_', ' ')}{where}{said}",
            now,
        )
        return
    if before is not data.status:
        cleared = shipment.attention is not None
        shipment.attention = None
        shipment.attention_since = None
        shipment.attention_detail = None
        append_event(
            session,
            order,
            actor,
            "tracking_update",
            f"Shipment {shipment.number}: {data.status.value.replace('_', ' ')}{where}{said}"
            + ("; back on track" if cleared else ""),
            {"shipment": str(shipment.id), "tracking": [before.value, data.status.value]},
        )
        _touch(order)


async def _deliver_order_if_done(session: AsyncSession, actor: Actor, order: Order) -> None:
    if order.status is not OrderStatus.SHIPPED:
        return  # units still to ship: the order is delivered after its last shipment is
    await session.flush()  # this shipment's delivery must count (the session does not autoflush)
    waiting = await session.scalar(
        select(func.count()).where(
            Shipment.tenant_id == order.tenant_id,
            Shipment.order_id == order.id,
            Shipment.delivered_at.is_(None),
        )
    )
    if waiting:
        return
    await orders.apply_action(
        session, actor, order, Action.DELIVER, summary="Delivered: every shipment arrived"
    )
    policy = await policy_of(session, order.tenant_id)
    if policy.return_window_days == 0:
        await orders.apply_action(
            session,
            system_actor_for(order.tenant_id),
            order,
            Action.CLOSE,
            summary="Closed: delivered, and the tenant takes no returns",
            channel="system",
        )


async def flag_stuck_shipments(db: Database, actor: Actor, now: dt.datetime | None = None) -> int:
    """Flag shipments without tracking news for longer than their tenant allows; returns how many.

    Idempotent: a flagged shipment is not flagged again until it moves.
    """
    now = now or dt.datetime.now(dt.UTC)
    flagged = 0
    for tenant_id in sorted(actor.tenant_ids, key=str):
        async with db.transaction(actor.scope) as session:
            policy = await policy_of(session, tenant_id)
            cutoff = now - dt.timedelta(hours=policy.stuck_after_hours)
            stale = (
                await session.scalars(
                    select(Shipment)
                    .where(
                        Shipment.tenant_id == tenant_id,
                        Shipment.delivered_at.is_(None),
                        Shipment.attention.is_(None),
                        Shipment.last_event_at < cutoff,
                    )
                    .order_by(Shipment.last_event_at)
                    .limit(500)
                )
            ).all()
            for shipment in stale:
                order = await session.scalar(
                    select(Order)
                    .where(Order.tenant_id == tenant_id, Order.id == shipment.order_id)
                    .with_for_update(skip_locked=True)
                )
                if order is None:
                    continue
                hours = int((now - shipment.last_event_at).total_seconds() // 3600)
                _flag(
                    session,
                    system_actor_for(tenant_id),
                    order,
                    shipment,
                    Attention.STUCK,
                    f"no tracking news for {hours} h (allowed: {policy.stuck_after_hours} h)",
                    now,
                )
                flagged += 1
            await session.flush()
    return flagged


async def clear_attention(db: Database, actor: Actor, shipment_id: UUID, note: str | None) -> ShipmentView:
    """An agent has dealt with a flagged shipment. Raises NotFound, PermissionDenied, Conflict."""
    if actor.kind not in (ActorKind.STAFF, ActorKind.SYSTEM):
        raise PermissionDenied("Only operations staff resolve shipment exceptions")
    async with db.transaction(actor.scope) as session:
        shipment = await _find_shipment(session, actor, shipment_id)
        order = await _lock_order_of(session, shipment)
        if shipment.attention is None:
            raise Conflict("The shipment needs no attention")
        previous = shipment.attention.value
        shipment.attention = None
        shipment.attention_since = None
        shipment.attention_detail = None
        append_event(
            session,
            order,
            actor,
            "shipment_attention_cleared",
            f"Shipment {shipment.number} exception resolved" + (f": {note}" if note else ""),
            {"shipment": str(shipment.id), "attention": [previous, None]},
        )
        _touch(order)
        await session.flush()
        return await shipment_view(session, shipment)


async def order_delivered_at(session: AsyncSession, order: Order) -> dt.datetime | None:
    return await session.scalar(
        select(func.max(Shipment.delivered_at)).where(
            Shipment.tenant_id == order.tenant_id, Shipment.order_id == order.id
        )
    )


async def shipped_quantities(session: AsyncSession, order: Order) -> dict[int, int]:
    rows = await session.execute(
        select(ShipmentLine.line_no, func.sum(ShipmentLine.quantity))
        .where(ShipmentLine.tenant_id == order.tenant_id, ShipmentLine.order_id == order.id)
        .group_by(ShipmentLine.line_no)
    )
    return {n: int(q) for n, q in rows}


async def close_settled_orders(db: Database, actor: Actor, now: dt.datetime | None = None) -> int:
    """Close delivered orders whose return window has passed with no return asked for.

    Orders delivered by hand (no shipments recorded) are left to people. Idempotent;
    orders locked elsewhere wait for the next sweep. Returns how many were closed.
    """
    now = now or dt.datetime.now(dt.UTC)
    closed = 0
    for tenant_id in sorted(actor.tenant_ids, key=str):
        async with db.transaction(actor.scope) as session:
            policy = await policy_of(session, tenant_id)
            cutoff = now - dt.timedelta(days=policy.return_window_days)
            last_delivery = (
                select(Shipment.order_id, func.max(Shipment.delivered_at).label("delivered_at"))
                .where(Shipment.tenant_id == tenant_id)
                .group_by(Shipment.order_id)
                .subquery()
            )
            due = (
                await session.scalars(
                    select(Order)
                    .join(last_delivery, last_delivery.c.order_id == Order.id)
                    .where(
                        Order.tenant_id == tenant_id,
                        Order.status == OrderStatus.DELIVERED,
                        last_delivery.c.delivered_at < cutoff,
                    )
                    .order_by(Order.created_at)
                    .limit(500)
                    .with_for_update(of=Order, skip_locked=True)
                )
            ).all()
            system = system_actor_for(tenant_id)
            for order in due:
                await orders.apply_action(
                    session,
                    system,
                    order,
                    Action.CLOSE,
                    summary=f"Closed: the {policy.return_window_days}-day return window is over",
                    channel="system",
                )
                closed += 1
    return closed
