"""Order capture, lookup, listing and lifecycle actions.

Every function takes the acting `Actor`, works inside one transaction scoped to
the actor's tenants, and raises domain errors: NotFound (also for other tenants'
orders), ValidationFailed, Conflict, InvalidTransition, PermissionDenied.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import bindparam, exists, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core import events
from orderdesk.core.db import Database, session_driver
from orderdesk.core.errors import (
    Conflict,
    FieldError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from orderdesk.core.ids import new_id
from orderdesk.orders import states, verification
from orderdesk.orders.intake import CleanOrder, clean_order, unknown_sku_errors
from orderdesk.orders.models import (
    CatalogItem,
    Channel,
    CheckResolution,
    CheckResult,
    IdempotencyKey,
    Order,
    OrderCounter,
    OrderEvent,
    OrderHold,
    OrderLine,
    PaymentStatus,
    Priority,
    VerificationCheck,
)
from orderdesk.orders.schemas import (
    CheckView,
    EventView,
    HoldView,
    LineView,
    OrderCreate,
    OrderPage,
    OrderSummary,
    OrderView,
)
from orderdesk.orders.states import Action, HoldReason, OrderStatus
from orderdesk.orders.timeline import CapturedEvent, CapturedOrder, OrdersCaptured, append_event
from orderdesk.tenants.models import Tenant

# Numbers start here so that they look like order numbers, not row counts.
FIRST_ORDER_NUMBER = 1001
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_RETENTION = dt.timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class CaptureResult:
    status_code: int  # 201 created, 200 an existing order (same external_ref or replay)
    body: dict  # the OrderView as JSON, exactly what the first request answered
    created: bool
    replayed: bool = False


def resolve_tenant(actor: Actor, requested: UUID | None) -> UUID:
    """The tenant an order is for. Raises ValidationFailed, NotFound (foreign tenant)."""
    if actor.single_tenant_id is not None:
        if requested is not None and requested != actor.single_tenant_id:
            raise NotFound("Tenant")
        return actor.single_tenant_id
    if requested is None:
        if len(actor.tenant_ids) == 1:
            return next(iter(actor.tenant_ids))
        raise ValidationFailed([FieldError("tenant_id", "is required: you work for several tenants")])
    if requested not in actor.tenant_ids:
        raise NotFound("Tenant")
    return requested


def request_fingerprint(tenant_id: UUID, data: OrderCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{tenant_id}\n{canonical}".encode()).hexdigest()


def _check_idempotency_key(key: str) -> None:
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationFailed(
            [FieldError("Idempotency-Key", f"must be 1-{IDEMPOTENCY_KEY_MAX} printable characters")]
        )


# ---------------------------------------------------------------- capture

# The hot path's writes as Core statements on the tables (the same SQL as through the
# mapped classes, without the ORM's bulk-statement bookkeeping on every request).
_idempotency_keys = IdempotencyKey.__table__
_CLAIM_IDEMPOTENCY_KEY = (
    pg_insert(_idempotency_keys)
    .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    .returning(_idempotency_keys.c.key)
)
_STORE_RESPONSE = (
    update(_idempotency_keys)
    .where(
        _idempotency_keys.c.tenant_id == bindparam("stored_tenant_id"),
        _idempotency_keys.c.key == bindparam("stored_key"),
    )
    .values(response_status=bindparam("response_status"), response_body=bindparam("response_body"))
)
_ORDER_BY_REF = select(Order).where(
    Order.tenant_id == bindparam("tenant_id"), Order.external_ref == bindparam("external_ref")
)
# The tenant's settings and whether it keeps a catalog, in one round trip.
_SETTINGS_AND_CATALOG = select(
    select(Tenant.settings).where(Tenant.id == bindparam("tenant_id")).scalar_subquery(),
    exists().where(CatalogItem.tenant_id == bindparam("tenant_id")),
)
# The duplicate-order check's candidates, newest first.
_RECENT_SIMILAR_ORDERS = (
    select(Order.number)
    .where(
        Order.tenant_id == bindparam("tenant_id"),
        Order.customer_email == bindparam("email"),
        Order.lines_fingerprint == bindparam("fingerprint"),
        Order.created_at >= bindparam("since"),
    )
    .order_by(Order.created_at.desc())
    .limit(5)
)
_LOCK_REFERENCE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_order_counters = OrderCounter.__table__
_NEXT_NUMBER = (
    pg_insert(_order_counters)
    .on_conflict_do_update(
        index_elements=["tenant_id"], set_={"last_number": _order_counters.c.last_number + 1}
    )
    .returning(_order_counters.c.last_number)
)


async def capture_order(
    db: Database,
    actor: Actor,
    data: OrderCreate,
    *,
    channel: Channel,
    idempotency_key: str | None = None,
) -> CaptureResult:
    """Validate, number, store and verify a new order, in one transaction.

    With an `idempotency_key`, a repeat of the same request answers exactly as the
    first did; the same key with a different body raises Conflict. An order whose
    `external_ref` already exists is returned as it is (200), never duplicated.

    Raises ValidationFailed (every problem listed), NotFound (tenant outside the
    actor's reach), Conflict (key reused with another body).
    """
    if actor.kind is ActorKind.CLIENT and actor.client_role is None:
        raise PermissionDenied("Only client users with a role can create orders")
    tenant_id = resolve_tenant(actor, data.tenant_id)
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
    clean = clean_order(data)
    fingerprint = request_fingerprint(tenant_id, data)

    async with db.transaction(actor.scope) as session:
        if idempotency_key is not None:
            replay = await _claim_idempotency_key(session, tenant_id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        result = await _capture_in_transaction(session, actor, tenant_id, clean, channel)
        if idempotency_key is not None:
            await session.execute(
                _STORE_RESPONSE,
                {
                    "stored_tenant_id": tenant_id,
                    "stored_key": idempotency_key,
                    "response_status": result.status_code,
                    "response_body": result.body,
                },
            )
        return result


async def _claim_idempotency_key(
    session: AsyncSession, tenant_id: UUID, key: str, fingerprint: str
) -> CaptureResult | None:
    """Insert the key, or return the stored answer of the request that holds it.

    A concurrent request with the same key waits on the unique index until the
    first commits, then finds its answer here: two requests, one order.
    """
    claimed = await session.scalar(
        _CLAIM_IDEMPOTENCY_KEY,
        {
            "tenant_id": tenant_id,
            "key": key,
            "request_hash": fingerprint,
            "response_status": 0,
            "response_body": {},
        },
    )
    if claimed is not None:
        return None
    stored = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key)
    )
    if stored.request_hash != fingerprint:
        raise Conflict("This Idempotency-Key was already used with a different request body; use a new key")
    return CaptureResult(stored.response_status, stored.response_body, created=False, replayed=True)


async def _capture_in_transaction(
    session: AsyncSession, actor: Actor, tenant_id: UUID, clean: CleanOrder, channel: Channel
) -> CaptureResult:
    external_ref = clean.source.external_ref
    if external_ref:
        # Serialises creators of the same reference; the unique index is the backstop.
        await session.execute(_LOCK_REFERENCE, {"key": f"order-ref:{tenant_id}:{external_ref}"})
        existing = await session.scalar(_ORDER_BY_REF, {"tenant_id": tenant_id, "external_ref": external_ref})
        if existing is not None:
            view = await _load_view(session, existing)
            return CaptureResult(200, view.model_dump(mode="json"), created=False)

    policy = await _policy_checking_catalog(session, tenant_id, clean)
    number = await session.scalar(_NEXT_NUMBER, {"tenant_id": tenant_id, "last_number": FIRST_ORDER_NUMBER})
    duplicates = await _recent_duplicates(session, tenant_id, clean, policy)
    outcomes = verification.run_checks(clean, policy, duplicates)
    now = dt.datetime.now(dt.UTC)
    source = clean.source
    order = Order(
        tenant_id=tenant_id,
        id=new_id(),
        number=number,
        external_ref=source.external_ref or None,
        channel=channel,
        status=OrderStatus.CAPTURED,
        payment_status=source.payment_status,
        priority=source.priority,
        customer_name=clean.customer_name,
        customer_email=clean.customer_email,
        customer_phone=clean.customer_phone,
        shipping_address=clean.shipping_address,
        billing_address=clean.billing_address,
        currency=clean.currency,
        subtotal_minor=clean.subtotal_minor,
        tax_minor=clean.tax_minor,
        shipping_minor=source.shipping_minor,
        discount_minor=source.discount_minor,
        total_minor=clean.total_minor,
        ship_by=source.ship_by,
        deliver_by=source.deliver_by,
        tags=list(clean.tags),
        notes=source.notes,
        lines_fingerprint=clean.lines_fingerprint,
        created_at=now,
        updated_at=now,
        version=1,
        last_event_seq=0,
    )
    session.add(order)
    # The timeline is written before the first flush, so the order row is inserted once,
    # in its final status; each event still records the status it saw (its snapshot).
    for step in capture_timeline(number, channel, clean.total_minor, outcomes, policy):
        order.status = step.status
        append_event(session, order, actor, step.kind, step.summary, step.changes, channel=step.channel)
    await session.flush()  # the order, then its events (foreign-key order)
    lines = [
        {
            "tenant_id": tenant_id,
            "order_id": order.id,
            "line_no": line.line_no,
            "sku": line.sku,
            "description": line.description,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
            "tax_minor": line.tax_minor,
            "total_minor": line.total_minor,
        }
        for line in clean.lines
    ]
    checks = [
        {
            "tenant_id": tenant_id,
            "order_id": order.id,
            "check": o.check,
            "result": o.result,
            "detail": o.detail,
            "checked_at": now,
        }
        for o in outcomes
    ]
    # Plain Core inserts (the tables, not the mapped classes): no ORM bulk bookkeeping.
    await session.execute(insert(OrderLine.__table__), lines)
    await session.execute(insert(VerificationCheck.__table__), checks)
    events_written = order.last_event_seq
    await events.dispatch(session)
    if order.last_event_seq != events_written:
        # A reaction (allocation after automatic verification, …) moved the order on and
        # wrote its own timeline events: answer with the order as it now stands.
        view = await _load_view(session, order)
    else:
        # Nothing moved it: the answer is built from what was just written (a new order
        # has no holds; its lines and checks are the rows above), not read back.
        view = _order_view(
            order,
            lines=[LineView.model_validate(line) for line in clean.lines],
            holds=[],
            checks=[
                CheckView(
                    check=o.check,
                    result=o.result.value,
                    detail=o.detail,
                    resolution=None,
                    resolved_by=None,
                    resolved_at=None,
                )
                for o in outcomes
            ],
        )
    return CaptureResult(201, view.model_dump(mode="json"), created=True)


@dataclass(frozen=True, slots=True)
class CaptureStep:
    """One event a new order's timeline starts with, and the status it leaves the order in."""

    kind: str
    summary: str
    changes: dict
    channel: str
    status: OrderStatus


def capture_timeline(
    number: int,
    channel: Channel,
    total_minor: int,
    outcomes: list[verification.CheckOutcome],
    policy: verification.VerificationPolicy,
) -> tuple[CaptureStep, CaptureStep]:
    """The first two events of every new order, whichever way it came in.

    Captured; then verified automatically when every check passed and the tenant
    verifies automatically, otherwise waiting for an agent (with the failed checks).
    `capture_order` and `capture_order_batch` both write exactly these.
    """
    captured = OrderStatus.CAPTURED
    created = CaptureStep(
        "created",
        f"Order #{number} captured via {channel.value}",
        {"status": [None, captured.value], "total_minor": [None, total_minor]},
        channel.value,
        captured,
    )
    failed = [o.check for o in outcomes if not o.passed]
    if not failed and policy.auto_verify:
        verified = states.next_status(captured, Action.VERIFY)
        return created, CaptureStep(
            "verified",
            "Every check passed; verified automatically",
            {"status": [captured.value, verified.value]},
            "system",
            verified,
        )
    waiting = states.next_status(captured, Action.SUBMIT_FOR_VERIFICATION)
    why = ", ".join(failed) if failed else "the tenant verifies every order by hand"
    return created, CaptureStep(
        "verification_needed",
        f"Waiting for an agent: {why}",
        {"status": [captured.value, waiting.value], "failed_checks": failed},
        "system",
        waiting,
    )


async def _policy_checking_catalog(
    session: AsyncSession, tenant_id: UUID, clean: CleanOrder
) -> verification.VerificationPolicy:
    """The tenant's verification policy; refuses SKUs its catalog (if it keeps one) lacks.

    The tenant's settings and whether it has a catalog come in one round trip.
    Raises ValidationFailed.
    """
    settings, has_catalog = (await session.execute(_SETTINGS_AND_CATALOG, {"tenant_id": tenant_id})).one()
    if has_catalog:
        await _check_catalog(session, tenant_id, clean)
    return verification.VerificationPolicy.from_settings(settings if settings is not None else {})


async def _check_catalog(session: AsyncSession, tenant_id: UUID, clean: CleanOrder) -> None:
    skus = sorted({line.sku for line in clean.lines})
    rows = await session.execute(
        select(CatalogItem.sku, CatalogItem.active).where(
            CatalogItem.tenant_id == tenant_id, CatalogItem.sku.in_(skus)
        )
    )
    known = {sku: active for sku, active in rows}
    # A non-empty dict tells unknown_sku_errors that a catalog exists.
    errors = unknown_sku_errors(clean.lines, known or {"\x00": False})
    if errors:
        raise ValidationFailed(errors)


async def _recent_duplicates(
    session: AsyncSession, tenant_id: UUID, clean: CleanOrder, policy: verification.VerificationPolicy
) -> list[int]:
    if not clean.customer_email:
        return []
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=policy.duplicate_window_minutes)
    rows = await session.scalars(
        _RECENT_SIMILAR_ORDERS,
        {
            "tenant_id": tenant_id,
            "email": clean.customer_email,
            "fingerprint": clean.lines_fingerprint,
            "since": since,
        },
    )
    return list(rows)


# ---------------------------------------------------------------- batch capture (CSV imports)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What became of one order of a batch: created, already there (same reference), or refused."""

    created: bool
    number: int | None = None
    errors: tuple[FieldError, ...] = ()  # the catalog refused it; nothing was stored


async def capture_order_batch(
    session: AsyncSession, actor: Actor, tenant_id: UUID, orders: list[CleanOrder], *, channel: Channel
) -> list[BatchOutcome]:
    """Store validated orders in the caller's transaction, by the rules of `capture_order`.

    Same numbering, catalog check, verification checks, duplicate suspicion and
    timeline (`capture_timeline`), with one round trip per step instead of per
    order: each table's rows go in as one statement for the batch, and other
    features react to one `OrdersCaptured` event for the batch instead of an
    `OrderChanged` per timeline event. Every order must have an
    `external_ref`, each different; an existing one is left as it is. Outcomes
    come back in the order of `orders`.

    Raises PermissionDenied (client users without a role).
    """
    if actor.kind is ActorKind.CLIENT and actor.client_role is None:
        raise PermissionDenied("Only client users with a role can create orders")
    if not orders:
        return []
    refs = [clean.source.external_ref for clean in orders]
    # The locks capture_order takes, in one sorted pass so that two batches cannot deadlock.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"),
        {"keys": sorted(f"order-ref:{tenant_id}:{ref}" for ref in refs)},
    )
    existing = await _batch_existing_refs(session, tenant_id, refs)
    outcomes: list[BatchOutcome | None] = [None] * len(orders)
    fresh = []
    for index, clean in enumerate(orders):
        if clean.source.external_ref in existing:
            outcomes[index] = BatchOutcome(created=False)
        else:
            fresh.append(index)
    catalog = await _batch_catalog(session, tenant_id, {line.sku for i in fresh for line in orders[i].lines})
    accepted = []
    for index in fresh:
        errors = (
            unknown_sku_errors(orders[index].lines, catalog or {"\x00": False}) if catalog is not None else []
        )
        if errors:
            outcomes[index] = BatchOutcome(created=False, errors=tuple(errors))
        else:
            accepted.append(index)
    if not accepted:
        return outcomes

    tenant = await session.get(Tenant, tenant_id)
    policy = verification.VerificationPolicy.from_settings(tenant.settings if tenant else {})
    count = len(accepted)
    last_number = await session.scalar(
        pg_insert(OrderCounter)
        .values(tenant_id=tenant_id, last_number=FIRST_ORDER_NUMBER + count - 1)
        .on_conflict_do_update(
            index_elements=["tenant_id"], set_={"last_number": OrderCounter.last_number + count}
        )
        .returning(OrderCounter.last_number)
    )
    now = dt.datetime.now(dt.UTC)
    earlier = await _batch_recent_duplicates(session, tenant_id, [orders[i] for i in accepted], policy, now)
    in_batch: dict[tuple[str, str], list[int]] = {}
    rows = _Columns(len(_ORDER_COLUMNS))
    lines, checks = _Columns(len(_LINE_COLUMNS)), _Columns(len(_CHECK_COLUMNS))
    timeline = _Columns(len(_EVENT_COLUMNS))
    captured: list[CapturedOrder] = []
    actor_kind = actor.kind.value
    for offset, index in enumerate(accepted):
        clean, number = orders[index], last_number - count + 1 + offset
        key = (clean.customer_email, clean.lines_fingerprint)
        # Newest first, as _recent_duplicates answers: this batch's orders, then stored ones.
        duplicates = (in_batch.get(key, [])[::-1] + earlier.get(key, []))[:5] if clean.customer_email else []
        in_batch.setdefault(key, []).append(number)
        source = clean.source
        order_id = new_id()
        results = verification.run_checks(clean, policy, duplicates)
        steps = capture_timeline(number, channel, clean.total_minor, results, policy)
        rows.add(
            order_id, number, source.external_ref, steps[-1].status.value, source.payment_status.value,
            source.priority.value, clean.customer_name, clean.customer_email, clean.customer_phone,
            json.dumps(clean.shipping_address),
            json.dumps(clean.billing_address) if clean.billing_address is not None else None,
            clean.currency, clean.subtotal_minor, clean.tax_minor, source.shipping_minor,
            source.discount_minor, clean.total_minor, source.ship_by, source.deliver_by,
            _tags_text(clean.tags), source.notes, clean.lines_fingerprint, len(steps),
        )  # fmt: skip
        for line in clean.lines:
            lines.add(
                order_id, line.line_no, line.sku, line.description, line.quantity,
                line.unit_price_minor, line.tax_minor, line.total_minor,
            )  # fmt: skip
        for o in results:
            checks.add(order_id, o.check, o.result.value, o.detail)
        # What `order_snapshot` gives after each event: the order as the outside world sees it.
        snapshot = {
            "id": str(order_id),
            "number": number,
            "external_ref": source.external_ref,
            "status": None,
            "payment_status": source.payment_status.value,
            "priority": source.priority.value,
            "currency": clean.currency,
            "total_minor": clean.total_minor,
            "customer": {"name": clean.customer_name, "email": clean.customer_email},
        }
        entries = []
        for seq, step in enumerate(steps, start=1):
            timeline.add(order_id, seq, step.kind, step.channel, step.summary, json.dumps(step.changes))
            entries.append(
                CapturedEvent(
                    seq, step.kind, step.summary, step.changes, step.channel, actor_kind,
                    {**snapshot, "status": step.status.value},
                )
            )  # fmt: skip
        captured.append(
            CapturedOrder(
                tenant_id, order_id, number, steps[-1].status, source.priority, clean.currency,
                clean.total_minor, tuple(entries),
            )
        )  # fmt: skip
        outcomes[index] = BatchOutcome(created=True, number=number)
    # Set-based, without the ORM's unit of work: one statement per table for the whole batch,
    # on the session's own connection (same transaction, same scope). Orders first: the
    # other rows refer to them.
    driver = await session_driver(session)
    await driver.execute(_INSERT_ORDERS, tenant_id, channel.value, now, *rows.columns)
    await driver.execute(
        _INSERT_EVENTS, tenant_id, actor_kind, str(actor.id), actor.display_name, *timeline.columns
    )
    await driver.execute(_INSERT_LINES, tenant_id, *lines.columns)
    await driver.execute(_INSERT_CHECKS, tenant_id, now, *checks.columns)
    # Other features react to the whole batch at once (outbox rows, work items, …).
    events.record(session, OrdersCaptured(tenant_id=tenant_id, actor=actor, orders=tuple(captured)))
    return outcomes


def _tags_text(tags: tuple[str, ...]) -> str:
    # Tags passed intake, which refuses control characters, so the unit separator cannot
    # occur in one; checked all the same, since a tag split in two would be silent.
    if any(_TAG_SEPARATOR in tag for tag in tags):
        raise ValueError("a tag contains the unit separator")
    return _TAG_SEPARATOR.join(tags)


_TAG_SEPARATOR = "\x1f"


class _Columns:
    """Rows kept as one list per column: the shape `unnest` takes."""

    def __init__(self, width: int) -> None:
        self.columns: list[list] = [[] for _ in range(width)]

    def add(self, *values) -> None:
        for column, value in zip(self.columns, values, strict=True):
            column.append(value)


# A batch's rows go in as one statement per table over arrays, one array per column: the
# text never changes (one prepared statement), and PostgreSQL reads the rows as fast as
# a multi-row VALUES list, without the per-row round trips of executemany. Values go in
# as text and are assigned to the columns, so a value too long for its column is refused
# (an explicit cast to varchar(n) would cut it silently).
_ORDER_COLUMNS = (
    "id", "number", "external_ref", "status", "payment_status", "priority", "customer_name",
    "customer_email", "customer_phone", "shipping_address", "billing_address", "currency",
    "subtotal_minor", "tax_minor", "shipping_minor", "discount_minor", "total_minor", "ship_by",
    "deliver_by", "tags", "notes", "lines_fingerprint", "last_event_seq",
)  # fmt: skip
_INSERT_ORDERS = (
    "INSERT INTO orders (tenant_id, id, number, external_ref, channel, status, payment_status, priority,"
    " customer_name, customer_email, customer_phone, shipping_address, billing_address, currency,"
    " subtotal_minor, tax_minor, shipping_minor, discount_minor, total_minor, ship_by, deliver_by, tags,"
    " notes, lines_fingerprint, created_at, updated_at, version, last_event_seq)"
    " SELECT $1, o.id, o.number, o.external_ref, $2::order_channel, o.status::order_status,"
    " o.payment_status::payment_status, o.priority::order_priority, o.customer_name, o.customer_email,"
    " o.customer_phone, o.shipping_address::jsonb, o.billing_address::jsonb, o.currency, o.subtotal_minor,"
    " o.tax_minor, o.shipping_minor, o.discount_minor, o.total_minor, o.ship_by, o.deliver_by,"
    " string_to_array(o.tags, chr(31)), o.notes, o.lines_fingerprint, $3, $3, 1, o.last_event_seq"
    " FROM unnest($4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    " $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::bigint[],"
    " $18::bigint[], $19::bigint[], $20::bigint[], $21::timestamptz[], $22::timestamptz[], $23::text[],"
    " $24::text[], $25::text[], $26::integer[]) AS o(id, number, external_ref, status, payment_status,"
    " priority, customer_name, customer_email, customer_phone, shipping_address, billing_address, currency,"
    " subtotal_minor, tax_minor, shipping_minor, discount_minor, total_minor, ship_by, deliver_by, tags,"
    " notes, lines_fingerprint, last_event_seq)"
)
_EVENT_COLUMNS = ("order_id", "seq", "kind", "channel", "summary", "changes")
_INSERT_EVENTS = (
    "INSERT INTO order_events (tenant_id, order_id, seq, kind, actor_kind, actor_id, actor_name, channel,"
    " summary, changes)"
    " SELECT $1, e.order_id, e.seq, e.kind, $2, $3, $4, e.channel, e.summary, e.changes::jsonb"
    " FROM unnest($5::uuid[], $6::integer[], $7::text[], $8::text[], $9::text[], $10::text[])"
    " AS e(order_id, seq, kind, channel, summary, changes)"
)
_LINE_COLUMNS = (
    "order_id", "line_no", "sku", "description", "quantity", "unit_price_minor", "tax_minor", "total_minor",
)  # fmt: skip
_INSERT_LINES = (
    "INSERT INTO order_lines (tenant_id, order_id, line_no, sku, description, quantity, unit_price_minor,"
    " tax_minor, total_minor)"
    " SELECT $1, * FROM unnest($2::uuid[], $3::smallint[], $4::text[], $5::text[], $6::integer[],"
    " $7::bigint[], $8::bigint[], $9::bigint[])"
)
_CHECK_COLUMNS = ("order_id", "check", "result", "detail")
_INSERT_CHECKS = (
    'INSERT INTO verification_checks (tenant_id, order_id, "check", result, detail, checked_at)'
    " SELECT $1, c.order_id, c.name, c.result::check_result, c.detail, $2"
    " FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[]) AS c(order_id, name, result, detail)"
)


async def _batch_catalog(session: AsyncSession, tenant_id: UUID, skus: set[str]) -> dict[str, bool] | None:
    """sku -> active for the SKUs named, or None when the tenant keeps no catalog."""
    has_catalog = await session.scalar(select(exists().where(CatalogItem.tenant_id == tenant_id)))
    if not has_catalog or not skus:
        return None if not has_catalog else {}
    rows = await session.execute(
        select(CatalogItem.sku, CatalogItem.active).where(
            CatalogItem.tenant_id == tenant_id, CatalogItem.sku.in_(sorted(skus))
        )
    )
    return {sku: active for sku, active in rows}


# The set lookups below probe the indexes capture_order's one-order queries use, one key at
# a time: a correlated scalar subquery is never turned into a join. Only the key columns
# drive the scan (row-level security adds the tenants); the tenant and the time window are
# aggregate FILTERs. As joins or `= ANY(...)` filters, a plan made without fresh statistics
# (a table that an import is filling, autovacuum behind) scans the tenant's every order.
_EXISTING_REFS = text(
    "SELECT r.ref FROM unnest(CAST(:refs AS text[])) AS r(ref)"
    " WHERE (SELECT count(*) FILTER (WHERE tenant_id = :tenant_id) FROM orders"
    "  WHERE external_ref = r.ref) > 0"
)
_RECENT_DUPLICATES = text(
    "SELECT w.email, w.fingerprint,"
    " (SELECT array_agg(number ORDER BY created_at DESC)"
    "   FILTER (WHERE tenant_id = :tenant_id AND created_at >= :since) FROM orders"
    "  WHERE customer_email = w.email AND lines_fingerprint = w.fingerprint)"
    " FROM unnest(CAST(:emails AS text[]), CAST(:fingerprints AS text[])) AS w(email, fingerprint)"
)


async def _batch_existing_refs(session: AsyncSession, tenant_id: UUID, refs: list[str]) -> set[str]:
    rows = await session.scalars(_EXISTING_REFS, {"refs": refs, "tenant_id": tenant_id})
    return set(rows)


async def _batch_recent_duplicates(
    session: AsyncSession,
    tenant_id: UUID,
    orders: list[CleanOrder],
    policy: verification.VerificationPolicy,
    now: dt.datetime,
) -> dict[tuple[str, str], list[int]]:
    """(email, lines fingerprint) -> numbers of stored orders within the window, newest first."""
    wanted = sorted({(o.customer_email, o.lines_fingerprint) for o in orders if o.customer_email})
    if not wanted:
        return {}
    rows = await session.execute(
        _RECENT_DUPLICATES,
        {
            "emails": [email for email, _ in wanted],
            "fingerprints": [fingerprint for _, fingerprint in wanted],
            "tenant_id": tenant_id,
            "since": now - dt.timedelta(minutes=policy.duplicate_window_minutes),
        },
    )
    return {(email, fingerprint): numbers for email, fingerprint, numbers in rows if numbers}


# ---------------------------------------------------------------- reading


async def _find_order(session: AsyncSession, actor: Actor, order_id: UUID, *, lock: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
    if lock:
        query = query.with_for_update()
    order = await session.scalar(query)
    if order is None:
        raise NotFound("Order")
    return order


async def _active_holds(session: AsyncSession, order: Order) -> list[OrderHold]:
    rows = await session.scalars(
        select(OrderHold).where(
            OrderHold.tenant_id == order.tenant_id,
            OrderHold.order_id == order.id,
            OrderHold.released_at.is_(None),
        )
    )
    return list(rows)


async def _load_view(session: AsyncSession, order: Order) -> OrderView:
    key = (OrderLine.tenant_id == order.tenant_id) & (OrderLine.order_id == order.id)
    lines = (await session.scalars(select(OrderLine).where(key).order_by(OrderLine.line_no))).all()
    holds = (
        await session.scalars(
            select(OrderHold)
            .where(OrderHold.tenant_id == order.tenant_id, OrderHold.order_id == order.id)
            .order_by(OrderHold.placed_at)
        )
    ).all()
    checks = (
        await session.scalars(
            select(VerificationCheck).where(
                VerificationCheck.tenant_id == order.tenant_id, VerificationCheck.order_id == order.id
            )
        )
    ).all()
    order_of_check = {name: i for i, name in enumerate(verification.ALL_CHECKS)}
    return _order_view(
        order,
        lines=[LineView.model_validate(line) for line in lines],
        holds=holds,
        checks=[
            CheckView(
                check=c.check,
                result=c.result.value,
                detail=c.detail,
                resolution=c.resolution.value if c.resolution else None,
                resolved_by=c.resolved_by,
                resolved_at=c.resolved_at,
            )
            for c in sorted(checks, key=lambda c: order_of_check.get(c.check, 99))
        ],
    )


def _order_view(
    order: Order, *, lines: list[LineView], holds: list[OrderHold], checks: list[CheckView]
) -> OrderView:
    """The order's full view; `checks` in ALL_CHECKS order, `holds` oldest first."""
    active = [h.reason for h in holds if h.released_at is None]
    return OrderView(
        **OrderSummary.model_validate(order).model_dump(exclude={"on_hold"}),
        on_hold=bool(active),
        customer_phone=order.customer_phone,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        subtotal_minor=order.subtotal_minor,
        tax_minor=order.tax_minor,
        shipping_minor=order.shipping_minor,
        discount_minor=order.discount_minor,
        ship_by=order.ship_by,
        deliver_by=order.deliver_by,
        notes=order.notes,
        lines=lines,
        holds=[HoldView.model_validate(h) for h in holds],
        checks=checks,
        allowed_actions=[a.value for a in states.allowed_actions(order.status, active)],
        updated_at=order.updated_at,
        version=order.version,
    )


async def get_order(db: Database, actor: Actor, order_id: UUID) -> OrderView:
    """One order with lines, holds, checks and allowed actions. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        return await _load_view(session, await _find_order(session, actor, order_id))


# Timeline entries only operations staff see: agents' internal notes on a conversation.
STAFF_ONLY_EVENT_KINDS = frozenset({"note_added"})


async def list_events(db: Database, actor: Actor, order_id: UUID) -> list[EventView]:
    """The order's timeline, oldest first (client users and API keys see no internal notes).

    Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        order = await _find_order(session, actor, order_id)
        query = (
            select(OrderEvent)
            .where(OrderEvent.tenant_id == order.tenant_id, OrderEvent.order_id == order.id)
            .order_by(OrderEvent.seq)
        )
        if not actor.is_staff:
            query = query.where(OrderEvent.kind.not_in(STAFF_ONLY_EVENT_KINDS))
        rows = await session.scalars(query)
        return [EventView.model_validate(e) for e in rows]


@dataclass(frozen=True, slots=True)
class OrderFilters:
    tenant_id: UUID | None = None
    statuses: tuple[OrderStatus, ...] = ()
    priority: Priority | None = None
    tag: str | None = None
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    text: str | None = None
    limit: int = 50
    cursor: str | None = None
    on_hold: bool | None = None
    payment_status: PaymentStatus | None = None
    extra: dict = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()


def encode_cursor(created_at: dt.datetime, order_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, UUID]:
    """Raises ValidationFailed for a cursor that this server did not hand out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, order_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return dt.datetime.fromisoformat(created), UUID(order_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed([FieldError("cursor", "is not a cursor from a previous page")]) from exc


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_orders(db: Database, actor: Actor, filters: OrderFilters) -> OrderPage:
    """A page of orders, newest first, by keyset (never OFFSET). Raises ValidationFailed, NotFound."""
    if not 1 <= filters.limit <= 200:
        raise ValidationFailed([FieldError("limit", "must be between 1 and 200")])
    tenant_ids = actor.tenant_ids
    if filters.tenant_id is not None:
        if filters.tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenant_ids = frozenset({filters.tenant_id})
    query = select(Order).where(Order.tenant_id.in_(tenant_ids))
    if filters.statuses:
        query = query.where(Order.status.in_(filters.statuses))
    if filters.priority:
        query = query.where(Order.priority == filters.priority)
    if filters.payment_status:
        query = query.where(Order.payment_status == filters.payment_status)
    if filters.channels:
        query = query.where(Order.channel.in_(filters.channels))
    if filters.tag:
        query = query.where(Order.tags.contains([filters.tag.strip().lower()]))
    if filters.created_from:
        query = query.where(Order.created_at >= filters.created_from)
    if filters.created_to:
        query = query.where(Order.created_at < filters.created_to)
    if filters.text and filters.text.strip():
        needle = filters.text.strip().lower().lstrip("#")
        query = query.where(Order.search_text.like(f"%{_escape_like(needle)}%", escape="\\"))
    if filters.on_hold is not None:
        held = exists().where(
            OrderHold.tenant_id == Order.tenant_id,
            OrderHold.order_id == Order.id,
            OrderHold.released_at.is_(None),
        )
        query = query.where(held if filters.on_hold else ~held)
    if filters.cursor:
        created_at, order_id = decode_cursor(filters.cursor)
        query = query.where(func.row(Order.created_at, Order.id) < func.row(created_at, order_id))
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(filters.limit + 1)
    async with db.transaction(actor.scope) as session:
        rows = list((await session.scalars(query)).all())
        held_ids = set()
        if rows:
            held_ids = set(
                await session.scalars(
                    select(OrderHold.order_id).where(
                        OrderHold.tenant_id.in_({o.tenant_id for o in rows}),
                        OrderHold.order_id.in_([o.id for o in rows]),
                        OrderHold.released_at.is_(None),
                    )
                )
            )
    page, more = rows[: filters.limit], len(rows) > filters.limit
    items = [OrderSummary.model_validate(o).model_copy(update={"on_hold": o.id in held_ids}) for o in page]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return OrderPage(items=items, next_cursor=next_cursor)


# ---------------------------------------------------------------- lifecycle


def _refuse(exc: states.TransitionRefused) -> InvalidTransition:
    return InvalidTransition(
        exc.status.value,
        exc.action.value,
        tuple(a.value for a in exc.allowed),
        detail=exc.reason[0].upper() + exc.reason[1:],
    )


EVENT_SUMMARIES = {
    Action.VERIFY: "Verified",
    Action.ALLOCATE: "Allocated to a fulfillment center",
    Action.BACKORDER: "Backordered: not enough stock",
    Action.START_PICKING: "Picking started",
    Action.PACK: "Packed",
    Action.SHIP_PARTIALLY: "Partially shipped",
    Action.SHIP: "Shipped",
    Action.DELIVER: "Delivered",
    Action.REQUEST_RETURN: "Return requested",
    Action.RECEIVE_RETURN: "Return received",
    Action.REFUND: "Refunded",
    Action.REJECT_RETURN: "Return rejected",
    Action.CLOSE: "Closed",
    Action.CANCEL: "Cancelled",
    Action.SUBMIT_FOR_VERIFICATION: "Sent for verification",
    Action.RELEASE_STOCK: "Reserved stock given back",
    Action.REOPEN_RETURNS: "Open for further returns",
}


async def perform_action(
    db: Database,
    actor: Actor,
    order_id: UUID,
    action: Action,
    *,
    note: str | None = None,
    hold_reason: HoldReason | None = None,
) -> OrderView:
    """Apply one lifecycle action and record it on the timeline.

    Raises NotFound, InvalidTransition (with the current state and allowed
    actions), PermissionDenied (API keys and client users may only cancel or
    request returns of their own orders; the rest is the operations team's).
    """
    if actor.kind is ActorKind.CLIENT and action not in (Action.CANCEL, Action.REQUEST_RETURN):
        raise PermissionDenied("Client users can cancel orders and request returns; other steps are ours")
    if action in states.PLATFORM_ACTIONS:
        raise PermissionDenied(
            f"{action.value.replace('_', ' ').capitalize()} follows from other steps; nobody takes it by hand"
        )
    async with db.transaction(actor.scope) as session:
        order = await _find_order(session, actor, order_id, lock=True)
        holds = await _active_holds(session, order)
        active = [h.reason for h in holds]
        try:
            after = states.next_status(order.status, action, active, hold_reason)
        except states.TransitionRefused as exc:
            raise _refuse(exc) from None
        if action is Action.VERIFY:
            await _require_checks_decided(session, order)
        before = order.status
        now = dt.datetime.now(dt.UTC)
        if action is Action.PLACE_HOLD:
            session.add(
                OrderHold(
                    tenant_id=order.tenant_id,
                    order_id=order.id,
                    id=new_id(),
                    reason=hold_reason,
                    note=note,
                    placed_at=now,
                    placed_by=actor.display_name,
                )
            )
            append_event(
                session,
                order,
                actor,
                "hold_placed",
                f"On hold: {hold_reason.value.replace('_', ' ')}",
                {"hold": [None, hold_reason.value], "note": note},
            )
        elif action is Action.RELEASE_HOLD:
            held = next(h for h in holds if h.reason is hold_reason)
            held.released_at = now
            held.released_by = actor.display_name
            remaining = [h.reason.value for h in holds if h is not held]
            append_event(
                session,
                order,
                actor,
                "hold_released",
                f"Hold released: {hold_reason.value.replace('_', ' ')}"
                + ("" if remaining else f"; resuming as {order.status.value.replace('_', ' ')}"),
                {"hold": [hold_reason.value, None], "still_on_hold": remaining, "note": note},
            )
        else:
            order.status = after
            summary = EVENT_SUMMARIES.get(action, action.value)
            append_event(
                session,
                order,
                actor,
                action.value,
                summary + (f": {note}" if note else ""),
                {"status": [before.value, after.value]},
            )
            if action is Action.CANCEL and holds:
                for hold in holds:
                    hold.released_at = now
                    hold.released_by = actor.display_name
        order.version += 1
        order.updated_at = now
        await session.flush()
        # Reactions (allocation after verification, …) run now, so the answer shows them.
        await events.dispatch(session)
        return await _load_view(session, order)


async def _require_checks_decided(session: AsyncSession, order: Order) -> None:
    rows = await session.scalars(
        select(VerificationCheck).where(
            VerificationCheck.tenant_id == order.tenant_id,
            VerificationCheck.order_id == order.id,
            VerificationCheck.result == CheckResult.FAILED,
        )
    )
    blocking = [c for c in rows if c.resolution is not CheckResolution.OVERRIDDEN]
    if blocking:
        names = ", ".join(c.check for c in blocking)
        raise InvalidTransition(
            order.status.value,
            Action.VERIFY.value,
            tuple(a.value for a in states.allowed_actions(order.status)),
            detail=f"Failed checks need an override before verifying: {names}",
        )


async def decide_check(
    db: Database, actor: Actor, order_id: UUID, check: str, resolution: CheckResolution, note: str | None
) -> OrderView:
    """An agent confirms or overrides one failed check; on the timeline.

    Raises NotFound (order or check), PermissionDenied (only staff decide),
    Conflict (the check passed, or the order is past verification).
    """
    if actor.kind is not ActorKind.STAFF and actor.kind is not ActorKind.SYSTEM:
        raise PermissionDenied("Only operations staff decide verification checks")
    async with db.transaction(actor.scope) as session:
        order = await _find_order(session, actor, order_id, lock=True)
        row = await session.scalar(
            select(VerificationCheck).where(
                VerificationCheck.tenant_id == order.tenant_id,
                VerificationCheck.order_id == order.id,
                VerificationCheck.check == check,
            )
        )
        if row is None:
            raise NotFound("Check")
        if order.status not in (OrderStatus.CAPTURED, OrderStatus.AWAITING_VERIFICATION):
            raise Conflict(f"The order is {order.status.value.replace('_', ' ')}; its checks are settled")
        if row.result is CheckResult.PASSED:
            raise Conflict(f"The {check} check passed; there is nothing to decide")
        previous = row.resolution.value if row.resolution else None
        row.resolution = resolution
        row.resolved_by = actor.display_name
        row.resolved_at = dt.datetime.now(dt.UTC)
        row.resolution_note = note
        verb = "overridden" if resolution is CheckResolution.OVERRIDDEN else "confirmed as a problem"
        append_event(
            session,
            order,
            actor,
            "check_decided",
            f"Check {check} {verb}" + (f": {note}" if note else ""),
            {"check": check, "resolution": [previous, resolution.value]},
        )
        order.version += 1
        order.updated_at = row.resolved_at
        await session.flush()
        return await _load_view(session, order)


async def update_payment_status(
    db: Database, actor: Actor, order_id: UUID, payment_status: PaymentStatus
) -> OrderView:
    """Record a payment change; the payment check follows it. Raises NotFound, PermissionDenied."""
    if actor.kind is ActorKind.CLIENT:
        raise PermissionDenied("Payment status comes from the client's systems or the operations team")
    async with db.transaction(actor.scope) as session:
        order = await _find_order(session, actor, order_id, lock=True)
        if order.payment_status is payment_status:
            return await _load_view(session, order)
        before = order.payment_status
        order.payment_status = payment_status
        outcome = verification.payment_check(payment_status)
        await session.execute(
            update(VerificationCheck)
            .where(
                VerificationCheck.tenant_id == order.tenant_id,
                VerificationCheck.order_id == order.id,
                VerificationCheck.check == verification.PAYMENT,
            )
            .values(result=outcome.result, detail=outcome.detail)
        )
        append_event(
            session,
            order,
            actor,
            "payment_updated",
            f"Payment {payment_status.value}",
            {"payment_status": [before.value, payment_status.value]},
        )
        order.version += 1
        order.updated_at = dt.datetime.now(dt.UTC)
        await session.flush()
        return await _load_view(session, order)


async def purge_idempotency_keys(db: Database, actor: Actor) -> int:
    """Forget keys older than the retention (48 h; at least 24 h is promised)."""
    cutoff = dt.datetime.now(dt.UTC) - IDEMPOTENCY_RETENTION
    async with db.transaction(actor.scope) as session:
        result = await session.execute(
            IdempotencyKey.__table__.delete().where(
                IdempotencyKey.tenant_id.in_(actor.tenant_ids), IdempotencyKey.created_at < cutoff
            )
        )
        return result.rowcount


# ---------------------------------------------------------------- for other features' reactions


async def lock_order(session: AsyncSession, actor: Actor, order_id: UUID) -> Order:
    """The actor's order, its row locked until the caller's transaction ends. Raises NotFound."""
    return await _find_order(session, actor, order_id, lock=True)


async def apply_action(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    action: Action,
    *,
    summary: str | None = None,
    changes: dict | None = None,
    channel: str | None = None,
    active_holds: list[HoldReason] | None = None,
) -> OrderStatus:
    """Apply one lifecycle action to a locked `order` inside the caller's transaction.

    For features that move orders as a consequence of their own work (allocation,
    shipments, tracking, returns): same state machine, holds and timeline as
    `perform_action`. `active_holds` saves a read when the caller already has them
    (read in this transaction, under the order's lock). Raises InvalidTransition.
    """
    if action in (Action.PLACE_HOLD, Action.RELEASE_HOLD):
        raise ValueError("holds go through perform_action")
    if active_holds is None:
        active_holds = [h.reason for h in await _active_holds(session, order)]
    after = next_status(order.status, action, active_holds)
    before = order.status
    order.status = after
    append_event(
        session,
        order,
        actor,
        action.value,
        summary or EVENT_SUMMARIES.get(action, action.value),
        {"status": [before.value, after.value], **(changes or {})},
        channel=channel,
    )
    order.version += 1
    order.updated_at = dt.datetime.now(dt.UTC)
    return after


def next_status(status: OrderStatus, action: Action, active_holds: list[HoldReason]) -> OrderStatus:
    """Where `action` takes an order in `status` with these holds, as `apply_action` decides
    it (for write paths that hold the order outside the ORM). Raises InvalidTransition."""
    try:
        return states.next_status(status, action, active_holds)
    except states.TransitionRefused as exc:
        raise _refuse(exc) from None


async def load_order_view(session: AsyncSession, order: Order) -> OrderView:
    """The order as `get_order` shows it, read inside the caller's transaction."""
    return await _load_view(session, order)
