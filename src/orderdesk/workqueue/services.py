"""The work queue: items opened by order events or by hand, "Get next", leases, SLA policies.

Every public function takes the acting `Actor`, runs in one transaction scoped to
the actor's tenants and raises domain errors: NotFound (also for other tenants'
items), PermissionDenied, Conflict, InvalidTransition, ValidationFailed.

Claims. `claim_next_work_item` picks and claims in one statement: the most urgent
open item the agent may take (their tenants, their skills), selected with
`FOR UPDATE SKIP LOCKED` in a sub-query, so concurrent callers never wait on each
other and never pick the same row. Each claim is a `work_claims` row; a partial
unique index allows one live claim per item, so a double claim cannot commit
even if the code were wrong. A claim is a lease (10 minutes, renewed while the
item's page is open); an expired lease puts the item back in the queue, done by
"Get next" (at most every 5 s per process) and by the worker's sweep, whichever
comes first. Get next and the holder's release run on the driver's connection
(`Database.driver_transaction`), the hot path measured by bench/claims.py.

SLA notices. The worker's sweep tells the agent holding an item when it is at
risk, and the client's leads (and the holder) when it breached; see `_NOTIFY_SLA`.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import AgentAssignment, StaffRole, User, UserKind, WebSession
from orderdesk.core.db import GENERIC_PLANS, Database, session_driver
from orderdesk.core.errors import (
    Conflict,
    FieldError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from orderdesk.core.ids import new_id
from orderdesk.orders.models import Order, Priority
from orderdesk.orders.services import decode_cursor, encode_cursor
from orderdesk.tenants.models import Tenant
from orderdesk.workqueue import floors, reactions
from orderdesk.workqueue.models import (
    ACTIVE_SQL,
    SlaPolicyRow,
    WorkClaim,
    WorkItem,
    WorkNotification,
    assignment_fits_sql,
)
from orderdesk.workqueue.policies import PolicyInvalid, SlaClock, SlaPolicy, default_policy, parse_policy
from orderdesk.workqueue.schemas import (
    AgentLoad,
    LeadBoard,
    QueueCount,
    TenantBoard,
    WorkItemCreate,
    WorkItemPage,
    WorkItemView,
    WorkNotificationView,
)
from orderdesk.workqueue.states import (
    ACTIVE,
    AGENT_OUTCOMES,
    CLOCK_PAUSED,
    WorkAction,
    WorkItemKind,
    WorkItemStatus,
    WorkOutcome,
    WorkTransitionRefused,
    next_work_status,
)

LEASE = dt.timedelta(minutes=10)
# A lead hands an item to someone who may not be looking yet: give them longer to open it.
REASSIGN_LEASE = dt.timedelta(hours=1)
MAX_SNOOZE = dt.timedelta(days=14)
# Items put back per statement by the lease/snooze sweep; the rest wait for the next pass.
SWEEP_BATCH = 500
ONLINE_WITHIN = dt.timedelta(minutes=5)
_POLICY_CACHE = "orderdesk.sla_policy_cache"

S = WorkItemStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _require_staff(actor: Actor) -> None:
    if actor.kind not in (ActorKind.STAFF, ActorKind.SYSTEM):
        raise PermissionDenied("The work queue is for operations staff")


def _is_lead(actor: Actor) -> bool:
    return actor.kind is ActorKind.SYSTEM or actor.staff_role in (StaffRole.LEAD, StaffRole.ADMIN)


def _require_lead(actor: Actor, what: str) -> None:
    _require_staff(actor)
    if not _is_lead(actor):
        raise PermissionDenied(f"Only team leads and administrators can {what}")


def _refuse(item: WorkItem, exc: WorkTransitionRefused) -> InvalidTransition:
    return InvalidTransition(
        item.status.value, exc.action.value, tuple(a.value for a in exc.allowed), detail=str(exc)
    )


def _transition(item: WorkItem, action: WorkAction) -> WorkItemStatus:
    try:
        return next_work_status(item.status, action)
    except WorkTransitionRefused as exc:
        raise _refuse(item, exc) from None


# ---------------------------------------------------------------- SLA policies


def _policy_from_row(row: SlaPolicyRow) -> SlaPolicy:
    return parse_policy(
        {
            "time_zone": row.time_zone,
            "business_hours": row.business_hours,
            "holidays": [d.isoformat() for d in row.holidays or []],
            "targets": row.targets,
            "at_risk_percent": row.at_risk_percent,
            "client_tier": row.client_tier,
            "stuck_after_hours": row.stuck_after_hours or {},
        }
    )


def remember_policy_in_session(
    session: AsyncSession, tenant_id: UUID, row: SlaPolicyRow | None, time_zone: str | None
) -> None:
    """Hand `policy_in_session` the tenant's policy row (None: it has none) and time zone that
    the caller read in a query of its own, so opening a work item later in this
    transaction needs no look-up of its own."""
    cache = session.info.setdefault(_POLICY_CACHE, {})
    cache[tenant_id] = _policy_from_row(row) if row is not None else default_policy(time_zone or "UTC")


async def policy_in_session(session: AsyncSession, tenant_id: UUID) -> SlaPolicy:
    """The tenant's SLA policy (or the defaults in its time zone), cached for the transaction."""
    cache = session.info.setdefault(_POLICY_CACHE, {})
    if tenant_id not in cache:
        # The policy and the tenant's time zone (the defaults' calendar) in one round trip.
        found = (
            await session.execute(
                select(SlaPolicyRow, Tenant.time_zone)
                .select_from(Tenant)
                .outerjoin(SlaPolicyRow, SlaPolicyRow.tenant_id == Tenant.id)
                .where(Tenant.id == tenant_id)
            )
        ).first()
        row, time_zone = found if found is not None else (None, None)
        if row is not None:
            cache[tenant_id] = _policy_from_row(row)
        else:
            cache[tenant_id] = default_policy(time_zone or "UTC")
    return cache[tenant_id]


def _clock(item: WorkItem) -> SlaClock:
    return SlaClock(item.sla_target_seconds, item.sla_consumed_seconds, item.sla_running_since)


def _set_clock(item: WorkItem, policy: SlaPolicy, clock: SlaClock) -> None:
    item.sla_target_seconds = clock.target_seconds
    item.sla_consumed_seconds = clock.consumed_seconds
    item.sla_running_since = clock.running_since
    item.due_at = clock.due_at(policy.calendar)
    item.at_risk_at = clock.at_risk_at(policy.calendar, policy.at_risk_fraction)


def _clock_values(policy: SlaPolicy, clock: SlaClock) -> dict[str, Any]:
    return {
        "sla_target_seconds": clock.target_seconds,
        "sla_consumed_seconds": clock.consumed_seconds,
        "sla_running_since": clock.running_since,
        "due_at": clock.due_at(policy.calendar),
        "at_risk_at": clock.at_risk_at(policy.calendar, policy.at_risk_fraction),
    }


async def get_sla_policy(db: Database, actor: Actor, tenant_id: UUID) -> SlaPolicy:
    """The tenant's SLA policy. Raises NotFound (tenant outside the actor's reach)."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        return await policy_in_session(session, tenant_id)


async def get_sla_policy_to_edit(db: Database, actor: Actor, tenant_id: UUID) -> SlaPolicy:
    """The tenant's SLA policy for the editor, which only those who may save it can open.

    Raises NotFound (tenant outside the actor's reach), PermissionDenied (leads and
    administrators only).
    """
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_lead(actor, "change SLA policies")
    return await get_sla_policy(db, actor, tenant_id)


async def set_sla_policy(
    db: Database, actor: Actor, tenant_id: UUID, document: dict, *, now: dt.datetime | None = None
) -> tuple[SlaPolicy, int]:
    """Store the tenant's SLA policy and recompute every active item's clock; returns (policy, count).

    The current running stretch of each clock is measured with the new hours; the
    business time banked before a pause stays as it was.

    Raises NotFound, PermissionDenied (leads and administrators only),
    ValidationFailed (every problem of the document).
    """
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_lead(actor, "change SLA policies")
    try:
        policy = parse_policy(document)
    except PolicyInvalid as exc:
        raise ValidationFailed(exc.errors, "The SLA policy is not valid") from None
    now = now or utcnow()
    stored = policy.document()
    values = {
        "time_zone": stored["time_zone"],
        "business_hours": stored["business_hours"],
        "holidays": sorted(policy.calendar.holidays),
        "targets": stored["targets"],
        "at_risk_percent": policy.at_risk_percent,
        "client_tier": policy.client_tier,
        "stuck_after_hours": stored["stuck_after_hours"],
        "updated_at": now,
        "updated_by": actor.display_name,
    }
    async with db.transaction(actor.scope) as session:
        await session.execute(
            pg_insert(SlaPolicyRow)
            .values(tenant_id=tenant_id, **values)
            .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
        )
        items = (
            await session.scalars(
                select(WorkItem)
                .where(WorkItem.tenant_id == tenant_id, WorkItem.status.in_(ACTIVE))
                .with_for_update()
            )
        ).all()
        for item in items:
            clock = SlaClock(
                policy.target_seconds(item.kind, item.priority),
                item.sla_consumed_seconds,
                item.sla_running_since,
            )
            _set_clock(item, policy, clock)
            item.client_tier = policy.client_tier
            item.updated_at = now
        session.info.pop(_POLICY_CACHE, None)
    return policy, len(items)


# ---------------------------------------------------------------- reading


def _sla_flags(values: Any, now: dt.datetime) -> tuple[bool, bool]:
    """(at risk, breached) of an item (an ORM row or a namespace of its columns) at `now`."""
    if values.status not in ACTIVE:
        return False, False
    if values.sla_running_since is None:
        return False, values.sla_consumed_seconds >= values.sla_target_seconds
    breached = values.due_at is not None and values.due_at <= now
    at_risk = not breached and values.at_risk_at is not None and values.at_risk_at <= now
    return at_risk, breached


def _view(
    item: WorkItem, now: dt.datetime, tenant_name: str = "", claimed_by_name: str | None = None
) -> WorkItemView:
    view = WorkItemView.model_validate(item)
    at_risk, breached = _sla_flags(item, now)
    return view.model_copy(
        update={
            "tenant_name": tenant_name,
            "claimed_by_name": claimed_by_name,
            "at_risk": at_risk,
            "breached": breached,
        }
    )


def _view_from_row(
    row: dict[str, Any], now: dt.datetime, tenant_name: str = "", claimed_by_name: str | None = None
) -> WorkItemView:
    """The view of a `work_items` row read as plain columns (a RETURNING of a hot path)."""
    at_risk, breached = _sla_flags(SimpleNamespace(**row), now)
    return WorkItemView.model_validate(
        {
            **row,
            "tenant_name": tenant_name,
            "claimed_by_name": claimed_by_name,
            "at_risk": at_risk,
            "breached": breached,
        }
    )


async def _views(session: AsyncSession, items: Sequence[WorkItem], now: dt.datetime) -> list[WorkItemView]:
    if not items:
        return []
    names = dict(
        (
            await session.execute(
                select(Tenant.id, Tenant.name).where(Tenant.id.in_({i.tenant_id for i in items}))
            )
        ).all()
    )
    holders = {i.claimed_by for i in items if i.claimed_by}
    people = {}
    if holders:
        people = dict(
            (await session.execute(select(User.id, User.display_name).where(User.id.in_(holders)))).all()
        )
    return [_view(i, now, names.get(i.tenant_id, ""), people.get(i.claimed_by)) for i in items]


async def _find_item(session: AsyncSession, actor: Actor, item_id: UUID, *, lock: bool = False) -> WorkItem:
    query = select(WorkItem).where(WorkItem.id == item_id, WorkItem.tenant_id.in_(actor.tenant_ids))
    if lock:
        query = query.with_for_update()
    item = await session.scalar(query)
    if item is None:
        raise NotFound("Work item")
    return item


async def get_work_item(
    db: Database, actor: Actor, item_id: UUID, *, now: dt.datetime | None = None
) -> WorkItemView:
    """One item of the actor's tenants. Raises NotFound, PermissionDenied (not staff)."""
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        item = await _find_item(session, actor, item_id)
        return (await _views(session, [item], now))[0]


async def list_my_work_items(
    db: Database, actor: Actor, *, now: dt.datetime | None = None
) -> list[WorkItemView]:
    """The items the actor holds now, oldest claim first. Raises PermissionDenied (not staff)."""
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        items = (
            await session.scalars(
                select(WorkItem)
                .where(
                    WorkItem.tenant_id.in_(actor.tenant_ids),
                    WorkItem.claimed_by == actor.id,
                    WorkItem.status == S.CLAIMED,
                )
                .order_by(WorkItem.claimed_at)
            )
        ).all()
        return await _views(session, items, now)


async def list_order_work_items(
    db: Database, actor: Actor, order_id: UUID, *, now: dt.datetime | None = None
) -> list[WorkItemView]:
    """Every item of one order, newest first. Raises PermissionDenied; unknown orders give []."""
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        items = (
            await session.scalars(
                select(WorkItem)
                .where(WorkItem.tenant_id.in_(actor.tenant_ids), WorkItem.order_id == order_id)
                .order_by(WorkItem.created_at.desc())
            )
        ).all()
        return await _views(session, items, now)


@dataclass(frozen=True)
class WorkItemFilters:
    """What `list_work_items` narrows by; every field is optional."""

    tenant_id: UUID | None = None
    statuses: tuple[WorkItemStatus, ...] = ()
    kinds: tuple[WorkItemKind, ...] = ()
    claimed_by: UUID | None = None
    order_id: UUID | None = None
    at_risk: bool | None = None
    breached: bool | None = None
    limit: int = 50
    cursor: str | None = None


async def list_work_items(
    db: Database, actor: Actor, filters: WorkItemFilters, *, now: dt.datetime | None = None
) -> WorkItemPage:
    """A page of the actor's tenants' items, newest first, by keyset (never OFFSET).

    `at_risk` and `breached` compare the running clock with now (paused clocks are
    breached when their banked time reached the target, and never at risk).
    Raises PermissionDenied (not staff), NotFound (tenant outside reach),
    ValidationFailed (limit, cursor).
    """
    _require_staff(actor)
    if not 1 <= filters.limit <= 200:
        raise ValidationFailed([FieldError("limit", "must be between 1 and 200")])
    now = now or utcnow()
    tenant_ids = actor.tenant_ids
    if filters.tenant_id is not None:
        if filters.tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenant_ids = frozenset({filters.tenant_id})
    query = select(WorkItem).where(WorkItem.tenant_id.in_(tenant_ids))
    if filters.statuses:
        query = query.where(WorkItem.status.in_(filters.statuses))
    if filters.kinds:
        query = query.where(WorkItem.kind.in_(filters.kinds))
    if filters.claimed_by is not None:
        query = query.where(WorkItem.claimed_by == filters.claimed_by, WorkItem.status == S.CLAIMED)
    if filters.order_id is not None:
        query = query.where(WorkItem.order_id == filters.order_id)
    running = WorkItem.sla_running_since.is_not(None)
    breached = and_(
        WorkItem.status.in_(ACTIVE),
        or_(
            and_(running, WorkItem.due_at <= now),
            and_(~running, WorkItem.sla_consumed_seconds >= WorkItem.sla_target_seconds),
        ),
    )
    at_risk = and_(WorkItem.status.in_(ACTIVE), running, WorkItem.at_risk_at <= now, WorkItem.due_at > now)
    if filters.breached is not None:
        query = query.where(breached if filters.breached else ~breached)
    if filters.at_risk is not None:
        query = query.where(at_risk if filters.at_risk else ~at_risk)
    if filters.cursor:
        created_at, item_id = decode_cursor(filters.cursor)
        query = query.where(func.row(WorkItem.created_at, WorkItem.id) < func.row(created_at, item_id))
    query = query.order_by(WorkItem.created_at.desc(), WorkItem.id.desc()).limit(filters.limit + 1)
    async with db.transaction(actor.scope) as session:
        rows = list((await session.scalars(query)).all())
        page, more = rows[: filters.limit], len(rows) > filters.limit
        items = await _views(session, page, now)
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return WorkItemPage(items=items, next_cursor=next_cursor)


# The agent (`:agent_id`) is assigned to the item's tenant with the skills the item needs:
# its kind (an empty list means every kind), its language and its channel when it names them.
_SKILLS_SQL = (
    "EXISTS (SELECT 1 FROM agent_assignments a"  # noqa: S608 (SQL of this module's own making, no input)
    " WHERE a.tenant_id = work_items.tenant_id AND a.user_id = :agent_id"
    f" AND {assignment_fits_sql('work_items')})"
)


def _skills_match(actor: Actor):
    """SQL for `_SKILLS_SQL`; administrators (and the system) may take anything."""
    if actor.kind is ActorKind.SYSTEM or actor.is_admin:
        return text("true")
    return text(_SKILLS_SQL).bindparams(agent_id=actor.id)


async def queue_counts(db: Database, actor: Actor, *, now: dt.datetime | None = None) -> list[QueueCount]:
    """What "Get next" can give the actor, per tenant and kind. Raises PermissionDenied (not staff)."""
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            select(
                WorkItem.tenant_id,
                Tenant.name,
                WorkItem.kind,
                func.count(),
                func.count().filter(and_(WorkItem.at_risk_at <= now, WorkItem.due_at > now)),
                func.count().filter(WorkItem.due_at <= now),
                func.min(WorkItem.created_at),
            )
            .join(Tenant, Tenant.id == WorkItem.tenant_id)
            .where(
                WorkItem.tenant_id.in_(actor.tenant_ids),
                WorkItem.status == S.OPEN,
                _skills_match(actor),
            )
            .group_by(WorkItem.tenant_id, Tenant.name, WorkItem.kind)
            .order_by(Tenant.name, WorkItem.kind)
        )
        return [
            QueueCount(
                tenant_id=t, tenant_name=n, kind=k.value, ready=c, at_risk=r, breached=b, oldest_created_at=o
            )
            for t, n, k, c, r, b, o in rows
        ]


# ---------------------------------------------------------------- creating


def _new_item(
    *,
    tenant_id: UUID,
    kind: str,
    cause: str,
    title: str,
    policy: SlaPolicy,
    now: dt.datetime,
    created_by: str,
    priority: Priority = Priority.NORMAL,
    order: Order | None = None,
    detail: str | None = None,
    language: str | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    clock = policy.start_clock(kind, priority, now)
    return {
        "tenant_id": tenant_id,
        "id": new_id(),
        "kind": kind,
        "status": S.OPEN,
        "title": title[:200],
        "detail": detail,
        "cause": cause,
        "order_id": order.id if order else None,
        "order_number": order.number if order else None,
        "language": language,
        "channel": channel,
        "priority": priority,
        "value_minor": order.total_minor if order else 0,
        "currency": order.currency if order else None,
        "client_tier": policy.client_tier,
        "created_by": created_by[:200],
        "created_at": now,
        "updated_at": now,
        **_clock_values(policy, clock),
    }


async def create_work_item(
    db: Database, actor: Actor, data: WorkItemCreate, *, now: dt.datetime | None = None
) -> WorkItemView:
    """Open an item by hand, optionally linked to an order of the same tenant.

    Raises PermissionDenied (not staff), NotFound (tenant or order outside reach),
    Conflict (that order already has an active item made by hand of this kind).
    """
    _require_staff(actor)
    if data.tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        order = None
        if data.order_number is not None:
            order = await session.scalar(
                select(Order).where(Order.tenant_id == data.tenant_id, Order.number == data.order_number)
            )
            if order is None:
                raise NotFound("Order")
        policy = await policy_in_session(session, data.tenant_id)
        values = _new_item(
            tenant_id=data.tenant_id,
            kind=data.kind,
            cause=f"manual:{data.kind.value}",
            title=data.title,
            policy=policy,
            now=now,
            created_by=actor.display_name,
            priority=data.priority or (order.priority if order else Priority.NORMAL),
            order=order,
            detail=data.detail,
            language=(data.language or "").lower() or None,
            channel=(data.channel or "").lower() or None,
        )
        try:
            async with session.begin_nested():
                await session.execute(pg_insert(WorkItem).values(values))
        except IntegrityError:
            raise Conflict(
                f"Order #{data.order_number} already has an open {data.kind.value.replace('_', ' ')} item"
            ) from None
        item = await session.get(WorkItem, (data.tenant_id, values["id"]))
        return (await _views(session, [item], now))[0]


# Opening is idempotent: one active item per order and cause.
_OPEN_ORDER_ITEMS = pg_insert(WorkItem.__table__).on_conflict_do_nothing(
    index_elements=["tenant_id", "order_id", "cause"],
    index_where=text(f"order_id IS NOT NULL AND {ACTIVE_SQL}"),
)


async def apply_order_reactions(
    session: AsyncSession,
    ops: Iterable[tuple[reactions.Reaction, Order, Actor]],
    now: dt.datetime | None = None,
) -> None:
    """Open, settle or cancel items for order events, inside the recording transaction.

    Opening is idempotent (one active item per order and cause). Settling finishes
    the items nobody holds and marks a held one so its agent closes it.
    """
    now = now or utcnow()
    await session.flush()
    pending: dict[tuple[UUID, UUID, str], dict[str, Any]] = {}

    async def insert_pending() -> None:
        if pending:
            # One statement for any number of rows, compiled once (not a VALUES list per size).
            await session.execute(_OPEN_ORDER_ITEMS, list(pending.values()))
            pending.clear()

    for reaction, order, actor in ops:
        if isinstance(reaction, reactions.OpenItem):
            policy = await policy_in_session(session, order.tenant_id)
            pending[(order.tenant_id, order.id, reaction.cause)] = _new_item(
                tenant_id=order.tenant_id,
                kind=reaction.kind,
                cause=reaction.cause,
                title=reaction.title,
                policy=policy,
                now=now,
                created_by=actor.display_name,
                priority=order.priority,
                order=order,
            )
            continue
        await insert_pending()
        key = and_(WorkItem.tenant_id == order.tenant_id, WorkItem.order_id == order.id)
        if isinstance(reaction, reactions.SettleCause):
            key = and_(key, WorkItem.cause == reaction.cause)
            await _finish_where(
                session,
                and_(key, WorkItem.status.in_(ACTIVE - {S.CLAIMED})),
                S.DONE,
                WorkOutcome.RESOLVED_ELSEWHERE,
                actor.display_name,
                now,
            )
            await session.execute(
                update(WorkItem)
                .where(key, WorkItem.status == S.CLAIMED, WorkItem.cause_resolved_at.is_(None))
                .values(cause_resolved_at=now, updated_at=now, version=WorkItem.version + 1)
                .execution_options(synchronize_session=False)
            )
        elif isinstance(reaction, reactions.CancelAll):
            await _finish_where(
                session,
                and_(key, WorkItem.status.in_(ACTIVE)),
                S.CANCELLED,
                reaction.outcome,
                actor.display_name,
                now,
            )
    await insert_pending()


# The items a batch of new orders opens, in one statement (see `open_items_for_new_orders`).
_ITEM_COLUMNS = (
    ("id", "uuid"), ("kind", "text"), ("status", "text"), ("title", "text"), ("detail", "text"),
    ("cause", "text"), ("order_id", "uuid"), ("order_number", "bigint"), ("language", "text"),
    ("channel", "text"), ("priority", "text"), ("value_minor", "bigint"), ("currency", "text"),
    ("client_tier", "smallint"), ("created_by", "text"), ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"), ("sla_target_seconds", "integer"), ("sla_consumed_seconds", "integer"),
    ("sla_running_since", "timestamptz"), ("due_at", "timestamptz"), ("at_risk_at", "timestamptz"),
)  # fmt: skip
_ENUM_OF_ITEM_COLUMN = {"kind": "work_item_kind", "status": "work_item_status", "priority": "order_priority"}
# Built from the constant column list above, nothing else.
_INSERT_ITEMS = (
    "INSERT INTO work_items (tenant_id, "  # noqa: S608
    + ", ".join(name for name, _ in _ITEM_COLUMNS)
    + ") SELECT $1, "
    + ", ".join(f"i.{name}::{_ENUM_OF_ITEM_COLUMN[name]}" if name in _ENUM_OF_ITEM_COLUMN else f"i.{name}"
                for name, _ in _ITEM_COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(_ITEM_COLUMNS, start=2))
    + ") AS i("
    + ", ".join(name for name, _ in _ITEM_COLUMNS)
    + f") ON CONFLICT (tenant_id, order_id, cause) WHERE order_id IS NOT NULL AND {ACTIVE_SQL} DO NOTHING"
)  # fmt: skip


async def open_items_for_new_orders(
    session: AsyncSession,
    tenant_id: UUID,
    actor: Actor,
    opened: Sequence[tuple[reactions.OpenItem, Any]],
    now: dt.datetime | None = None,
) -> None:
    """Open the items that reactions to a batch of new orders ask for, in one statement.

    Each item is the one `apply_order_reactions` opens for the same reaction (same SLA
    clock, same idempotence: one active item per order and cause). An order here needs
    `id`, `number`, `priority`, `total_minor` and `currency`.
    """
    if not opened:
        return
    now = now or utcnow()
    policy = await policy_in_session(session, tenant_id)
    # The clock depends only on the kind and priority (one `now` for the batch): one
    # template item each, copied for every order.
    templates: dict[tuple[str, Priority], dict[str, Any]] = {}
    columns: list[list] = [[] for _ in _ITEM_COLUMNS]
    for reaction, order in opened:
        template = templates.get((reaction.kind, order.priority))
        if template is None:
            template = templates[(reaction.kind, order.priority)] = _new_item(
                tenant_id=tenant_id,
                kind=reaction.kind,
                cause=reaction.cause,
                title="",
                policy=policy,
                now=now,
                created_by=actor.display_name,
                priority=order.priority,
            )
        item = {
            **template,
            "id": new_id(),
            "cause": reaction.cause,
            "title": reaction.title[:200],
            "order_id": order.id,
            "order_number": order.number,
            "value_minor": order.total_minor,
            "currency": order.currency,
        }
        for column, (name, _) in zip(columns, _ITEM_COLUMNS, strict=True):
            value = item[name]
            column.append(value.value if isinstance(value, enum.Enum) else value)
    driver = await session_driver(session)
    await driver.execute(_INSERT_ITEMS, tenant_id, *columns)


async def open_or_update_conversation_item(
    session: AsyncSession,
    *,
    tenant_id: UUID,
    conversation_id: UUID,
    cause: str,
    title: str,
    detail: str | None,
    order: Order | None,
    created_by: str,
    language: str | None = None,
    channel: str | None = None,
    now: dt.datetime | None = None,
    known_new: bool = False,
) -> tuple[WorkItem, bool]:
    """The active customer-message item of a conversation, opened or brought up to date.

    Runs inside the caller's transaction (the communication feature's, as each
    inbound message arrives). An item parked waiting on the customer goes back to
    the queue with its SLA clock running, because the customer has answered; an item
    an agent holds stays theirs, with the new title and detail. Returns the item and
    whether it was opened now. `known_new`: the caller knows the conversation has no
    item yet (it was just started), which saves the look-up. Raises nothing of its own.
    """
    now = now or utcnow()
    item = (
        None
        if known_new
        else await session.scalar(
            select(WorkItem)
            .where(
                WorkItem.tenant_id == tenant_id,
                WorkItem.conversation_id == conversation_id,
                WorkItem.kind == WorkItemKind.CUSTOMER_MESSAGE,
                WorkItem.status.in_(ACTIVE),
            )
            .order_by(WorkItem.created_at)
            .limit(1)
            .with_for_update()
        )
    )
    if item is not None:
        item.title = title[:200]
        item.detail = detail
        if item.status is S.WAITING_CUSTOMER:
            item.status = _transition(item, WorkAction.RESUME)
            policy = await policy_in_session(session, tenant_id)
            _set_clock(item, policy, _clock(item).resume(now))
        _touch(item, now)
        return item, False
    policy = await policy_in_session(session, tenant_id)
    values = _new_item(
        tenant_id=tenant_id,
        kind=WorkItemKind.CUSTOMER_MESSAGE,
        cause=cause,
        title=title,
        policy=policy,
        now=now,
        created_by=created_by,
        priority=order.priority if order else Priority.NORMAL,
        order=order,
        detail=detail,
        language=language,
        channel=channel,
    )
    values["conversation_id"] = conversation_id
    item = await session.scalar(pg_insert(WorkItem).values(values).returning(WorkItem))
    return item, True


async def _finish_where(
    session: AsyncSession, condition, status: WorkItemStatus, outcome: WorkOutcome, by: str, now: dt.datetime
) -> None:
    finished = (
        await session.execute(
            update(WorkItem)
            .where(condition)
            .values(
                status=status,
                outcome=outcome,
                finished_at=now,
                finished_by=by[:200],
                claimed_by=None,
                lease_expires_at=None,
                snoozed_until=None,
                updated_at=now,
                version=WorkItem.version + 1,
            )
            .returning(WorkItem.tenant_id, WorkItem.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    await _release_claims(session, finished, "cancelled" if status is S.CANCELLED else "done", now)


async def _release_claims(
    session: AsyncSession, items: Sequence[tuple[UUID, UUID]], reason: str, now: dt.datetime
) -> None:
    if not items:
        return
    for tenant_id in {t for t, _ in items}:
        await session.execute(
            update(WorkClaim)
            .where(
                WorkClaim.tenant_id == tenant_id,
                WorkClaim.work_item_id.in_([i for t, i in items if t == tenant_id]),
                WorkClaim.released_at.is_(None),
            )
            .values(released_at=now, release_reason=reason)
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------- get next


_RETURN_EXPIRED = text(
    """
WITH expired AS (
    SELECT tenant_id, id FROM work_items
    WHERE status = 'claimed' AND lease_expires_at <= :now AND tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
    ORDER BY lease_expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), returned AS (
    UPDATE work_items w SET
        status = CAST(CASE WHEN w.cause_resolved_at IS NULL THEN 'open' ELSE 'done' END AS work_item_status),
        outcome = CASE WHEN w.cause_resolved_at IS NULL THEN NULL
                  ELSE CAST('resolved_elsewhere' AS work_outcome) END,
        finished_at = CASE WHEN w.cause_resolved_at IS NULL THEN NULL ELSE CAST(:now AS timestamptz) END,
        finished_by = CASE WHEN w.cause_resolved_at IS NULL THEN NULL ELSE 'OrderDesk' END,
        claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL,
        updated_at = :now, version = w.version + 1
    FROM expired e
    WHERE w.tenant_id = e.tenant_id AND w.id = e.id
    RETURNING w.tenant_id, w.id
)
UPDATE work_claims c SET released_at = :now, release_reason = 'expired'
FROM returned r
WHERE c.tenant_id = r.tenant_id AND c.work_item_id = r.id AND c.released_at IS NULL
"""
)

_WAKE_SNOOZED = text(
    """
WITH due AS (
    SELECT tenant_id, id FROM work_items
    WHERE status = 'snoozed' AND snoozed_until <= :now AND tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
    ORDER BY snoozed_until
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE work_items w SET status = 'open', snoozed_until = NULL, updated_at = :now, version = w.version + 1
FROM due d
WHERE w.tenant_id = d.tenant_id AND w.id = d.id
"""
)

# Get next also puts back expired leases and wakes due snoozes of the agent's tenants,
# at most once per RETURN_DUE_EVERY per process and set of tenants (the worker's sweep
# does it every 15 s regardless). Doing it on every call cost more than the claim:
# PostgreSQL keeps planning that statement afresh, since its custom plan (nothing due)
# always looks cheaper than a generic one. A clock that jumps (tests pass `now`) runs it.
RETURN_DUE_EVERY = dt.timedelta(seconds=5)
_returned_due_at: dict[frozenset[UUID], dt.datetime] = {}


def _return_due_now(tenant_ids: frozenset[UUID], now: dt.datetime) -> bool:
    last = _returned_due_at.get(tenant_ids)
    if last is not None and abs(now - last) < RETURN_DUE_EVERY:
        return False
    if len(_returned_due_at) > 10_000:
        _returned_due_at.clear()
    _returned_due_at[tenant_ids] = now
    return True


# The item the agent already holds gets its lease renewed; else the most urgent open item
# they may take, in the documented priority order (policies.priority_key, matching
# ix_work_items_queue), is claimed and its claim recorded. Answers the whole row.
#
# The held item is looked for from the agent's last Get next claim on (less
# HELD_LOOK_BACK): that claim was made while they held nothing, so whatever they hold
# now came with it or after it. Only a lead's reassignment whose transaction began
# longer than HELD_LOOK_BACK before that claim and ended after it would be missed.
# Without the bound, the look-up walked every item the agent ever held while a long
# transaction kept their index entries (bench/claims.py, "+report").
HELD_LOOK_BACK = "2 seconds"
# Get next's statements look rows up by key, in index order, with LIMIT. A bitmap scan,
# which PostgreSQL picks when its statistics think a table small (a new desk, a table
# not analysed since it filled), reads every match first: for the agent's last claim,
# their whole claim history.
GET_NEXT_SETTINGS = GENERIC_PLANS | {"enable_bitmapscan": "off"}
_CLAIM = """
WITH held AS (
    SELECT tenant_id, id FROM work_items
    WHERE status = 'claimed' AND claimed_by = :agent_id AND tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
      AND claimed_at >= (
            SELECT coalesce(max(last.claimed_at), CAST('-infinity' AS timestamptz))
                   - CAST('{look_back}' AS interval)
            FROM (SELECT c.claimed_at FROM work_claims c WHERE c.agent_id = :agent_id AND c.via = 'get_next'
                  ORDER BY c.claimed_at DESC LIMIT 1) last)
    ORDER BY claimed_at
    LIMIT 1
), renewed AS (
    UPDATE work_items w SET lease_expires_at = :lease, updated_at = :now
    FROM held h
    WHERE w.tenant_id = h.tenant_id AND w.id = h.id
    RETURNING w.*
), candidate AS (
    SELECT work_items.tenant_id, work_items.id FROM work_items
    WHERE work_items.status = 'open'
      AND work_items.tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
      AND NOT EXISTS (SELECT 1 FROM held)
      AND {skills}
      AND {floor}
    ORDER BY work_items.due_at, work_items.priority DESC, work_items.value_minor DESC,
             work_items.client_tier, work_items.created_at, work_items.id
    LIMIT 1
    FOR UPDATE OF work_items SKIP LOCKED
), claimed AS (
    UPDATE work_items w SET
        status = 'claimed', claimed_by = :agent_id, claimed_at = :now, lease_expires_at = :lease,
        cause_resolved_at = NULL, updated_at = :now, version = w.version + 1
    FROM candidate c
    WHERE w.tenant_id = c.tenant_id AND w.id = c.id
    RETURNING w.*
), history AS (
    INSERT INTO work_claims (tenant_id, id, work_item_id, agent_id, claimed_at, via)
    SELECT tenant_id, :claim_id, id, :agent_id, :now, 'get_next' FROM claimed
)
SELECT answer.*, t.name AS tenant_name
FROM (SELECT * FROM claimed UNION ALL SELECT * FROM renewed) answer
JOIN tenants t ON t.id = answer.tenant_id
"""
# An agent's scan starts at the floor of their tenants (floors.py); an administrator's,
# who may take what no agent can, at the head of the queue.
_FROM_FLOOR = f"work_items.due_at >= {floors.LOWEST_FLOOR_SQL}"
_CLAIM_WITH_SKILLS = text(_CLAIM.format(skills=_SKILLS_SQL, floor=_FROM_FLOOR, look_back=HELD_LOOK_BACK))
_CLAIM_ANY = text(_CLAIM.format(skills="true", floor="true", look_back=HELD_LOOK_BACK))


# Get next and the holder's release run on the driver's connection (`Database.driver_transaction`):
# the same statements, with asyncpg's `$n` parameters.
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with each `:name` turned into `$n`, and the names in parameter order."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<![:\w]):([a-z_]+)", number, sql), tuple(names)


async def _fetchrow(driver: Any, statement: tuple[str, tuple[str, ...]], params: dict[str, Any]) -> Any:
    sql, names = statement
    return await driver.fetchrow(sql, *(params[name] for name in names))


def _tenant_uuids(tenant_ids: Iterable[UUID]) -> list[UUID]:
    return sorted(tenant_ids)


_CLAIM_WITH_SKILLS_DRIVER = _numbered(
    _CLAIM.format(skills=_SKILLS_SQL, floor=_FROM_FLOOR, look_back=HELD_LOOK_BACK)
)
_CLAIM_ANY_DRIVER = _numbered(_CLAIM.format(skills="true", floor="true", look_back=HELD_LOOK_BACK))
_RETURN_EXPIRED_DRIVER = _numbered(_RETURN_EXPIRED.text)
_WAKE_SNOOZED_DRIVER = _numbered(_WAKE_SNOOZED.text)


def _tenant_array(tenant_ids: Iterable[UUID]) -> list[str]:
    return sorted(str(t) for t in tenant_ids)


async def return_due_items(session: AsyncSession, tenant_ids: Iterable[UUID], now: dt.datetime) -> None:
    """Put back items whose lease expired and wake snoozed ones that are due (bounded, SKIP LOCKED)."""
    params = {"now": now, "tenant_ids": _tenant_array(tenant_ids), "batch": SWEEP_BATCH}
    await session.execute(_RETURN_EXPIRED, params)
    await session.execute(_WAKE_SNOOZED, params)


async def claim_next_work_item(
    db: Database, actor: Actor, *, now: dt.datetime | None = None
) -> WorkItemView | None:
    """Give the actor their next item: the one they already hold, else the most urgent they may take.

    One item at a time: an agent who still holds an item gets it back (its lease
    renewed) instead of a new one. Returns None when nothing is ready.

    Raises PermissionDenied (not staff), Conflict (a double claim was refused by
    the database, which the claim statement makes impossible in practice).
    """
    _require_staff(actor)
    if actor.kind is ActorKind.SYSTEM:
        raise PermissionDenied("Only a person can claim work")
    now = now or utcnow()
    tenant_ids = _tenant_uuids(actor.tenant_ids)
    # One Get next per agent at a time, so a double click cannot claim two items: the lock
    # is taken with the scope, and the claim statement after it runs on a new snapshot, so
    # it sees what a previous call of the same agent committed.
    async with db.driver_transaction(
        actor.scope, advisory_lock=f"work-agent:{actor.id}", extra_settings=GET_NEXT_SETTINGS
    ) as driver:
        if _return_due_now(actor.tenant_ids, now):
            due = {"now": now, "tenant_ids": tenant_ids, "batch": SWEEP_BATCH}
            await _fetchrow(driver, _RETURN_EXPIRED_DRIVER, due)
            await _fetchrow(driver, _WAKE_SNOOZED_DRIVER, due)
        claim = _CLAIM_ANY_DRIVER if actor.is_admin else _CLAIM_WITH_SKILLS_DRIVER
        params = {
            "tenant_ids": tenant_ids,
            "agent_id": actor.id,
            "now": now,
            "lease": now + LEASE,
            "claim_id": new_id(),
        }
        try:
            picked = await _fetchrow(driver, claim, params)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("That item was just claimed by someone else; press Get next again") from exc
    if due := floors.due_for_raise(actor.tenant_ids):
        await floors.raise_floors(db, due)
    if picked is None:
        return None
    row = dict(picked)
    return _view_from_row(row, now, row.pop("tenant_name"), actor.display_name)


async def renew_lease(
    db: Database, actor: Actor, item_id: UUID, *, now: dt.datetime | None = None
) -> WorkItemView:
    """Extend the actor's lease on an item they hold (the item page calls this while open).

    Raises NotFound, Conflict (the actor no longer holds it: expired and taken, done, reassigned).
    """
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        renewed = await session.scalar(
            update(WorkItem)
            .where(
                WorkItem.id == item_id,
                WorkItem.tenant_id.in_(actor.tenant_ids),
                WorkItem.claimed_by == actor.id,
                WorkItem.status == S.CLAIMED,
            )
            .values(lease_expires_at=now + LEASE)
            .returning(WorkItem.id)
            .execution_options(synchronize_session=False)
        )
        item = await _find_item(session, actor, item_id)
        if renewed is None:
            raise Conflict(_not_yours(item))
        return (await _views(session, [item], now))[0]


def _not_yours(item: WorkItem) -> str:
    if item.status is S.CLAIMED:
        return "Someone else holds this item now; press Get next for another"
    return f"You no longer hold this item: it is {item.status.value.replace('_', ' ')}"


def _require_holder(actor: Actor, item: WorkItem) -> None:
    """The holder may act on a claimed item; leads and administrators on any."""
    if _is_lead(actor):
        return
    if item.status is not S.CLAIMED or item.claimed_by != actor.id:
        raise Conflict(_not_yours(item))


async def _release(session: AsyncSession, item: WorkItem, reason: str, now: dt.datetime) -> None:
    await _release_claims(session, [(item.tenant_id, item.id)], reason, now)
    item.claimed_by = None
    item.claimed_at = None
    item.lease_expires_at = None


def _touch(item: WorkItem, now: dt.datetime) -> None:
    item.updated_at = now
    item.version += 1


# The holder finishing or handing back their item, in one round trip: the row changes only
# if the agent still holds it; otherwise the caller takes the general path, which says why.
#
# Both rows are found by the item's id. While a long transaction is open, the holder's index
# (`ix_work_items_claimed_by`) keeps an entry for every item the agent held since, and the
# open-claims index one for every claim of the tenant; PostgreSQL does not know that, and
# planned the item through the first (`claimed_by` compared by IS NOT DISTINCT FROM, which
# no index answers, prevents that) and the claim through the tenant alone, joined with the
# item afterwards (the id as a parameter makes it part of the index condition).
_RELEASE_HELD = text(
    """
WITH item AS (
    UPDATE work_items w SET
        status = CAST(:status AS work_item_status), outcome = CAST(:outcome AS work_outcome),
        outcome_note = :note, finished_at = :finished_at, finished_by = :finished_by,
        claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL, snoozed_until = NULL,
        updated_at = :now, version = w.version + 1
    WHERE w.id = :item_id AND w.tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
      AND w.status = 'claimed' AND w.claimed_by IS NOT DISTINCT FROM CAST(:agent_id AS uuid)
    RETURNING w.*
), released AS (
    UPDATE work_claims c SET released_at = :now, release_reason = :reason
    FROM item
    WHERE c.tenant_id = item.tenant_id AND c.work_item_id = CAST(:item_id AS uuid) AND c.released_at IS NULL
)
SELECT item.*, t.name AS tenant_name FROM item JOIN tenants t ON t.id = item.tenant_id
"""
)
_RELEASE_HELD_DRIVER = _numbered(_RELEASE_HELD.text)


async def _release_held(
    db: Database,
    actor: Actor,
    item_id: UUID,
    status: WorkItemStatus,
    reason: str,
    now: dt.datetime,
    *,
    outcome: WorkOutcome | None = None,
    note: str | None = None,
) -> WorkItemView | None:
    """Release an item the actor holds (the common case, fast); None, changing nothing, when
    they do not hold it (the caller's general path then says why, or lets a lead act)."""
    finished = status not in ACTIVE
    params = {
        "status": status.value,
        "outcome": outcome.value if outcome else None,
        "note": note,
        "finished_at": now if finished else None,
        "finished_by": actor.display_name[:200] if finished else None,
        "now": now,
        "item_id": item_id,
        "tenant_ids": _tenant_uuids(actor.tenant_ids),
        "agent_id": actor.id,
        "reason": reason,
    }
    async with db.driver_transaction(actor.scope, extra_settings=GENERIC_PLANS) as driver:
        picked = await _fetchrow(driver, _RELEASE_HELD_DRIVER, params)
    if picked is None:
        return None
    row = dict(picked)
    return _view_from_row(row, now, row.pop("tenant_name"))


async def hand_back_work_item(
    db: Database, actor: Actor, item_id: UUID, *, now: dt.datetime | None = None
) -> WorkItemView:
    """Put a held item back in the queue for anyone. Raises NotFound, Conflict, InvalidTransition."""
    _require_staff(actor)
    now = now or utcnow()
    if (fast := await _release_held(db, actor, item_id, S.OPEN, "hand_back", now)) is not None:
        return fast
    async with db.transaction(actor.scope) as session:
        item = await _find_item(session, actor, item_id, lock=True)
        _require_holder(actor, item)
        item.status = _transition(item, WorkAction.HAND_BACK)
        await _release(session, item, "hand_back", now)
        _touch(item, now)
        return (await _views(session, [item], now))[0]


async def snooze_work_item(
    db: Database, actor: Actor, item_id: UUID, until: dt.datetime, *, now: dt.datetime | None = None
) -> WorkItemView:
    """Set a held item aside until `until` (the SLA clock keeps running); then anyone may take it.

    Raises NotFound, Conflict, InvalidTransition, ValidationFailed (not in the future or > 14 days).
    """
    _require_staff(actor)
    now = now or utcnow()
    if until.tzinfo is None:
        raise ValidationFailed([FieldError("until", "needs a time zone")])
    if not now < until <= now + MAX_SNOOZE:
        raise ValidationFailed([FieldError("until", "must be in the future and at most 14 days away")])
    async with db.transaction(actor.scope) as session:
        item = await _find_item(session, actor, item_id, lock=True)
        _require_holder(actor, item)
        item.status = _transition(item, WorkAction.SNOOZE)
        item.snoozed_until = until
        await _release(session, item, "snooze", now)
        _touch(item, now)
        return (await _views(session, [item], now))[0]


async def wait_on(
    db: Database, actor: Actor, item_id: UUID, party: str, *, now: dt.datetime | None = None
) -> WorkItemView:
    """Park a held item until the customer or the client answers; its SLA clock pauses.

    Raises NotFound, Conflict, InvalidTransition, ValidationFailed (party not customer/client).
    """
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        item = await park_waiting_in_session(session, actor, item_id, party, now)
        return (await _views(session, [item], now))[0]


async def park_waiting_in_session(
    session: AsyncSession, actor: Actor, item_id: UUID, party: str, now: dt.datetime
) -> WorkItem:
    """`wait_on` inside the caller's transaction (e.g. with the question put to the client).

    Raises NotFound, Conflict, InvalidTransition, ValidationFailed.
    """
    actions = {"customer": WorkAction.WAIT_CUSTOMER, "client": WorkAction.WAIT_CLIENT}
    item = await _find_item(session, actor, item_id, lock=True)
    if party not in actions:
        raise ValidationFailed([FieldError("party", "must be customer or client")])
    _require_holder(actor, item)
    item.status = _transition(item, actions[party])
    policy = await policy_in_session(session, item.tenant_id)
    _set_clock(item, policy, _clock(item).pause(policy.calendar, now))
    await _release(session, item, "wait", now)
    _touch(item, now)
    return item


async def resume_work_item(
    db: Database, actor: Actor, item_id: UUID, *, now: dt.datetime | None = None
) -> WorkItemView:
    """The awaited answer came: back to the queue, the SLA clock running again.

    Raises NotFound, InvalidTransition (not waiting), PermissionDenied (not staff).
    """
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        item = await resume_in_session(session, actor, item_id, now)
        return (await _views(session, [item], now))[0]


async def resume_in_session(session: AsyncSession, actor: Actor, item_id: UUID, now: dt.datetime) -> WorkItem:
    """`resume_work_item` inside the caller's transaction, for whoever gave the awaited answer.

    Raises NotFound, InvalidTransition (not waiting).
    """
    item = await _find_item(session, actor, item_id, lock=True)
    item.status = _transition(item, WorkAction.RESUME)
    policy = await policy_in_session(session, item.tenant_id)
    _set_clock(item, policy, _clock(item).resume(now))
    _touch(item, now)
    return item


async def complete_work_item(
    db: Database,
    actor: Actor,
    item_id: UUID,
    outcome: WorkOutcome,
    note: str | None = None,
    *,
    now: dt.datetime | None = None,
) -> WorkItemView:
    """Mark an item done with an outcome (leads may also withdraw one).

    Raises NotFound, Conflict (someone else holds it), InvalidTransition (already
    finished), ValidationFailed (an outcome agents cannot choose, a note over 500).
    """
    _require_staff(actor)
    allowed = AGENT_OUTCOMES + ((WorkOutcome.WITHDRAWN,) if _is_lead(actor) else ())
    if outcome not in allowed:
        raise ValidationFailed(
            [FieldError("outcome", f"must be one of: {', '.join(o.value for o in allowed)}")]
        )
    if note is not None and len(note) > 500:
        raise ValidationFailed([FieldError("note", "must be at most 500 characters")])
    now = now or utcnow()
    action = WorkAction.CANCEL if outcome is WorkOutcome.WITHDRAWN else WorkAction.COMPLETE
    note = (note or "").strip() or None
    finished = S.DONE if action is WorkAction.COMPLETE else S.CANCELLED
    reason = "done" if action is WorkAction.COMPLETE else "cancelled"
    fast = await _release_held(db, actor, item_id, finished, reason, now, outcome=outcome, note=note)
    if fast is not None:
        return fast
    async with db.transaction(actor.scope) as session:
        item = await _find_item(session, actor, item_id, lock=True)
        if item.status in ACTIVE:
            _require_holder(actor, item)
        item.status = _transition(item, action)
        item.outcome = outcome
        item.outcome_note = note
        item.finished_at = now
        item.finished_by = actor.display_name
        item.snoozed_until = None
        await _release(session, item, "done" if action is WorkAction.COMPLETE else "cancelled", now)
        _touch(item, now)
        return (await _views(session, [item], now))[0]


async def reassign_work_item(
    db: Database, actor: Actor, item_id: UUID, agent_id: UUID | None, *, now: dt.datetime | None = None
) -> WorkItemView:
    """A lead puts an agent on an item (open, claimed or snoozed), with a one-hour lease.

    Raises PermissionDenied (not a lead), NotFound, InvalidTransition (finished or
    waiting), ValidationFailed (the agent is not assigned to the item's client).
    """
    _require_lead(actor, "reassign work")
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        item = await _find_item(session, actor, item_id, lock=True)
        if agent_id is None:
            raise ValidationFailed([FieldError("agent_id", "choose an agent")])
        assigned = await session.scalar(
            select(User.id)
            .join(AgentAssignment, AgentAssignment.user_id == User.id)
            .where(
                AgentAssignment.tenant_id == item.tenant_id,
                User.id == agent_id,
                User.is_active,
                User.kind == UserKind.STAFF,
            )
        )
        if assigned is None:
            raise ValidationFailed([FieldError("agent_id", "is not an active agent of this client")])
        item.status = _transition(item, WorkAction.REASSIGN)
        await _release(session, item, "reassigned", now)
        await session.flush()
        session.add(
            WorkClaim(
                tenant_id=item.tenant_id,
                id=new_id(),
                work_item_id=item.id,
                agent_id=agent_id,
                claimed_at=now,
                via="reassign",
            )
        )
        item.claimed_by = agent_id
        item.claimed_at = now
        item.lease_expires_at = now + REASSIGN_LEASE
        item.snoozed_until = None
        _touch(item, now)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict("The item changed hands at the same moment; reload and try again") from exc
        return (await _views(session, [item], now))[0]


async def assignable_agents(db: Database, actor: Actor, tenant_id: UUID) -> list[tuple[UUID, str]]:
    """Active staff assigned to the tenant, by name: whom a lead may put on its items.

    Raises NotFound (tenant outside reach), PermissionDenied (not a lead).
    """
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_lead(actor, "reassign work")
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            select(User.id, User.display_name)
            .join(AgentAssignment, AgentAssignment.user_id == User.id)
            .where(AgentAssignment.tenant_id == tenant_id, User.is_active, User.kind == UserKind.STAFF)
            .order_by(User.display_name)
        )
        return [(r[0], r[1]) for r in rows]


# ---------------------------------------------------------------- lead board and sweeps


async def lead_board(db: Database, actor: Actor, *, now: dt.datetime | None = None) -> LeadBoard:
    """Queue depth and SLA risk per tenant, who is on what, and the most urgent items.

    Raises PermissionDenied (not a lead or administrator).
    """
    _require_lead(actor, "see the team board")
    now = now or utcnow()
    tenants = actor.tenant_ids
    async with db.transaction(actor.scope) as session:
        active = and_(WorkItem.tenant_id.in_(tenants), WorkItem.status.in_(ACTIVE))
        running = WorkItem.sla_running_since.is_not(None)
        per_tenant = (
            await session.execute(
                select(
                    WorkItem.tenant_id,
                    func.count().filter(WorkItem.status == S.OPEN),
                    func.count().filter(WorkItem.status == S.CLAIMED),
                    func.count().filter(WorkItem.status == S.SNOOZED),
                    func.count().filter(WorkItem.status.in_(CLOCK_PAUSED)),
                    func.count().filter(running, WorkItem.at_risk_at <= now, WorkItem.due_at > now),
                    func.count().filter(
                        or_(
                            and_(running, WorkItem.due_at <= now),
                            and_(~running, WorkItem.sla_consumed_seconds >= WorkItem.sla_target_seconds),
                        )
                    ),
                    func.min(WorkItem.created_at).filter(WorkItem.status == S.OPEN),
                )
                .where(active)
                .group_by(WorkItem.tenant_id)
            )
        ).all()
        kinds = (
            await session.execute(
                select(WorkItem.tenant_id, WorkItem.kind, func.count())
                .where(WorkItem.tenant_id.in_(tenants), WorkItem.status == S.OPEN)
                .group_by(WorkItem.tenant_id, WorkItem.kind)
            )
        ).all()
        names = dict(
            (await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenants)))).all()
        )
        by_kind: dict[UUID, dict[str, int]] = {}
        for tenant_id, kind, count in kinds:
            by_kind.setdefault(tenant_id, {})[kind.value] = count
        stats = {row[0]: row for row in per_tenant}
        boards = []
        for tenant_id in sorted(tenants, key=lambda t: names.get(t, "")):
            _, open_, claimed, snoozed, waiting, at_risk, breached, oldest = stats.get(
                tenant_id, (tenant_id, 0, 0, 0, 0, 0, 0, None)
            )
            boards.append(
                TenantBoard(
                    tenant_id=tenant_id,
                    tenant_name=names.get(tenant_id, ""),
                    open=open_,
                    claimed=claimed,
                    snoozed=snoozed,
                    waiting=waiting,
                    at_risk=at_risk,
                    breached=breached,
                    oldest_created_at=oldest,
                    by_kind=by_kind.get(tenant_id, {}),
                )
            )
        # People assigned to these tenants, with what they hold and whether they are around.
        people = (
            await session.execute(
                select(User.id, User.display_name, User.staff_role)
                .join(AgentAssignment, AgentAssignment.user_id == User.id)
                .where(AgentAssignment.tenant_id.in_(tenants), User.is_active)
                .distinct()
                .order_by(User.display_name)
            )
        ).all()
        seen = (
            dict(
                (
                    await session.execute(
                        select(WebSession.user_id, func.max(WebSession.last_seen_at))
                        .where(WebSession.user_id.in_([p.id for p in people]))
                        .group_by(WebSession.user_id)
                    )
                ).all()
            )
            if people
            else {}
        )
        held = (
            await session.scalars(
                select(WorkItem)
                .where(WorkItem.tenant_id.in_(tenants), WorkItem.status == S.CLAIMED)
                .order_by(WorkItem.claimed_at)
            )
        ).all()
        held_views = await _views(session, held, now)
        agents = [
            AgentLoad(
                agent_id=p.id,
                name=p.display_name,
                role=p.staff_role.value if p.staff_role else "",
                last_seen_at=seen.get(p.id),
                online=bool(seen.get(p.id) and now - seen[p.id] <= ONLINE_WITHIN),
                claimed=[v for v in held_views if v.claimed_by == p.id],
            )
            for p in people
        ]
        urgent_items = (
            await session.scalars(
                select(WorkItem)
                .where(active, WorkItem.status.in_((S.OPEN, S.CLAIMED, S.SNOOZED)))
                .order_by(
                    WorkItem.due_at,
                    WorkItem.priority.desc(),
                    WorkItem.value_minor.desc(),
                    WorkItem.client_tier,
                    WorkItem.created_at,
                    WorkItem.id,
                )
                .limit(15)
            )
        ).all()
        return LeadBoard(
            generated_at=now,
            tenants=boards,
            agents=agents,
            urgent=await _views(session, urgent_items, now),
        )


async def sweep_work_queue(
    db: Database, scope_tenants: frozenset[UUID], *, now: dt.datetime | None = None
) -> int:
    """Worker sweep: return expired leases, wake snoozed items, mark new breaches escalated.

    Returns how many items were newly escalated. Safe to run concurrently and repeatedly.
    """
    from orderdesk.core.tenancy import Scope

    now = now or utcnow()
    if not scope_tenants:
        return 0
    async with db.transaction(Scope(tenant_ids=scope_tenants)) as session:
        await return_due_items(session, scope_tenants, now)
        escalated = await session.execute(
            update(WorkItem)
            .where(
                WorkItem.tenant_id.in_(scope_tenants),
                WorkItem.status.in_((S.OPEN, S.CLAIMED, S.SNOOZED)),
                WorkItem.due_at <= now,
                WorkItem.escalated_at.is_(None),
            )
            .values(escalated_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.execute(_NOTIFY_SLA, {"now": now, "tenant_ids": _tenant_array(scope_tenants)})
        return escalated.rowcount


# SLA notices, written by the sweep. Items whose clock runs (open, claimed, snoozed) and
# that reached their at-risk time: the agent holding one is told it is at risk (or has
# breached); once breached, the client's leads and administrators are told too. The
# unique index (item, kind, person, due time) makes a repeated or concurrent sweep a
# no-op, and a new due time (a changed policy, a resumed clock) a new notice.
_NOTIFY_SLA = text(
    """
WITH risky AS (
    SELECT tenant_id, id, title, due_at, status, claimed_by,
           CASE WHEN due_at <= :now THEN 'breached' ELSE 'at_risk' END AS kind
    FROM work_items
    WHERE tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
      AND status IN ('open', 'claimed', 'snoozed')
      AND sla_running_since IS NOT NULL
      AND at_risk_at <= :now
), recipients AS (
    SELECT tenant_id, id, title, due_at, kind, claimed_by AS recipient_id
    FROM risky WHERE status = 'claimed' AND claimed_by IS NOT NULL
    UNION
    SELECT r.tenant_id, r.id, r.title, r.due_at, r.kind, u.id
    FROM risky r
    JOIN agent_assignments a ON a.tenant_id = r.tenant_id
    JOIN users u ON u.id = a.user_id
    WHERE r.kind = 'breached' AND u.is_active AND u.kind = 'staff' AND u.staff_role IN ('lead', 'admin')
)
INSERT INTO work_notifications (tenant_id, id, work_item_id, recipient_id, kind, due_at, title, created_at)
SELECT tenant_id, gen_random_uuid(), id, recipient_id, kind, due_at, title, :now FROM recipients
ON CONFLICT DO NOTHING
"""
)


async def list_my_notifications(
    db: Database, actor: Actor, *, unread_only: bool = True, limit: int = 50
) -> list[WorkNotificationView]:
    """The actor's SLA notices in their tenants, newest first. Raises PermissionDenied (not staff)."""
    _require_staff(actor)
    async with db.transaction(actor.scope) as session:
        query = (
            select(WorkNotification, Tenant.name)
            .join(Tenant, Tenant.id == WorkNotification.tenant_id)
            .where(
                WorkNotification.tenant_id.in_(actor.tenant_ids),
                WorkNotification.recipient_id == actor.id,
            )
            .order_by(WorkNotification.created_at.desc(), WorkNotification.id)
            .limit(limit)
        )
        if unread_only:
            query = query.where(WorkNotification.read_at.is_(None))
        rows = (await session.execute(query)).all()
        return [
            WorkNotificationView.model_validate(n).model_copy(update={"tenant_name": name})
            for n, name in rows
        ]


async def mark_notification_read(
    db: Database, actor: Actor, notification_id: UUID, *, now: dt.datetime | None = None
) -> WorkNotificationView:
    """Mark one of the actor's notices read (again is harmless).

    Raises NotFound (not theirs, another tenant's, or missing), PermissionDenied (not staff).
    """
    _require_staff(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        row = (
            await session.execute(
                select(WorkNotification, Tenant.name)
                .join(Tenant, Tenant.id == WorkNotification.tenant_id)
                .where(
                    WorkNotification.id == notification_id,
                    WorkNotification.tenant_id.in_(actor.tenant_ids),
                    WorkNotification.recipient_id == actor.id,
                )
                .with_for_update(of=WorkNotification)
            )
        ).first()
        if row is None:
            raise NotFound("Notification")
        notification, name = row
        if notification.read_at is None:
            notification.read_at = now
        return WorkNotificationView.model_validate(notification).model_copy(update={"tenant_name": name})


def priority_order_columns():
    """The claim order as SQLAlchemy columns (for tests and reports)."""
    return (
        WorkItem.due_at,
        WorkItem.priority.desc(),
        WorkItem.value_minor.desc(),
        WorkItem.client_tier,
        WorkItem.created_at,
        WorkItem.id,
    )
