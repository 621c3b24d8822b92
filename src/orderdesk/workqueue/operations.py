"""The live operations view for leads: a read side over orders, never writing.

Per tenant: open orders by status; *stuck* orders, those whose last change is
older than the tenant's threshold for their status (`stuck_after_hours` in the
SLA policy, wall-clock hours; the last change is `orders.updated_at`, which any
change to the order moves); and delivery promises: orders past their
`deliver_by` and not delivered (late), or due within a day and not shipped yet.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import DateTime, String, Uuid, and_, column, func, select, values

from orderdesk.accounts.actors import Actor
from orderdesk.core.db import Database
from orderdesk.core.schemas import OutputSchema
from orderdesk.orders.models import Order
from orderdesk.orders.states import OrderStatus
from orderdesk.tenants.models import Tenant
from orderdesk.workqueue.services import _require_lead, policy_in_session, utcnow

S = OrderStatus
# Statuses that need nothing more from anyone: not shown, never stuck.
SETTLED = (S.DELIVERED, S.REFUNDED, S.RETURN_REJECTED, S.CLOSED, S.CANCELLED)
NOT_YET_SHIPPED = (
    S.CAPTURED,
    S.AWAITING_VERIFICATION,
    S.VERIFIED,
    S.ALLOCATED,
    S.BACKORDERED,
    S.PICKING,
    S.PACKED,
)
DUE_SOON = dt.timedelta(hours=24)
STUCK_LIST_LIMIT = 20


class StuckOrder(OutputSchema):
    id: UUID
    tenant_id: UUID
    tenant_name: str
    number: int
    status: str
    customer_name: str
    since: dt.datetime
    threshold_hours: int


class TenantOperations(OutputSchema):
    tenant_id: UUID
    tenant_name: str
    by_status: dict[str, int]
    stuck_by_status: dict[str, int]
    late: int
    due_soon: int


class OperationsView(OutputSchema):
    generated_at: dt.datetime
    statuses: list[str]
    tenants: list[TenantOperations]
    stuck: list[StuckOrder]


async def operations_view(db: Database, actor: Actor, *, now: dt.datetime | None = None) -> OperationsView:
    """Orders by status per tenant, the stuck ones, and delivery promises at risk.

    Raises PermissionDenied (not a lead or administrator).
    """
    _require_lead(actor, "see the operations view")
    now = now or utcnow()
    tenant_ids = sorted(actor.tenant_ids, key=str)
    async with db.transaction(actor.scope) as session:
        names = dict(
            (await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))).all()
        )
        active = and_(Order.tenant_id.in_(tenant_ids), Order.status.not_in(SETTLED))
        counts = (
            await session.execute(
                select(Order.tenant_id, Order.status, func.count())
                .where(active)
                .group_by(Order.tenant_id, Order.status)
            )
        ).all()
        promises = (
            await session.execute(
                select(
                    Order.tenant_id,
                    func.count().filter(Order.deliver_by < now),
                    func.count().filter(
                        Order.deliver_by >= now,
                        Order.deliver_by < now + DUE_SOON,
                        Order.status.in_(NOT_YET_SHIPPED),
                    ),
                )
                .where(active, Order.deliver_by.is_not(None))
                .group_by(Order.tenant_id)
            )
        ).all()
        # One row per (tenant, status) with the moment before which an order there is stuck.
        limits, threshold = [], {}
        for tenant_id in tenant_ids:
            policy = await policy_in_session(session, tenant_id)
            for status, hours in policy.stuck_after_hours.items():
                limits.append((tenant_id, status, now - dt.timedelta(hours=hours)))
                threshold[(tenant_id, status)] = hours
        stuck_counts, stuck_rows = [], []
        if limits:
            cutoffs = values(
                column("tenant_id", Uuid),
                column("status", String),
                column("cutoff", DateTime(timezone=True)),
                name="cutoffs",
            ).data(limits)
            stuck_join = and_(
                Order.tenant_id == cutoffs.c.tenant_id,
                func.cast(Order.status, String) == cutoffs.c.status,
                Order.updated_at < cutoffs.c.cutoff,
            )
            stuck_counts = (
                await session.execute(
                    select(Order.tenant_id, Order.status, func.count())
                    .join(cutoffs, stuck_join)
                    .where(Order.tenant_id.in_(tenant_ids))
                    .group_by(Order.tenant_id, Order.status)
                )
            ).all()
            stuck_rows = (
                await session.execute(
                    select(
                        Order.id,
                        Order.tenant_id,
                        Order.number,
                        Order.status,
                        Order.customer_name,
                        Order.updated_at,
                    )
                    .join(cutoffs, stuck_join)
                    .where(Order.tenant_id.in_(tenant_ids))
                    .order_by(Order.updated_at)
                    .limit(STUCK_LIST_LIMIT)
                )
            ).all()
    by_status: dict[UUID, dict[str, int]] = {}
    for tenant_id, status, count in counts:
        by_status.setdefault(tenant_id, {})[status.value] = count
    stuck_by_status: dict[UUID, dict[str, int]] = {}
    for tenant_id, status, count in stuck_counts:
        stuck_by_status.setdefault(tenant_id, {})[status.value] = count
    late = {tenant_id: (overdue, soon) for tenant_id, overdue, soon in promises}
    return OperationsView(
        generated_at=now,
        statuses=[s.value for s in OrderStatus if s not in SETTLED],
        tenants=[
            TenantOperations(
                tenant_id=tenant_id,
                tenant_name=names.get(tenant_id, ""),
                by_status=by_status.get(tenant_id, {}),
                stuck_by_status=stuck_by_status.get(tenant_id, {}),
                late=late.get(tenant_id, (0, 0))[0],
                due_soon=late.get(tenant_id, (0, 0))[1],
            )
            for tenant_id in sorted(tenant_ids, key=lambda t: names.get(t, ""))
        ],
        stuck=[
            StuckOrder(
                id=row.id,
                tenant_id=row.tenant_id,
                tenant_name=names.get(row.tenant_id, ""),
                number=row.number,
                status=row.status.value,
                customer_name=row.customer_name,
                since=row.updated_at,
                threshold_hours=threshold[(row.tenant_id, row.status.value)],
            )
            for row in stuck_rows
        ],
    )
