"""The live operations view for leads: a read side over orders, never writing.

Per tenant: open orders by status; *stuck* orders, those that entered their
status longer ago than the tenant's threshold for it (`stuck_after_hours` in the
SLA policy, wall-clock hours, measured from `orders.status_changed_at`, which the
database sets on every status change and nothing else moves); and delivery
timelines: for each open order with a promise (`deliver_by`), when it is expected
to arrive, so that a broken promise shows before it breaks.

The expected delivery of an order is the latest of its parcels still on their way
and, while units have yet to leave, now plus the tenant's transit days (nothing
unshipped can arrive sooner). A parcel is expected at the carrier's latest
estimate ("carrier") or, without one, when it left plus the transit days
("estimate"). Nothing undelivered arrives in the past: a time already gone counts
as now, and as our estimate. The transit days are the tenant's fulfillment policy.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import DateTime, String, Uuid, and_, column, func, select, text, values

from orderdesk.accounts.actors import Actor
from orderdesk.core.db import Database
from orderdesk.core.schemas import OutputSchema
from orderdesk.fulfillment.policy import policy_of
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
# Statuses in which an order is still on its way to the customer: its promise can be kept or broken.
BEFORE_DELIVERY = (*NOT_YET_SHIPPED, S.PARTIALLY_SHIPPED, S.SHIPPED)
STUCK_LIST_LIMIT = 20
SLIPPING_LIST_LIMIT = 20

# One row per open order with a promise: its expected delivery and where that comes from.
# Reads `:now`, `:tenant_ids` with `:transit_days` (same order), `:statuses`.
#
# Set-based: the parcels still on their way are ranked per order in one pass over the
# shipments and joined to the orders, instead of a look-up of each order's shipments,
# which over 160,000 open orders was most of the view's time (bench/operations_view.py).
# The latest of the parcel and the units still to leave wins; on a tie the carrier's
# estimate is named. An order whose every parcel arrived but that is not yet marked
# delivered expects nothing and is left out.
EXPECTED_DELIVERIES = """
WITH transit AS (
  SELECT * FROM unnest(CAST(:tenant_ids AS uuid[]), CAST(:transit_days AS int[])) AS t(tenant_id, days)
),
parcels AS (
  SELECT DISTINCT ON (s.tenant_id, s.order_id) s.tenant_id, s.order_id, parcel.at, parcel.source
  FROM shipments s
  JOIN transit t ON t.tenant_id = s.tenant_id
  CROSS JOIN LATERAL (
    SELECT coalesce(s.estimated_delivery_at, s.shipped_at + make_interval(days => t.days)) AS at,
           CASE WHEN s.estimated_delivery_at IS NULL THEN 'estimate' ELSE 'carrier' END AS source
  ) parcel
  WHERE s.delivered_at IS NULL
  ORDER BY s.tenant_id, s.order_id, parcel.at DESC, parcel.source
),
expected AS (
  SELECT o.tenant_id, o.id, o.number, o.customer_name, o.status::text AS status, o.deliver_by,
         p.at AS parcel_at, p.source AS parcel_source,
         -- Units still to leave: they cannot arrive before a parcel sent now would.
         CASE WHEN o.status <> 'shipped' THEN CAST(:now AS timestamptz) + make_interval(days => t.days)
         END AS unshipped_at
  FROM orders o
  JOIN transit t ON t.tenant_id = o.tenant_id
  LEFT JOIN parcels p ON p.tenant_id = o.tenant_id AND p.order_id = o.id
  WHERE o.tenant_id = ANY (CAST(:tenant_ids AS uuid[]))
    AND o.status::text = ANY (CAST(:statuses AS text[]))
    AND o.deliver_by IS NOT NULL
)
SELECT tenant_id, id, number, customer_name, status, deliver_by,
       greatest(parcel_at, unshipped_at, CAST(:now AS timestamptz)) AS expected_at,
       CASE WHEN parcel_at >= CAST(:now AS timestamptz) AND parcel_at >= coalesce(unshipped_at, parcel_at)
            THEN parcel_source ELSE 'estimate' END AS source
FROM expected
WHERE parcel_at IS NOT NULL OR unshipped_at IS NOT NULL
"""
# Per tenant: on track, expected after the promise, or past the promise already.
DELIVERY_COUNTS = f"""
SELECT tenant_id,
       count(*) FILTER (WHERE deliver_by >= :now AND expected_at <= deliver_by) AS on_track,
       count(*) FILTER (WHERE deliver_by >= :now AND expected_at > deliver_by) AS expected_late,
       count(*) FILTER (WHERE deliver_by < :now) AS late
FROM ({EXPECTED_DELIVERIES}) expected
GROUP BY tenant_id
"""  # noqa: S608 (SQL of this module's own making, no input)
# Expected late or late (a late order is expected after its promise too), worst slip first.
SLIPPING_ORDERS = f"""
SELECT *, expected_at - deliver_by AS slip
FROM ({EXPECTED_DELIVERIES}) expected
WHERE expected_at > deliver_by
ORDER BY expected_at - deliver_by DESC, number
LIMIT :limit
"""  # noqa: S608 (SQL of this module's own making, no input)


class _ListedOrder(OutputSchema):
    """An order as the view's lists name it."""

    id: UUID
    tenant_id: UUID
    tenant_name: str
    number: int
    status: str
    customer_name: str


class StuckOrder(_ListedOrder):
    since: dt.datetime
    threshold_hours: int


class SlippingOrder(_ListedOrder):
    """An order expected after its promised delivery, or already past it."""

    promised_at: dt.datetime
    expected_at: dt.datetime
    expected_source: str  # "carrier": the carrier's estimate; "estimate": ours (transit days)
    late: bool  # the promise has already passed
    slip: dt.timedelta  # expected minus promised


class TenantOperations(OutputSchema):
    tenant_id: UUID
    tenant_name: str
    by_status: dict[str, int]
    stuck_by_status: dict[str, int]
    # Open orders with a promise, by what their expected delivery says of it.
    on_track: int
    expected_late: int
    late: int  # the promised time has passed and the order is not delivered
    transit_days: int


class OperationsView(OutputSchema):
    generated_at: dt.datetime
    statuses: list[str]
    tenants: list[TenantOperations]
    stuck: list[StuckOrder]
    slipping: list[SlippingOrder]  # worst slip first, at most SLIPPING_LIST_LIMIT


async def operations_view(db: Database, actor: Actor, *, now: dt.datetime | None = None) -> OperationsView:
    """Orders by status per tenant, the stuck ones, and delivery promises against expectations.

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
        transit_days = [(await policy_of(session, tenant_id)).transit_days for tenant_id in tenant_ids]
        params = {
            "now": now,
            "tenant_ids": tenant_ids,
            "transit_days": transit_days,
            "statuses": [s.value for s in BEFORE_DELIVERY],
        }
        promises = (await session.execute(text(DELIVERY_COUNTS), params)).all()
        slipping_rows = (
            await session.execute(text(SLIPPING_ORDERS), {**params, "limit": SLIPPING_LIST_LIMIT})
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
                Order.status_changed_at < cutoffs.c.cutoff,
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
                        Order.status_changed_at,
                    )
                    .join(cutoffs, stuck_join)
                    .where(Order.tenant_id.in_(tenant_ids))
                    .order_by(Order.status_changed_at)
                    .limit(STUCK_LIST_LIMIT)
                )
            ).all()
    by_status: dict[UUID, dict[str, int]] = {}
    for tenant_id, status, count in counts:
        by_status.setdefault(tenant_id, {})[status.value] = count
    stuck_by_status: dict[UUID, dict[str, int]] = {}
    for tenant_id, status, count in stuck_counts:
        stuck_by_status.setdefault(tenant_id, {})[status.value] = count
    promised = {row.tenant_id: row for row in promises}
    transit = dict(zip(tenant_ids, transit_days, strict=True))
    return OperationsView(
        generated_at=now,
        statuses=[s.value for s in OrderStatus if s not in SETTLED],
        tenants=[
            TenantOperations(
                tenant_id=tenant_id,
                tenant_name=names.get(tenant_id, ""),
                by_status=by_status.get(tenant_id, {}),
                stuck_by_status=stuck_by_status.get(tenant_id, {}),
                on_track=promised[tenant_id].on_track if tenant_id in promised else 0,
                expected_late=promised[tenant_id].expected_late if tenant_id in promised else 0,
                late=promised[tenant_id].late if tenant_id in promised else 0,
                transit_days=transit[tenant_id],
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
                since=row.status_changed_at,
                threshold_hours=threshold[(row.tenant_id, row.status.value)],
            )
            for row in stuck_rows
        ],
        slipping=[
            SlippingOrder(
                id=row.id,
                tenant_id=row.tenant_id,
                tenant_name=names.get(row.tenant_id, ""),
                number=row.number,
                status=row.status,
                customer_name=row.customer_name,
                promised_at=row.deliver_by,
                expected_at=row.expected_at,
                expected_source=row.source,
                late=row.deliver_by < now,
                slip=row.slip,
            )
            for row in slipping_rows
        ],
    )
