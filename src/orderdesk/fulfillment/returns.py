"""Returns (RMA): requested within the tenant's window, approved or rejected, received
(restocked or not), refunded (never more than was paid). Every step is on the timeline.
An order takes one return at a time and several over time: when a return is settled
(refunded or rejected) while the window lasts and units remain, the order is open for
the next one; otherwise it closes.

Every function takes the acting `Actor`, works in one transaction scoped to the
actor's tenants with the order row locked, and raises domain errors only:
NotFound (also for other tenants' objects), ValidationFailed, Conflict,
PermissionDenied, InvalidTransition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core import events, money
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.fulfillment.models import Return, ReturnLine, ReturnReason, ReturnStatus
from orderdesk.fulfillment.policy import policy_of
from orderdesk.fulfillment.schemas import ReceiveIn, ReturnIn, ReturnLineView, ReturnView
from orderdesk.fulfillment.services import order_delivered_at, shipped_quantities
from orderdesk.inventory import ledger
from orderdesk.inventory.allocation import system_actor_for
from orderdesk.inventory.models import MovementKind, Warehouse
from orderdesk.orders import services as orders
from orderdesk.orders.models import Order, OrderLine, PaymentStatus
from orderdesk.orders.states import Action
from orderdesk.orders.timeline import CHANNEL_OF_ACTOR, append_event

OPEN = frozenset({ReturnStatus.REQUESTED, ReturnStatus.APPROVED, ReturnStatus.RECEIVED})


@dataclass(frozen=True, slots=True)
class ReturnRefunded:
    """Recorded when money goes back; invoicing issues the credit note."""

    tenant_id: UUID
    order_id: UUID
    return_id: UUID
    amount_minor: int


def _label(reason: ReturnReason) -> str:
    return reason.value.replace("_", " ")


def _touch(order: Order) -> None:
    order.version += 1
    order.updated_at = dt.datetime.now(dt.UTC)


async def _view(session: AsyncSession, row: Return) -> ReturnView:
    lines = await session.scalars(
        select(ReturnLine)
        .where(ReturnLine.tenant_id == row.tenant_id, ReturnLine.return_id == row.id)
        .order_by(ReturnLine.line_no)
    )
    return ReturnView(
        **{
            name: getattr(row, name)
            for name in ReturnView.model_fields
            if name not in ("lines", "status", "reason")
        },
        status=row.status.value,
        reason=row.reason.value,
        lines=[ReturnLineView.model_validate(line) for line in lines],
    )


async def _find_return(session: AsyncSession, actor: Actor, return_id: UUID) -> tuple[Return, Order]:
    """The return and its order (locked first, so that steps of one return never interleave)."""
    found = await session.scalar(
        select(Return).where(Return.id == return_id, Return.tenant_id.in_(actor.tenant_ids))
    )
    if found is None:
        raise NotFound("Return")
    order = await session.scalar(
        select(Order).where(Order.tenant_id == found.tenant_id, Order.id == found.order_id).with_for_update()
    )
    await session.refresh(found)
    return found, order


def _require_operator(actor: Actor, what: str) -> None:
    if actor.kind is ActorKind.CLIENT and actor.client_role is not ClientRole.ADMIN:
        raise PermissionDenied(f"Only the client's administrators and the operations team can {what}")


async def _returnable(session: AsyncSession, order: Order) -> tuple[dict[int, OrderLine], dict[int, int]]:
    """The order's lines, and per line the units delivered and not yet in a return
    (rejected returns give their units back)."""
    lines = {
        line.line_no: line
        for line in await session.scalars(
            select(OrderLine).where(OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id)
        )
    }
    shipped = await shipped_quantities(session, order)
    returned = dict(
        (
            await session.execute(
                select(ReturnLine.line_no, func.sum(ReturnLine.quantity))
                .join(
                    Return,
                    (Return.tenant_id == ReturnLine.tenant_id) & (Return.id == ReturnLine.return_id),
                )
                .where(
                    ReturnLine.tenant_id == order.tenant_id,
                    ReturnLine.order_id == order.id,
                    Return.status != ReturnStatus.REJECTED,
                )
                .group_by(ReturnLine.line_no)
            )
        ).all()
    )
    left = {}
    for line_no, line in lines.items():
        # Orders moved by hand have no shipment rows: their lines count as delivered whole.
        delivered = shipped.get(line_no, 0) if shipped else line.quantity
        left[line_no] = delivered - int(returned.get(line_no, 0))
    return lines, left


async def _after_settled(session: AsyncSession, order: Order, closing_summary: str) -> None:
    """A return was refunded or rejected: while the window lasts and units remain that
    could still come back, the order is open for further returns (the close sweep
    ends it with the window); otherwise it closes now."""
    await session.flush()  # the settled return's new status counts below
    system = system_actor_for(order.tenant_id)
    policy = await policy_of(session, order.tenant_id)
    delivered_at = await order_delivered_at(session, order)
    ends = delivered_at + dt.timedelta(days=policy.return_window_days) if delivered_at else None
    if ends is not None and dt.datetime.now(dt.UTC) < ends:
        _, left = await _returnable(session, order)
        units = sum(q for q in left.values() if q > 0)
        if units:
            await orders.apply_action(
                session,
                system,
                order,
                Action.REOPEN_RETURNS,
                summary=f"Open for further returns until {ends.date().isoformat()}: "
                + (f"{units} units" if units != 1 else "1 unit")
                + " may still come back",
                changes={"returnable_units": units, "window_ends": ends.isoformat()},
                channel="system",
            )
            return
    await orders.apply_action(session, system, order, Action.CLOSE, summary=closing_summary, channel="system")


async def request_return(
    db: Database, actor: Actor, order_id: UUID, data: ReturnIn, *, channel: str | None = None
) -> ReturnView:
    """Open a return for some delivered units, within the tenant's return window.

    `channel` records where the request came from (e.g. "email" when a customer's
    message was turned into it). Raises NotFound, ValidationFailed (unknown lines,
    more units than were delivered and not yet returned), Conflict (outside the
    window, no returns taken), InvalidTransition (the order is not delivered).
    """
    async with db.transaction(actor.scope) as session:
        order = await orders.lock_order(session, actor, order_id)
        policy = await policy_of(session, order.tenant_id)
        delivered_at = await order_delivered_at(session, order)
        now = dt.datetime.now(dt.UTC)
        if delivered_at is not None and order.status.value == "delivered":
            if policy.return_window_days == 0:
                raise Conflict("This client takes no returns")
            ends = delivered_at + dt.timedelta(days=policy.return_window_days)
            if now > ends:
                days = policy.return_window_days
                raise Conflict(f"The return window of {days} days ended on {ends.date().isoformat()}")
        lines, left_of = await _returnable(session, order)
        errors: list[FieldError] = []
        seen: set[int] = set()
        for i, item in enumerate(data.lines):
            if item.line_no not in lines:
                errors.append(FieldError(f"lines.{i}.line_no", f"the order has no line {item.line_no}"))
                continue
            if item.line_no in seen:
                errors.append(FieldError(f"lines.{i}.line_no", f"line {item.line_no} appears twice"))
            seen.add(item.line_no)
            left = left_of[item.line_no]
            if item.quantity > left:
                errors.append(
                    FieldError(f"lines.{i}.quantity", f"only {left} of line {item.line_no} can be returned")
                )
        if errors:
            raise ValidationFailed(errors)
        number = 1 + await session.scalar(
            select(func.coalesce(func.max(Return.number), 0)).where(
                Return.tenant_id == order.tenant_id, Return.order_id == order.id
            )
        )
        rma = f"RMA-{order.number}-{number}"
        row = Return(
            tenant_id=order.tenant_id,
            id=new_id(),
            order_id=order.id,
            number=number,
            rma=rma,
            status=ReturnStatus.REQUESTED,
            reason=data.reason,
            note=data.note,
            channel=channel or CHANNEL_OF_ACTOR[actor.kind],
            requested_by=actor.display_name,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        for item in data.lines:
            session.add(
                ReturnLine(
                    tenant_id=order.tenant_id,
                    return_id=row.id,
                    line_no=item.line_no,
                    order_id=order.id,
                    sku=lines[item.line_no].sku,
                    quantity=item.quantity,
                )
            )
        contents = ", ".join(f"{i.quantity} × {lines[i.line_no].sku}" for i in data.lines)
        await orders.apply_action(
            session,
            actor,
            order,
            Action.REQUEST_RETURN,
            summary=f"Return {rma} requested ({_label(data.reason)}): {contents}",
            changes={"return": {"id": str(row.id), "rma": rma, "reason": data.reason.value}},
            channel=channel,
        )
        await session.flush()
        return await _view(session, row)


async def approve_return(db: Database, actor: Actor, return_id: UUID, note: str | None) -> ReturnView:
    """Raises NotFound, PermissionDenied, Conflict (not waiting for a decision)."""
    _require_operator(actor, "approve returns")
    async with db.transaction(actor.scope) as session:
        row, order = await _find_return(session, actor, return_id)
        if row.status is not ReturnStatus.REQUESTED:
            raise Conflict(f"Return {row.rma} is {row.status.value}; only a requested return can be approved")
        row.status = ReturnStatus.APPROVED
        row.decided_by, row.decided_at, row.decision_note = actor.display_name, dt.datetime.now(dt.UTC), note
        row.updated_at = row.decided_at
        append_event(
            session,
            order,
            actor,
            "return_approved",
            f"Return {row.rma} approved" + (f": {note}" if note else ""),
            {"return": str(row.id), "status": ["requested", "approved"]},
        )
        _touch(order)
        await session.flush()
        return await _view(session, row)


async def reject_return(db: Database, actor: Actor, return_id: UUID, reason: str) -> ReturnView:
    """Refuse a return; the order closes (no return is open any more).
    Raises NotFound, PermissionDenied, Conflict, InvalidTransition."""
    _require_operator(actor, "reject returns")
    async with db.transaction(actor.scope) as session:
        row, order = await _find_return(session, actor, return_id)
        if row.status not in (ReturnStatus.REQUESTED, ReturnStatus.APPROVED, ReturnStatus.RECEIVED):
            raise Conflict(f"Return {row.rma} is {row.status.value}; it can no longer be rejected")
        row.status = ReturnStatus.REJECTED
        row.decided_by, row.decided_at, row.decision_note = (
            actor.display_name,
            dt.datetime.now(dt.UTC),
            reason,
        )
        row.updated_at = row.decided_at
        await orders.apply_action(
            session,
            actor,
            order,
            Action.REJECT_RETURN,
            summary=f"Return {row.rma} rejected: {reason}",
            changes={"return": {"id": str(row.id), "rma": row.rma}},
        )
        await _after_settled(session, order, "Closed: no return left open")
        await session.flush()
        return await _view(session, row)


async def receive_return(db: Database, actor: Actor, return_id: UUID, data: ReceiveIn) -> ReturnView:
    """The goods are back and inspected; units fit to sell go back into a warehouse's stock.

    Raises NotFound (return, warehouse), PermissionDenied (staff and the client's
    systems), ValidationFailed (unknown lines, restocking more than came back or
    without a warehouse), Conflict (not approved), InvalidTransition.
    """
    if actor.kind is ActorKind.CLIENT:
        raise PermissionDenied("Returns are received by the warehouse or the operations team")
    async with db.transaction(actor.scope) as session:
        row, order = await _find_return(session, actor, return_id)
        if row.status is not ReturnStatus.APPROVED:
            raise Conflict(f"Return {row.rma} is {row.status.value}; approve it before receiving the goods")
        lines = {
            line.line_no: line
            for line in await session.scalars(
                select(ReturnLine).where(
                    ReturnLine.tenant_id == row.tenant_id, ReturnLine.return_id == row.id
                )
            )
        }
        errors: list[FieldError] = []
        for i, item in enumerate(data.lines):
            if item.line_no not in lines:
                errors.append(
                    FieldError(f"lines.{i}.line_no", f"return {row.rma} has no line {item.line_no}")
                )
            elif item.restock_quantity > lines[item.line_no].quantity:
                errors.append(
                    FieldError(
                        f"lines.{i}.restock_quantity", f"only {lines[item.line_no].quantity} came back"
                    )
                )
        restocking = [i for i in data.lines if i.restock_quantity > 0 and i.line_no in lines]
        warehouse = None
        if data.warehouse_id is not None:
            warehouse = await session.scalar(
                select(Warehouse).where(
                    Warehouse.tenant_id == row.tenant_id, Warehouse.id == data.warehouse_id
                )
            )
            if warehouse is None:
                raise NotFound("Warehouse")
        elif restocking:
            errors.append(FieldError("warehouse_id", "is required to restock units"))
        if errors:
            raise ValidationFailed(errors)
        now = dt.datetime.now(dt.UTC)
        for item in sorted(restocking, key=lambda i: lines[i.line_no].sku):
            line = lines[item.line_no]
            before = await ledger.lock_level(session, row.tenant_id, warehouse.id, line.sku)
            await ledger.set_on_hand(
                session,
                actor,
                row.tenant_id,
                warehouse.id,
                line.sku,
                before,
                before.on_hand + item.restock_quantity,
                MovementKind.RETURN,
                reason=f"return {row.rma}",
                order_id=order.id,
            )
            line.restocked_qty = item.restock_quantity
        for item in data.lines:
            if item.line_no in lines:
                lines[item.line_no].condition = item.condition
        row.status = ReturnStatus.RECEIVED
        row.received_at = now
        row.received_warehouse_id = warehouse.id if warehouse else None
        row.updated_at = now
        restocked = ", ".join(f"{i.restock_quantity} × {lines[i.line_no].sku}" for i in restocking)
        summary = f"Return {row.rma} received" + (
            f"; restocked {restocked} at {warehouse.code}" if restocking else "; nothing restocked"
        )
        await orders.apply_action(
            session,
            actor,
            order,
            Action.RECEIVE_RETURN,
            summary=summary + (f": {data.note}" if data.note else ""),
            changes={
                "return": {
                    "id": str(row.id),
                    "rma": row.rma,
                    "restocked": {lines[i.line_no].sku: i.restock_quantity for i in restocking},
                }
            },
        )
        await session.flush()
        return await _view(session, row)


async def refund_return(
    db: Database, actor: Actor, return_id: UUID, amount_minor: int, note: str | None = None
) -> ReturnView:
    """Record the refund of a received return; the order then closes.

    Never more than was paid and not yet refunded (a paid order's total).
    Raises NotFound, PermissionDenied, ValidationFailed (amount), Conflict (not
    received), InvalidTransition.
    """
    _require_operator(actor, "refund returns")
    async with db.transaction(actor.scope) as session:
        row, order = await _find_return(session, actor, return_id)
        if row.status is not ReturnStatus.RECEIVED:
            raise Conflict(f"Return {row.rma} is {row.status.value}; refunds follow receipt of the goods")
        paid = (
            order.total_minor if order.payment_status in (PaymentStatus.PAID, PaymentStatus.REFUNDED) else 0
        )
        already = await session.scalar(
            select(func.coalesce(func.sum(Return.refund_minor), 0)).where(
                Return.tenant_id == order.tenant_id, Return.order_id == order.id
            )
        )
        left = paid - int(already)
        if amount_minor > left:
            raise ValidationFailed(
                [
                    FieldError(
                        "amount_minor",
                        f"must not exceed {left} ({money.format_minor(left, order.currency)}): what was paid "
                        "and not yet refunded",
                    )
                ]
            )
        now = dt.datetime.now(dt.UTC)
        row.status = ReturnStatus.REFUNDED
        row.refund_minor = amount_minor
        row.refunded_at = now
        row.updated_at = now
        if amount_minor == left:
            order.payment_status = PaymentStatus.REFUNDED
        await orders.apply_action(
            session,
            actor,
            order,
            Action.REFUND,
            summary=f"Refunded {money.format_minor(amount_minor, order.currency)} for return {row.rma}"
            + (f": {note}" if note else ""),
            changes={"return": {"id": str(row.id), "rma": row.rma}, "refund_minor": amount_minor},
        )
        events.record(session, ReturnRefunded(order.tenant_id, order.id, row.id, amount_minor))
        await _after_settled(session, order, "Closed: delivered, returned and refunded")
        await session.flush()
        return await _view(session, row)


async def list_returns(db: Database, actor: Actor, order_id: UUID) -> list[ReturnView]:
    """Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        order = await session.scalar(
            select(Order).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
        )
        if order is None:
            raise NotFound("Order")
        rows = await session.scalars(
            select(Return)
            .where(Return.tenant_id == order.tenant_id, Return.order_id == order.id)
            .order_by(Return.number)
        )
        return [await _view(session, r) for r in rows]


async def get_return(db: Database, actor: Actor, return_id: UUID) -> ReturnView:
    """Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        found = await session.scalar(
            select(Return).where(Return.id == return_id, Return.tenant_id.in_(actor.tenant_ids))
        )
        if found is None:
            raise NotFound("Return")
        return await _view(session, found)
