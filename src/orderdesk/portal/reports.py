"""The client's reports: a read side of plain SQL over orders, work items, shipments and returns.

Every query names the client's one tenant explicitly (and runs under its
row-level-security scope), buckets by week in the tenant's own time zone, and
returns small rows that the charts and the CSV downloads share.

Definitions, so that the numbers can be checked by hand:
- SLA attainment: work items finished (status done) in the week whose finish
  time was not after their due time, over all finished items of that kind and week.
- Handling time: from an item's creation to its finish, wall-clock minutes.
- Delivery timeline: orders with a promised delivery date (`deliver_by`) whose
  last shipment was delivered, by the week of the promise: on time or late.
- Returns rate: returns requested in a week over orders delivered in that week.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text

from orderdesk.accounts.actors import Actor
from orderdesk.core import csv_safety
from orderdesk.core.db import Database
from orderdesk.core.errors import FieldError, NotFound, ValidationFailed
from orderdesk.tenants.models import Tenant

REPORTS = ("sla", "handling", "status", "delivery", "returns")
DEFAULT_WEEKS = 12
MAX_WEEKS = 104


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple]

    def csv(self) -> str:
        return (
            "\ufeff" + csv_safety.csv_line(self.columns) + "".join(csv_safety.csv_line(r) for r in self.rows)
        )


def check_weeks(value: str | int | None) -> int:
    """Raises ValidationFailed unless 1..104 whole weeks."""
    if value in (None, ""):
        return DEFAULT_WEEKS
    try:
        weeks = int(value)
    except (TypeError, ValueError):
        raise ValidationFailed([FieldError("weeks", "must be a whole number of weeks")]) from None
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValidationFailed([FieldError("weeks", f"must be between 1 and {MAX_WEEKS}")])
    return weeks


SLA_SQL = """
SELECT kind::text AS kind,
       (date_trunc('week', finished_at AT TIME ZONE :tz))::date AS week,
       count(*) AS finished,
       count(*) FILTER (WHERE due_at IS NULL OR finished_at <= due_at) AS within_sla
FROM work_items
WHERE tenant_id = :tenant AND status = 'done' AND finished_at >= :since
GROUP BY 1, 2 ORDER BY 2, 1
"""

HANDLING_SQL = """
SELECT kind::text AS kind,
       count(*) AS finished,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) / 60.0,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) / 60.0
FROM work_items
WHERE tenant_id = :tenant AND status = 'done' AND finished_at >= :since
GROUP BY 1 ORDER BY 1
"""

STATUS_SQL = """
SELECT status::text, count(*) FROM orders
WHERE tenant_id = :tenant AND created_at >= :since
GROUP BY 1 ORDER BY 2 DESC, 1
"""

DELIVERY_SQL = """
WITH delivered AS (
    SELECT o.id, o.deliver_by, max(s.delivered_at) AS delivered_at
    FROM orders o JOIN shipments s ON s.tenant_id = o.tenant_id AND s.order_id = o.id
    WHERE o.tenant_id = :tenant AND o.deliver_by IS NOT NULL AND o.deliver_by >= :since
    GROUP BY o.id, o.deliver_by
    HAVING bool_and(s.delivered_at IS NOT NULL)
)
SELECT (date_trunc('week', deliver_by AT TIME ZONE :tz))::date AS week,
       count(*) FILTER (WHERE delivered_at <= deliver_by) AS on_time,
       count(*) FILTER (WHERE delivered_at > deliver_by) AS late,
       coalesce(round((avg(extract(epoch FROM delivered_at - deliver_by) / 86400.0)
           FILTER (WHERE delivered_at > deliver_by))::numeric, 1), 0) AS avg_days_late
FROM delivered GROUP BY 1 ORDER BY 1
"""

RETURNS_SQL = """
WITH weeks AS (
    SELECT (date_trunc('week', d.delivered_at AT TIME ZONE :tz))::date AS week,
           count(*) AS delivered, 0 AS returns
    FROM (
        SELECT max(s.delivered_at) AS delivered_at
        FROM shipments s
        WHERE s.tenant_id = :tenant AND s.delivered_at >= :since
        GROUP BY s.order_id
    ) d GROUP BY 1
    UNION ALL
    SELECT (date_trunc('week', created_at AT TIME ZONE :tz))::date, 0, count(*)
    FROM returns WHERE tenant_id = :tenant AND created_at >= :since GROUP BY 1
)
SELECT week, sum(delivered)::int, sum(returns)::int FROM weeks GROUP BY 1 ORDER BY 1
"""


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


async def build_report(
    db: Database, actor: Actor, name: str, weeks: int, *, now: dt.datetime | None = None
) -> Report:
    """One report over the last `weeks` weeks of the client's tenant.

    Raises NotFound for an unknown report name or a tenant out of reach.
    """
    tenant_id: UUID | None = actor.single_tenant_id
    if name not in REPORTS or tenant_id is None:
        raise NotFound("Report")
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(weeks=weeks)
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("Report")
        params = {"tenant": tenant_id, "since": since, "tz": tenant.time_zone}
        if name == "sla":
            rows = (await session.execute(text(SLA_SQL), params)).all()
            return Report(
                "sla",
                "SLA attainment per kind and week",
                ("week", "kind", "finished", "within_sla", "attainment_percent"),
                [(w.isoformat(), k, f, m, _percent(m, f)) for k, w, f, m in rows],
            )
        if name == "handling":
            rows = (await session.execute(text(HANDLING_SQL), params)).all()
            return Report(
                "handling",
                "Handling time per kind (creation to finish)",
                ("kind", "finished", "median_minutes", "p90_minutes"),
                [(k, n, round(m, 1), round(p, 1)) for k, n, m, p in rows],
            )
        if name == "status":
            rows = (await session.execute(text(STATUS_SQL), params)).all()
            return Report("status", "Orders by status", ("status", "orders"), [tuple(r) for r in rows])
        if name == "delivery":
            rows = (await session.execute(text(DELIVERY_SQL), params)).all()
            return Report(
                "delivery",
                "Deliveries against the promised date, by week of the promise",
                ("week", "on_time", "late", "avg_days_late", "on_time_percent"),
                [(w.isoformat(), o, la, float(d), _percent(o, o + la)) for w, o, la, d in rows],
            )
        rows = (await session.execute(text(RETURNS_SQL), params)).all()
        return Report(
            "returns",
            "Returns rate by week (returns requested / orders delivered)",
            ("week", "delivered", "returns", "returns_rate_percent"),
            [(w.isoformat(), d, r, _percent(r, d)) for w, d, r in rows],
        )
