"""Warehouses, stock levels and their ledger, and allocation requests from people.

Every function takes the acting `Actor`, works in one transaction scoped to the
actor's tenants and raises domain errors only: NotFound (also for other tenants'
objects), ValidationFailed (every bad field), Conflict, PermissionDenied,
InvalidTransition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import defaultdict
from uuid import UUID
from weakref import WeakKeyDictionary

import asyncpg
import structlog
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core import geo
from orderdesk.core.batching import Batches
from orderdesk.core.db import GENERIC_PLANS, Database
from orderdesk.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.core.validation import Collector
from orderdesk.inventory import allocation, ledger, routing
from orderdesk.inventory.models import (
    Allocation,
    Backorder,
    MovementKind,
    StockLevel,
    StockMovement,
    StockUpdateReceipt,
    Warehouse,
)
from orderdesk.inventory.schemas import (
    AllocationLineView,
    BackorderView,
    MovementView,
    OrderAllocationView,
    StockLevelView,
    StockUpdateIn,
    StockUpdateResult,
    WarehouseIn,
    WarehousePatch,
)
from orderdesk.orders import services as orders
from orderdesk.orders.models import Order
from orderdesk.orders.states import Action, OrderStatus
from orderdesk.orders.timeline import append_event

log = structlog.get_logger("orderdesk.inventory")

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
OVERRIDABLE = frozenset({OrderStatus.ALLOCATED, OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_SHIPPED})


# ---------------------------------------------------------------- who may do what


def _require_manager(actor: Actor) -> None:
    """Warehouses and stock feeds: administrators and the client's systems."""
    if actor.kind in (ActorKind.SYSTEM, ActorKind.API_KEY) or actor.is_admin:
        return
    if actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN:
        return
    raise PermissionDenied("Only administrators and the client's systems can change warehouses and stock")


def _require_staff(actor: Actor, what: str) -> None:
    if actor.kind not in (ActorKind.STAFF, ActorKind.SYSTEM):
        raise PermissionDenied(f"Only operations staff can {what}")


def _require_operator(actor: Actor) -> None:
    if actor.kind is ActorKind.CLIENT:
        raise PermissionDenied("Allocation is run by the operations team and the client's systems")


async def _find_warehouse(
    session: AsyncSession, actor: Actor, warehouse_id: UUID, *, lock: bool = False
) -> Warehouse:
    query = select(Warehouse).where(Warehouse.id == warehouse_id, Warehouse.tenant_id.in_(actor.tenant_ids))
    if lock:
        query = query.with_for_update()
    warehouse = await session.scalar(query)
    if warehouse is None:
        raise NotFound("Warehouse")
    return warehouse


# ---------------------------------------------------------------- warehouses


def _check_warehouse_fields(check: Collector, values: dict) -> dict:
    if "code" in values and not CODE_PATTERN.match(values["code"]):
        check.add("code", "must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if "name" in values:
        values["name"] = check.text("name", values["name"], max_length=200)
    if values.get("country") is not None:
        values["country"] = values["country"].upper()
        if not geo.is_country(values["country"]):
            check.add("country", f"{values['country']!r} is not an ISO 3166-1 alpha-2 country code")
    if values.get("region") is not None:
        values["region"] = check.text("region", values["region"], max_length=100, required=False) or None
    if values.get("ships_to") is not None:
        codes = [c.upper() for c in values["ships_to"]]
        for i, code in enumerate(codes):
            if not geo.is_country(code):
                check.add(f"ships_to.{i}", f"{code!r} is not an ISO 3166-1 alpha-2 country code")
        values["ships_to"] = sorted(set(codes))
    if values.get("time_zone") is not None:
        check.time_zone("time_zone", values["time_zone"])
    return values


async def create_warehouse(db: Database, actor: Actor, data: WarehouseIn) -> Warehouse:
    """Add a fulfillment center. Raises NotFound (tenant), PermissionDenied, ValidationFailed,
    Conflict (code taken)."""
    tenant_id = orders.resolve_tenant(actor, data.tenant_id)
    _require_manager(actor)
    check = Collector()
    values = _check_warehouse_fields(check, data.model_dump(exclude={"tenant_id"}))
    check.raise_if_any()
    warehouse = Warehouse(tenant_id=tenant_id, id=new_id(), **values)
    try:
        async with db.transaction(actor.scope) as session:
            taken = await session.scalar(
                select(exists().where(Warehouse.tenant_id == tenant_id, Warehouse.code == values["code"]))
            )
            if taken:
                raise Conflict(f"A warehouse with code {values['code']!r} already exists")
            session.add(warehouse)
            await session.flush()
            await session.refresh(warehouse)
    except IntegrityError as exc:
        raise Conflict(f"A warehouse with code {values['code']!r} already exists") from exc
    return warehouse


async def list_warehouses(db: Database, actor: Actor, tenant_id: UUID | None = None) -> list[Warehouse]:
    """The actor's warehouses by code (one tenant's with `tenant_id`). Raises NotFound (tenant)."""
    tenants = actor.tenant_ids
    if tenant_id is not None:
        if tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenants = frozenset({tenant_id})
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(Warehouse).where(Warehouse.tenant_id.in_(tenants)).order_by(Warehouse.code)
        )
        return list(rows)


async def get_warehouse(db: Database, actor: Actor, warehouse_id: UUID) -> Warehouse:
    """Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        return await _find_warehouse(session, actor, warehouse_id)


async def update_warehouse(
    db: Database, actor: Actor, warehouse_id: UUID, patch: WarehousePatch
) -> Warehouse:
    """Change the fields given. Raises NotFound, PermissionDenied, ValidationFailed."""
    _require_manager(actor)
    check = Collector()
    values = _check_warehouse_fields(check, patch.model_dump(exclude_unset=True))
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        warehouse = await _find_warehouse(session, actor, warehouse_id, lock=True)
        for name, value in values.items():
            setattr(warehouse, name, value)
        warehouse.updated_at = func.now()
        await session.flush()
        await session.refresh(warehouse)
        return warehouse


async def delete_warehouse(db: Database, actor: Actor, warehouse_id: UUID) -> None:
    """Remove a warehouse that never held stock. Raises NotFound, PermissionDenied,
    Conflict (it has history: deactivate it instead)."""
    _require_manager(actor)
    async with db.transaction(actor.scope) as session:
        warehouse = await _find_warehouse(session, actor, warehouse_id, lock=True)
        used = await session.scalar(
            select(
                exists().where(
                    StockMovement.tenant_id == warehouse.tenant_id, StockMovement.warehouse_id == warehouse.id
                )
            )
        ) or await session.scalar(
            select(
                exists().where(
                    Allocation.tenant_id == warehouse.tenant_id, Allocation.warehouse_id == warehouse.id
                )
            )
        )
        if used:
            raise Conflict("The warehouse has stock history; set active=false instead of deleting it")
        await session.execute(
            delete(StockLevel).where(
                StockLevel.tenant_id == warehouse.tenant_id, StockLevel.warehouse_id == warehouse.id
            )
        )
        await session.delete(warehouse)


# ---------------------------------------------------------------- stock


def _level_view(level: StockLevel, code: str) -> StockLevelView:
    available = level.on_hand - level.reserved
    return StockLevelView(
        warehouse_id=level.warehouse_id,
        warehouse_code=code,
        sku=level.sku,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=available,
        low_stock_threshold=level.low_stock_threshold,
        low_stock=level.low_stock_threshold is not None and available <= level.low_stock_threshold,
        updated_at=level.updated_at,
    )


async def _levels(session: AsyncSession, warehouse: Warehouse, skus: list[str]) -> list[StockLevelView]:
    rows = await session.scalars(
        select(StockLevel)
        .where(
            StockLevel.tenant_id == warehouse.tenant_id,
            StockLevel.warehouse_id == warehouse.id,
            StockLevel.sku.in_(skus),
        )
        .order_by(StockLevel.sku)
        .execution_options(populate_existing=True)
    )
    return [_level_view(r, warehouse.code) for r in rows]


def _fingerprint(warehouse_id: UUID, data: StockUpdateIn) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{warehouse_id}\n{canonical}".encode()).hexdigest()


async def update_stock(
    db: Database,
    actor: Actor,
    warehouse_id: UUID,
    data: StockUpdateIn,
    *,
    fingerprint: str | None = None,
    rejected: list[dict] | None = None,
) -> StockUpdateResult:
    """Apply stock levels and deltas from a client system (or an administrator).

    With an `event_id`, a retry is applied once: the same id and body answer as the
    first time (`replayed`), the same id with another body raises Conflict. Every
    change is on the ledger; units that become available go to waiting backorders.

    Raises NotFound (warehouse), PermissionDenied, ValidationFailed (a level would
    drop below zero or below what is reserved; a SKU twice), Conflict.
    """
    _require_manager(actor)
    check = Collector()
    seen: dict[str, int] = {}
    for i, item in enumerate(data.updates):
        sku = check.text(f"updates.{i}.sku", item.sku, max_length=64)
        if sku in seen:
            check.add(f"updates.{i}.sku", f"{sku!r} appears twice (also at updates.{seen[sku]})")
        seen[sku] = i
    check.raise_if_any()
    # A CSV upload is one request however its rows are retried: it names its own fingerprint.
    fingerprint = fingerprint or _fingerprint(warehouse_id, data)
    async with db.transaction(actor.scope) as session:
        warehouse = await _find_warehouse(session, actor, warehouse_id)
        if data.event_id is not None:
            claimed = await session.scalar(
                pg_insert(StockUpdateReceipt)
                .values(
                    tenant_id=warehouse.tenant_id,
                    event_id=data.event_id,
                    request_hash=fingerprint,
                    response_body={},
                )
                .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
                .returning(StockUpdateReceipt.event_id)
            )
            if claimed is None:
                stored = await session.scalar(
                    select(StockUpdateReceipt).where(
                        StockUpdateReceipt.tenant_id == warehouse.tenant_id,
                        StockUpdateReceipt.event_id == data.event_id,
                    )
                )
                if stored.request_hash != fingerprint:
                    raise Conflict(
                        f"Stock event {data.event_id!r} was already applied with different content"
                    )
                return StockUpdateResult.model_validate({**stored.response_body, "replayed": True})
        errors: list[FieldError] = []
        # Rows locked in SKU order: two feeds for one warehouse never wait on each other in a circle.
        for i, item in sorted(enumerate(data.updates), key=lambda pair: pair[1].sku):
            before = await ledger.lock_level(session, warehouse.tenant_id, warehouse.id, item.sku)
            if item.on_hand is not None or item.delta is not None:
                new = item.on_hand if item.on_hand is not None else before.on_hand + item.delta
                field = f"updates.{i}.{'on_hand' if item.on_hand is not None else 'delta'}"
                problem = _level_problem(before, new)
                if problem:
                    errors.append(FieldError(field, problem))
                    continue
                if new != before.on_hand or item.on_hand is not None:
                    kind = (
                        MovementKind.COUNT
                        if item.on_hand is not None
                        else MovementKind.RECEIPT
                        if item.delta > 0
                        else MovementKind.ADJUSTMENT
                    )
                    await ledger.set_on_hand(
                        session,
                        actor,
                        warehouse.tenant_id,
                        warehouse.id,
                        item.sku,
                        before,
                        new,
                        kind,
                        reason=data.reason,
                        source_event_id=data.event_id,
                    )
            if item.low_stock_threshold is not None or item.clear_threshold:
                await ledger.set_threshold(
                    session,
                    warehouse.tenant_id,
                    warehouse.id,
                    item.sku,
                    None if item.clear_threshold else item.low_stock_threshold,
                )
        if errors:
            raise ValidationFailed(sorted(errors, key=lambda e: e.field))
        await session.flush()
        result = StockUpdateResult(
            event_id=data.event_id,
            levels=await _levels(session, warehouse, sorted(seen)),
            rejected=rejected or [],
        )
        if data.event_id is not None:
            await session.execute(
                update(StockUpdateReceipt)
                .where(
                    StockUpdateReceipt.tenant_id == warehouse.tenant_id,
                    StockUpdateReceipt.event_id == data.event_id,
                )
                .values(response_body=result.model_dump(mode="json"))
            )
        return result


def _level_problem(before: ledger.Level, new: int) -> str | None:
    if new < 0:
        return f"would take on hand below zero (it is {before.on_hand})"
    if new < before.reserved:
        return (
            f"would leave {new} on hand, fewer than the {before.reserved} units reserved for orders; "
            "cancel or move those allocations first"
        )
    return None


async def adjust_stock(
    db: Database, actor: Actor, warehouse_id: UUID, sku: str, delta: int, reason: str
) -> StockLevelView:
    """An agent corrects a level, with a reason, on the ledger. Raises NotFound, PermissionDenied,
    ValidationFailed (zero change, no reason, below zero or below what is reserved)."""
    _require_staff(actor, "adjust stock by hand")
    check = Collector()
    sku = check.text("sku", sku, max_length=64)
    reason = check.text("reason", reason, max_length=500)
    if delta == 0:
        check.add("delta", "must not be zero")
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        warehouse = await _find_warehouse(session, actor, warehouse_id)
        before = await ledger.lock_level(session, warehouse.tenant_id, warehouse.id, sku)
        problem = _level_problem(before, before.on_hand + delta)
        if problem:
            raise ValidationFailed([FieldError("delta", problem)])
        await ledger.set_on_hand(
            session,
            actor,
            warehouse.tenant_id,
            warehouse.id,
            sku,
            before,
            before.on_hand + delta,
            MovementKind.ADJUSTMENT,
            reason=reason,
        )
        await session.flush()
        [view] = await _levels(session, warehouse, [sku])
        return view


async def list_stock(
    db: Database,
    actor: Actor,
    *,
    warehouse_id: UUID | None = None,
    tenant_id: UUID | None = None,
    sku: str | None = None,
    low_only: bool = False,
) -> list[StockLevelView]:
    """Stock levels by warehouse code and SKU. Raises NotFound (warehouse or tenant)."""
    tenants = actor.tenant_ids
    if tenant_id is not None:
        if tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenants = frozenset({tenant_id})
    async with db.transaction(actor.scope) as session:
        query = (
            select(StockLevel, Warehouse.code)
            .join(
                Warehouse,
                (Warehouse.tenant_id == StockLevel.tenant_id) & (Warehouse.id == StockLevel.warehouse_id),
            )
            .where(StockLevel.tenant_id.in_(tenants))
        )
        if warehouse_id is not None:
            warehouse = await _find_warehouse(session, actor, warehouse_id)
            query = query.where(StockLevel.warehouse_id == warehouse.id)
        if sku:
            query = query.where(StockLevel.sku == sku)
        if low_only:
            query = query.where(
                StockLevel.low_stock_threshold.is_not(None),
                StockLevel.on_hand - StockLevel.reserved <= StockLevel.low_stock_threshold,
            )
        rows = await session.execute(query.order_by(Warehouse.code, StockLevel.sku).limit(5000))
        return [_level_view(level, code) for level, code in rows]


async def list_movements(
    db: Database, actor: Actor, warehouse_id: UUID, sku: str, limit: int = 200
) -> list[MovementView]:
    """The ledger of one SKU in one warehouse, newest first. Raises NotFound, ValidationFailed."""
    if not 1 <= limit <= 1000:
        raise ValidationFailed([FieldError("limit", "must be between 1 and 1000")])
    async with db.transaction(actor.scope) as session:
        warehouse = await _find_warehouse(session, actor, warehouse_id)
        rows = await session.scalars(
            select(StockMovement)
            .where(
                StockMovement.tenant_id == warehouse.tenant_id,
                StockMovement.warehouse_id == warehouse.id,
                StockMovement.sku == sku,
            )
            .order_by(StockMovement.id.desc())
            .limit(limit)
        )
        return [MovementView.model_validate(m) for m in rows]


# ---------------------------------------------------------------- allocations


async def _allocation_view(session: AsyncSession, order: Order) -> OrderAllocationView:
    rows = await session.execute(
        select(Allocation, Warehouse.code)
        .join(
            Warehouse,
            (Warehouse.tenant_id == Allocation.tenant_id) & (Warehouse.id == Allocation.warehouse_id),
        )
        .where(Allocation.tenant_id == order.tenant_id, Allocation.order_id == order.id)
        .order_by(Allocation.line_no, Warehouse.code)
        .execution_options(populate_existing=True)
    )
    backorders = await session.scalars(
        select(Backorder)
        .where(Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id)
        .order_by(Backorder.line_no)
        .execution_options(populate_existing=True)
    )
    return OrderAllocationView(
        order_id=order.id,
        status=order.status.value,
        allocations=[
            AllocationLineView(
                line_no=a.line_no,
                sku=a.sku,
                warehouse_id=a.warehouse_id,
                warehouse_code=code,
                reserved_qty=a.reserved_qty,
                shipped_qty=a.shipped_qty,
            )
            for a, code in rows
        ],
        backorders=[BackorderView(line_no=b.line_no, sku=b.sku, quantity=b.quantity) for b in backorders],
    )


async def get_order_allocation(db: Database, actor: Actor, order_id: UUID) -> OrderAllocationView:
    """Where the order's units are reserved or shipped from, and what waits. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        order = await _find_order(session, actor, order_id)
        return await _allocation_view(session, order)


async def _find_order(session: AsyncSession, actor: Actor, order_id: UUID) -> Order:
    order = await session.scalar(
        select(Order).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
    )
    if order is None:
        raise NotFound("Order")
    return order


def _view_from_plan(
    order: allocation.OrderForAllocation, stock: allocation.OrderStock, plan: routing.Plan
) -> OrderAllocationView:
    """What `_allocation_view` would read back, from what was read and written."""
    rows: dict[tuple[int, UUID], list] = {}
    for a in stock.allocations:
        rows[(a.line_no, a.warehouse_id)] = [a.sku, a.reserved_qty, a.shipped_qty]
    for p in plan.picks:
        row = rows.setdefault((p.line_no, p.warehouse_id), [p.sku, 0, 0])
        row[1] += p.quantity
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], stock.sites[kv[0][1]].code))
    return OrderAllocationView(
        order_id=order.id,
        status=order.status.value,
        allocations=[
            AllocationLineView(
                line_no=line_no,
                sku=sku,
                warehouse_id=warehouse_id,
                warehouse_code=stock.sites[warehouse_id].code,
                reserved_qty=reserved,
                shipped_qty=shipped,
            )
            for (line_no, warehouse_id), (sku, reserved, shipped) in ordered
        ],
        backorders=[
            BackorderView(line_no=b.line_no, sku=b.sku, quantity=b.quantity)
            for b in sorted(plan.backorders, key=lambda b: b.line_no)
        ],
    )


# Allocation requests are served in batches per scope (core/batching.py): under
# contention every allocation wants the same few stock rows, and a batch locks them once
# for all of its orders and commits once (measured in bench/allocation.py). A batch's
# order and stock rows stay locked until its commit, so batches are kept small enough
# for the other requests' wait to stay short.
ALLOCATION_BATCH_LARGEST = 25
ALLOCATION_BATCHES_AT_ONCE = 2
# How long a batch waits for a row another transaction holds (an order being changed, the
# orders of the backorder sweep, stock rows under an upload) before it gives up. Then each
# of its requests waits for its own rows alone, so one busy order does not hold up the
# other orders of its batch, nor the requests queued behind the batch.
ALLOCATION_BATCH_LOCK_TIMEOUT = "1s"
_allocation_batches: WeakKeyDictionary[AsyncEngine, tuple[asyncio.AbstractEventLoop, Batches]] = (
    WeakKeyDictionary()
)


def _batches_for(db: Database) -> Batches:
    """The process's allocation batches on `db`'s pool (and its event loop)."""
    loop = asyncio.get_running_loop()
    known = _allocation_batches.get(db.engine)
    if known is None or known[0] is not loop:
        known = (
            loop,
            Batches(_allocate_batch, largest=ALLOCATION_BATCH_LARGEST, at_once=ALLOCATION_BATCHES_AT_ONCE),
        )
        _allocation_batches[db.engine] = known
    return known[1]


async def retry_allocation(db: Database, actor: Actor, order_id: UUID) -> OrderAllocationView:
    """Route a verified order that was never allocated, or its backorders again.

    Served with the allocation requests made meanwhile in this process for the same
    tenants, in one transaction on the driver connection (`_allocate_batch`); the
    result is this order's own once that transaction has committed. When the batch
    found a row held elsewhere for too long, the order is allocated alone, waiting
    for its rows as long as that takes. Raises NotFound, PermissionDenied,
    InvalidTransition (on hold), Conflict (nothing to allocate, or the tenant keeps
    no warehouses).
    """
    _require_operator(actor)
    # While it waits for its batch, the request holds no connection: its key lookup's
    # transaction, if any, goes back now.
    await db.release_open_transaction()
    scope = Scope(tenant_ids=actor.scope.tenant_ids)
    try:
        return await _batches_for(db).submit(db, scope, order_id)
    except asyncpg.LockNotAvailableError:
        (view,) = await _allocate_batch(db, scope, [order_id], wait_for_locks=True)
        return view


class _BatchRolledBack(Exception):
    """The stock rows after a batch's writes differ from what its plans reserved."""


async def _allocate_batch(
    db: Database, scope: Scope, order_ids: list[UUID], *, wait_for_locks: bool = False
) -> list[OrderAllocationView | Exception]:
    """Allocate `order_ids` in one transaction: each gets its view or its own error.

    When the database refuses the batch's transaction (one order's data, a deadlock) or
    its stock rows do not show what it planned, each order is tried again alone, so that
    one order's failure stays its own. A row held elsewhere for longer than
    `ALLOCATION_BATCH_LOCK_TIMEOUT` (unless `wait_for_locks`), a lost connection or a
    pool that gave none in time reaches every caller as it is: trying each order again
    in turn would only make them wait longer.
    """
    settings = dict(GENERIC_PLANS)
    if not wait_for_locks:
        settings["lock_timeout"] = ALLOCATION_BATCH_LOCK_TIMEOUT
    try:
        async with db.driver_transaction(scope, extra_settings=settings) as driver:
            outcomes = await _allocate_locked(driver, scope.tenant_ids, order_ids)
    except (asyncpg.PostgresError, _BatchRolledBack) as error:
        if len(order_ids) == 1 or isinstance(error, asyncpg.LockNotAvailableError):
            raise
        log.warning("allocation_batch_rolled_back", orders=[str(o) for o in order_ids], error=repr(error))
        return [await _allocate_alone(db, scope, order_id) for order_id in order_ids]
    return [outcomes[order_id] for order_id in order_ids]


async def _allocate_alone(db: Database, scope: Scope, order_id: UUID) -> OrderAllocationView | Exception:
    try:
        return (await _allocate_batch(db, scope, [order_id]))[0]
    except Exception as error:
        return error


async def _allocate_locked(
    driver, tenant_ids: frozenset[UUID], order_ids: list[UUID]
) -> dict[UUID, OrderAllocationView | DomainError]:
    """Route and reserve each order in the caller's driver transaction.

    The orders are locked and read one by one, in id order (as every transaction that
    locks several orders does, so none waits for another in a circle), then every stock
    row any of them may use is locked at once, in key order, and the orders are planned
    against those figures in turn, the most urgent and the oldest first, each taking its
    units off before the next is planned: no plan can lose a race, and nothing is
    retried. The plans are written in one round trip, and the stock rows read again
    must show exactly what was planned, or the batch is rolled back.
    """
    if len(set(order_ids)) != len(order_ids):
        raise ValueError("an order appears twice in one allocation batch")
    outcomes: dict[UUID, OrderAllocationView | DomainError] = {}
    found: list[tuple[allocation.OrderForAllocation, allocation.OrderStock]] = []
    for order_id in sorted(order_ids):
        read = await allocation.read_locked_order_stock(driver, tenant_ids, order_id)
        if read is None:
            outcomes[order_id] = NotFound("Order")
        elif not read[1].managed:
            outcomes[order_id] = Conflict("The tenant has no warehouses: its stock is not managed here")
        else:
            found.append(read)
    keys = {(order.tenant_id, *key) for order, stock in found for key in stock.available}
    available = await allocation.lock_stock_rows(driver, keys) if keys else {}
    found.sort(key=lambda read: (-allocation.URGENCY[read[0].priority], read[0].created_at))
    reservations: list[allocation.Reservation] = []
    for order, stock in found:
        stock.available = {key: available[key] for key in stock.available if key in available}
        try:
            reservation = allocation.prepare_reservation(order, stock)
        except DomainError as error:  # refused: nothing of this order is written
            outcomes[order.id] = error
            continue
        if reservation is None:
            outcomes[order.id] = Conflict(
                f"Nothing to allocate: the order is {order.status.value.replace('_', ' ')} "
                "with no backordered units"
            )
            continue
        for pick in reservation.plan.picks:
            available[(pick.warehouse_id, pick.sku)] -= pick.quantity
        reservations.append(reservation)
        outcomes[order.id] = _view_from_plan(order, stock, reservation.plan)
    if reservations:
        await allocation.write_reservations(driver, reservations)
        if keys and await allocation.lock_stock_rows(driver, keys) != available:
            raise _BatchRolledBack("the stock rows do not show what the batch's plans reserved")
    return outcomes


async def override_warehouse(
    db: Database,
    actor: Actor,
    order_id: UUID,
    warehouse_id: UUID,
    reason: str,
    line_nos: list[int] | None = None,
) -> OrderAllocationView:
    """Move an order's unshipped units (all lines, or `line_nos`) to one warehouse, with a reason.

    Reservations elsewhere are released, the units are reserved at the chosen
    warehouse (all or nothing) and backorders of those lines are filled from it.
    Raises NotFound (order, warehouse), PermissionDenied (staff only),
    ValidationFailed (reason, unknown lines, inactive warehouse), Conflict (wrong
    status, not enough stock there).
    """
    _require_staff(actor, "override the warehouse")
    check = Collector()
    reason = check.text("reason", reason, max_length=500)
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        order = await orders.lock_order(session, actor, order_id)
        target = await session.scalar(
            select(Warehouse).where(Warehouse.tenant_id == order.tenant_id, Warehouse.id == warehouse_id)
        )
        if target is None:
            raise NotFound("Warehouse")
        if not target.active:
            raise ValidationFailed([FieldError("warehouse_id", f"warehouse {target.code} is not active")])
        if order.status not in OVERRIDABLE:
            raise Conflict(
                f"The order is {order.status.value.replace('_', ' ')}; the warehouse can be changed "
                "while it is allocated, backordered or partly shipped"
            )
        allocations = (
            await session.scalars(
                select(Allocation).where(
                    Allocation.tenant_id == order.tenant_id, Allocation.order_id == order.id
                )
            )
        ).all()
        backorders = (
            await session.scalars(
                select(Backorder).where(
                    Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id
                )
            )
        ).all()
        needs = await allocation.open_needs(session, order)
        known_lines = {a.line_no for a in allocations} | {n.line_no for n in needs}
        if line_nos:
            unknown = sorted(set(line_nos) - known_lines)
            if unknown:
                raise ValidationFailed(
                    [FieldError("line_nos", f"no open line {n} on this order") for n in unknown]
                )
        chosen = set(line_nos) if line_nos else known_lines
        releases: dict[tuple[UUID, str], int] = defaultdict(int)
        wanted: dict[str, int] = defaultdict(int)
        moved: dict[int, tuple[str, int]] = {}
        for a in allocations:
            if a.line_no in chosen and a.warehouse_id != target.id and a.reserved_qty:
                releases[(a.warehouse_id, a.sku)] += a.reserved_qty
                wanted[a.sku] += a.reserved_qty
                sku, qty = moved.get(a.line_no, (a.sku, 0))
                moved[a.line_no] = (sku, qty + a.reserved_qty)
        for n in needs:
            if n.line_no in chosen:
                wanted[n.sku] += n.quantity
                sku, qty = moved.get(n.line_no, (n.sku, 0))
                moved[n.line_no] = (sku, qty + n.quantity)
        if not moved:
            raise Conflict(f"Nothing to move: the chosen lines are already at {target.code} or shipped")
        operations = [(w, sku, "release", q) for (w, sku), q in releases.items()]
        operations += [(target.id, sku, "reserve", q) for sku, q in wanted.items()]
        short: list[str] = []
        for w, sku, op, q in sorted(operations, key=lambda o: (str(o[0]), o[1], o[2])):
            if op == "release":
                await ledger.release(
                    session,
                    actor,
                    order.tenant_id,
                    w,
                    sku,
                    q,
                    order_id=order.id,
                    reason=f"warehouse override: {reason}",
                )
            elif not await ledger.try_reserve(session, actor, order.tenant_id, w, sku, q, order_id=order.id):
                short.append(f"{q} × {sku}")
        if short:
            raise Conflict(f"{target.code} cannot take {', '.join(short)}: not enough available there")
        for a in allocations:
            if a.line_no in chosen and a.warehouse_id != target.id:
                a.reserved_qty = 0
        await session.flush()
        for line_no, (sku, qty) in sorted(moved.items()):
            await session.execute(
                pg_insert(Allocation)
                .values(
                    tenant_id=order.tenant_id,
                    order_id=order.id,
                    line_no=line_no,
                    warehouse_id=target.id,
                    sku=sku,
                    reserved_qty=qty,
                    shipped_qty=0,
                )
                .on_conflict_do_update(
                    index_elements=["tenant_id", "order_id", "line_no", "warehouse_id"],
                    set_={"reserved_qty": Allocation.reserved_qty + qty},
                )
            )
        for b in backorders:
            if b.line_no in chosen:
                await session.delete(b)
        await session.flush()
        changes = {
            "warehouse": [None, target.code],
            "reason": reason,
            "lines": [{"line_no": n, "sku": s, "quantity": q} for n, (s, q) in sorted(moved.items())],
        }
        append_event(
            session,
            order,
            actor,
            "warehouse_overridden",
            f"Warehouse overridden to {target.code}: {reason}",
            changes,
        )
        order.version += 1
        remaining = await session.scalar(
            select(exists().where(Backorder.tenant_id == order.tenant_id, Backorder.order_id == order.id))
        )
        if order.status is OrderStatus.BACKORDERED and not remaining:
            await orders.apply_action(
                session,
                actor,
                order,
                Action.ALLOCATE,
                summary=f"Allocated to {target.code} (override)",
                changes={"allocation": {"override": target.code}},
            )
        return await _allocation_view(session, order)


async def reallocate_waiting_backorders(db: Database, actor: Actor, limit: int = 200) -> int:
    """Give every waiting backorder another routing pass, most urgent and oldest first.

    The periodic sweep behind the in-transaction fill on arrival: it serves orders
    that were locked when their stock arrived, and stock that arrived at the same
    moment as the order was backordered. One transaction per order; orders locked
    by someone else are skipped until the next sweep. Returns orders that got stock.
    """
    async with db.transaction(actor.scope) as session:
        waiting = (
            await session.execute(
                select(Backorder.tenant_id, Backorder.order_id)
                .where(Backorder.tenant_id.in_(actor.tenant_ids))
                .group_by(Backorder.tenant_id, Backorder.order_id)
                .order_by(func.max(Backorder.urgency).desc(), func.min(Backorder.order_created_at))
                .limit(limit)
            )
        ).all()
    served = 0
    for tenant_id, order_id in waiting:
        async with db.transaction(actor.scope) as session:
            order = await session.scalar(
                select(Order)
                .where(Order.tenant_id == tenant_id, Order.id == order_id)
                .with_for_update(skip_locked=True)
            )
            if order is None:
                continue
            plan = await allocation.retry_backorders(session, allocation.system_actor_for(tenant_id), order)
            served += bool(plan and plan.picks)
    return served


async def upload_stock_csv(
    db: Database,
    actor: Actor,
    warehouse_id: UUID,
    text: str,
    *,
    event_id: str | None = None,
    reason: str | None = None,
) -> StockUpdateResult:
    """Apply a stock CSV: readable rows are applied, every other row is reported by line.

    A row the stock rules refuse (below zero, below what is reserved) is reported
    too and the other rows still apply. With `event_id`, a retried upload is applied
    once. Raises NotFound (warehouse), PermissionDenied, ValidationFailed (the file
    itself), Conflict (event id reused for another file).
    """
    from orderdesk.inventory import stock_csv
    from orderdesk.inventory.schemas import StockUpdateIn

    _require_manager(actor)
    await get_warehouse(db, actor, warehouse_id)  # an unknown or foreign warehouse first: 404, not 422
    rows, problems = stock_csv.parse(text)
    rejected = [{"line": p.line, "field": p.field, "message": p.message} for p in problems]
    file_hash = hashlib.sha256(f"{warehouse_id}\ncsv\n{reason}\n{text}".encode()).hexdigest()
    while rows:
        data = StockUpdateIn(
            event_id=event_id, reason=reason or "CSV upload", updates=[item for _, item in rows]
        )
        try:
            return await update_stock(
                db, actor, warehouse_id, data, fingerprint=file_hash, rejected=_sorted(rejected)
            )
        except ValidationFailed as exc:
            # "updates.<i>.<field>": report those rows, apply the rest.
            bad = {}
            for error in exc.errors:
                index, _, field = error.field.removeprefix("updates.").partition(".")
                bad[int(index)] = (field, error.message)
            rejected += [
                {"line": rows[i][0], "field": field, "message": message}
                for i, (field, message) in bad.items()
            ]
            rows = [row for i, row in enumerate(rows) if i not in bad]
    return StockUpdateResult(event_id=event_id, levels=[], rejected=_sorted(rejected))


def _sorted(rejected: list[dict]) -> list[dict]:
    return sorted(rejected, key=lambda r: (r["line"], r["field"]))
