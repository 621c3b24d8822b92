"""Atomic stock changes inside the caller's transaction, each one written to the ledger.

Reservation is one conditional UPDATE: it takes the row lock and checks that enough
is available in the same statement, so two allocators racing for the last units
cannot both win (under READ COMMITTED the loser re-reads the row after the winner
commits and its WHERE no longer matches). The CHECK constraint on `stock_levels`
is the backstop. Callers that touch several rows do it sorted by (warehouse, sku)
so that two transactions never wait for each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor
from orderdesk.core import events
from orderdesk.inventory.models import MovementKind, StockLevel, StockMovement

_MOVEMENTS_KEY = "orderdesk.stock_movements"


@dataclass(frozen=True, slots=True)
class Level:
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True, slots=True)
class StockFreed:
    """Recorded when units become available at a warehouse (arrival, release, restock)."""

    tenant_id: UUID
    warehouse_id: UUID
    sku: str


def _note(
    session: AsyncSession,
    actor: Actor,
    tenant_id: UUID,
    warehouse_id: UUID,
    sku: str,
    kind: MovementKind,
    before: Level,
    after: Level,
    *,
    order_id: UUID | None = None,
    reason: str | None = None,
    source_event_id: str | None = None,
) -> None:
    """Queue a ledger row; the queue is written in one INSERT before the transaction commits."""
    if _MOVEMENTS_KEY not in session.info:
        session.info[_MOVEMENTS_KEY] = []
        events.record(session, MovementsQueued())
    session.info[_MOVEMENTS_KEY].append(
        {
            "tenant_id": tenant_id,
            "warehouse_id": warehouse_id,
            "sku": sku,
            "kind": kind,
            "on_hand_before": before.on_hand,
            "on_hand_after": after.on_hand,
            "reserved_before": before.reserved,
            "reserved_after": after.reserved,
            "order_id": order_id,
            "reason": reason,
            "source_event_id": source_event_id,
            "actor_kind": actor.kind.value,
            "actor_id": str(actor.id),
            "actor_name": actor.display_name,
        }
    )
    if after.available > before.available:
        events.record(session, StockFreed(tenant_id, warehouse_id, sku))


@dataclass(frozen=True, slots=True)
class MovementsQueued:
    """Recorded once per batch of queued ledger rows, so that they are written before commit."""


async def flush_movements(session: AsyncSession, _event: MovementsQueued | None = None) -> None:
    """Write the queued ledger rows (a handler of MovementsQueued; callers may flush earlier)."""
    rows = session.info.pop(_MOVEMENTS_KEY, [])
    if rows:
        await session.execute(insert(StockMovement), rows)


def queue_mark(session: AsyncSession) -> int:
    return len(session.info.get(_MOVEMENTS_KEY, ()))


def discard_since(session: AsyncSession, mark: int) -> None:
    """Forget ledger rows queued after `mark` (their changes were rolled back to a savepoint)."""
    if _MOVEMENTS_KEY in session.info:
        del session.info[_MOVEMENTS_KEY][mark:]


def _key(tenant_id: UUID, warehouse_id: UUID, sku: str):
    return (
        (StockLevel.tenant_id == tenant_id)
        & (StockLevel.warehouse_id == warehouse_id)
        & (StockLevel.sku == sku)
    )


async def try_reserve(
    session: AsyncSession,
    actor: Actor,
    tenant_id: UUID,
    warehouse_id: UUID,
    sku: str,
    quantity: int,
    *,
    order_id: UUID | None,
) -> bool:
    """Reserve `quantity` if that many are available now; False (nothing changed) otherwise."""
    row = (
        await session.execute(
            update(StockLevel)
            .where(_key(tenant_id, warehouse_id, sku), StockLevel.on_hand - StockLevel.reserved >= quantity)
            .values(reserved=StockLevel.reserved + quantity, updated_at=func.now())
            .returning(StockLevel.on_hand, StockLevel.reserved)
        )
    ).first()
    if row is None:
        return False
    after = Level(row.on_hand, row.reserved)
    _note(
        session,
        actor,
        tenant_id,
        warehouse_id,
        sku,
        MovementKind.RESERVE,
        Level(after.on_hand, after.reserved - quantity),
        after,
        order_id=order_id,
    )
    return True


async def release(
    session: AsyncSession,
    actor: Actor,
    tenant_id: UUID,
    warehouse_id: UUID,
    sku: str,
    quantity: int,
    *,
    order_id: UUID | None,
    reason: str,
) -> Level:
    """Give back reserved units. Raises RuntimeError if fewer are reserved (a bookkeeping bug)."""
    row = (
        await session.execute(
            update(StockLevel)
            .where(_key(tenant_id, warehouse_id, sku), StockLevel.reserved >= quantity)
            .values(reserved=StockLevel.reserved - quantity, updated_at=func.now())
            .returning(StockLevel.on_hand, StockLevel.reserved)
        )
    ).first()
    if row is None:
        raise RuntimeError(f"cannot release {quantity} of {sku} at {warehouse_id}: not reserved")
    after = Level(row.on_hand, row.reserved)
    _note(
        session,
        actor,
        tenant_id,
        warehouse_id,
        sku,
        MovementKind.RELEASE,
        Level(after.on_hand, after.reserved + quantity),
        after,
        order_id=order_id,
        reason=reason,
    )
    return after


async def consume(
    session: AsyncSession,
    actor: Actor,
    tenant_id: UUID,
    warehouse_id: UUID,
    sku: str,
    quantity: int,
    *,
    order_id: UUID,
    reason: str,
) -> Level:
    """Reserved units leave with a shipment: on hand and reserved both drop."""
    row = (
        await session.execute(
            update(StockLevel)
            .where(_key(tenant_id, warehouse_id, sku), StockLevel.reserved >= quantity)
            .values(
                reserved=StockLevel.reserved - quantity,
                on_hand=StockLevel.on_hand - quantity,
                updated_at=func.now(),
            )
            .returning(StockLevel.on_hand, StockLevel.reserved)
        )
    ).first()
    if row is None:
        raise RuntimeError(f"cannot ship {quantity} of {sku} at {warehouse_id}: not reserved")
    after = Level(row.on_hand, row.reserved)
    _note(
        session,
        actor,
        tenant_id,
        warehouse_id,
        sku,
        MovementKind.SHIP,
        Level(after.on_hand + quantity, after.reserved + quantity),
        after,
        order_id=order_id,
        reason=reason,
    )
    return after


async def lock_level(session: AsyncSession, tenant_id: UUID, warehouse_id: UUID, sku: str) -> Level:
    """The row locked for update, created at zero if the SKU is new to the warehouse."""
    await session.execute(
        pg_insert(StockLevel)
        .values(tenant_id=tenant_id, warehouse_id=warehouse_id, sku=sku, on_hand=0, reserved=0)
        .on_conflict_do_nothing(index_elements=["tenant_id", "warehouse_id", "sku"])
    )
    row = (
        await session.execute(
            select(StockLevel.on_hand, StockLevel.reserved)
            .where(_key(tenant_id, warehouse_id, sku))
            .with_for_update()
        )
    ).one()
    return Level(row.on_hand, row.reserved)


async def set_on_hand(
    session: AsyncSession,
    actor: Actor,
    tenant_id: UUID,
    warehouse_id: UUID,
    sku: str,
    before: Level,
    on_hand: int,
    kind: MovementKind,
    *,
    reason: str | None = None,
    source_event_id: str | None = None,
    order_id: UUID | None = None,
) -> Level:
    """Write a new on-hand figure for a row locked with `lock_level` (the caller checked it)."""
    await session.execute(
        update(StockLevel)
        .where(_key(tenant_id, warehouse_id, sku))
        .values(on_hand=on_hand, updated_at=func.now())
    )
    after = Level(on_hand, before.reserved)
    _note(
        session,
        actor,
        tenant_id,
        warehouse_id,
        sku,
        kind,
        before,
        after,
        reason=reason,
        source_event_id=source_event_id,
        order_id=order_id,
    )
    return after


async def set_threshold(
    session: AsyncSession, tenant_id: UUID, warehouse_id: UUID, sku: str, threshold: int | None
) -> None:
    await session.execute(
        update(StockLevel).where(_key(tenant_id, warehouse_id, sku)).values(low_stock_threshold=threshold)
    )
