"""The work queue's floors: where Get next starts its scan of the queue, and how they move.

Get next walks `ix_work_items_queue` (open items, most urgent first) until it meets
an item the agent may take. Each claim leaves the claimed item's old entry at the
head of that index. Normally the next scan that passes it marks it dead and later
scans step over it for almost nothing. But while any transaction older than the
claim is still open (a long report, a backup's snapshot), PostgreSQL must keep the
old row version, so every scan visits it again, and the walk grows with every claim
made since that transaction began (bench/claims.py, phases "+report").

A floor bounds the walk: per tenant, a due time such that no open item of the
tenant that one of its agents may take is due earlier. Get next starts at the
lowest floor of the agent's tenants (an index condition on `due_at`), past every
entry below it, dead or alive. A tenant without a floor row has no floor yet.

The database keeps the rule true, whoever writes:

- Triggers (migration 0021) lower a floor to an item's due time when the item
  becomes open or more urgent (created, handed back, lease expired, snooze over,
  clock resumed, policy changed) or needs other skills; and to minus infinity when
  an agent assignment is added or changed, since someone may now take what nobody
  could. Each takes the tenant's floor lock, shared, first.
- Only `raise_floors` raises them: to the due time of the tenant's most urgent
  open item that some assigned agent may take (infinity when there is none). It
  holds the tenant's floor lock exclusively, so no transaction that opens an item
  of the tenant is in progress, and reads after taking it, so it sees every item
  opened before. A tenant whose lock is busy is skipped until the next raise.

Items that no assigned agent may take can lie below a floor: no agent's Get next
could return them anyway, and an administrator's Get next does not use floors.

Get next raises the floors of the agent's tenants after its claim, at most once per
`RAISE_EVERY` per tenant and process, so a claim walks past only what was claimed
since the last raise.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from uuid import UUID

from orderdesk.core.db import GENERIC_PLANS, Database
from orderdesk.core.tenancy import Scope
from orderdesk.workqueue.models import assignment_fits_sql

RAISE_EVERY = 1.0  # seconds, per tenant and process

# For the claim statement: the lowest floor of the agent's tenants, or minus infinity
# while one of them has none (`:tenant_ids` holds each tenant once).
LOWEST_FLOOR_SQL = """(
    SELECT CASE WHEN count(*) = cardinality(CAST(:tenant_ids AS uuid[])) THEN min(f.due_floor)
                ELSE CAST('-infinity' AS timestamptz) END
    FROM work_queue_floors f WHERE f.tenant_id = ANY (CAST(:tenant_ids AS uuid[])))"""

# The tenants whose floor lock is free now, taken exclusively until commit.
_LOCK_FREE_TENANTS = """
SELECT coalesce(array_agg(t), '{}') FROM unnest(CAST($1 AS uuid[])) AS t
WHERE pg_try_advisory_xact_lock(orderdesk_work_floor_key(t))
"""

# Each tenant's new floor: the due time of its most urgent open item some agent may take,
# looked for from the present floor up (nothing lies below it). A separate statement from
# the locking one, so that its snapshot is taken after the locks.
#
# The present floor reaches the scan as a column of a joined sub-query, so that it is an
# index condition: the walk starts at the floor. Written inside the scan's WHERE (a
# correlated sub-select, or COALESCE around a joined column), it was only a filter, since
# row-level security lets no expression it cannot prove leakproof narrow the index; then
# every raise walked the queue from its very start, which under a long report holds every
# entry claimed since the report began (bench/claims.py, "+report" over five minutes).
_RAISE = f"""
INSERT INTO work_queue_floors AS f (tenant_id, due_floor, changed_at)
SELECT t.tenant_id, coalesce(head.due_at, CAST('infinity' AS timestamptz)), now()
FROM unnest(CAST($1 AS uuid[])) AS t(tenant_id)
CROSS JOIN LATERAL (
    SELECT coalesce(max(x.due_floor), CAST('-infinity' AS timestamptz)) AS due_floor
    FROM work_queue_floors x WHERE x.tenant_id = t.tenant_id) present
LEFT JOIN LATERAL (
    SELECT w.due_at FROM work_items w
    WHERE w.status = 'open' AND w.tenant_id = t.tenant_id AND w.due_at >= present.due_floor
      AND EXISTS (SELECT 1 FROM agent_assignments a
                  WHERE a.tenant_id = w.tenant_id AND {assignment_fits_sql("w")})
    ORDER BY w.due_at, w.priority DESC, w.value_minor DESC, w.client_tier, w.created_at, w.id
    LIMIT 1) head ON true
ON CONFLICT (tenant_id) DO UPDATE SET due_floor = excluded.due_floor, changed_at = excluded.changed_at
WHERE f.due_floor < excluded.due_floor
"""  # noqa: S608 (SQL of this module's own making, no input)

_raised_at: dict[UUID, float] = {}


def due_for_raise(tenant_ids: Iterable[UUID]) -> list[UUID]:
    """Those of `tenant_ids` whose floor this process has not raised for `RAISE_EVERY`;
    marked as raised now, so that concurrent callers do not raise them too."""
    now = time.monotonic()
    due = sorted(t for t in tenant_ids if now - _raised_at.get(t, -RAISE_EVERY) >= RAISE_EVERY)
    if len(_raised_at) > 10_000:
        _raised_at.clear()
    for tenant_id in due:
        _raised_at[tenant_id] = now
    return due


async def raise_floors(db: Database, tenant_ids: Iterable[UUID]) -> list[UUID]:
    """Raise the floors of `tenant_ids` as far as their open items allow; returns the
    tenants raised (or found in place), without those whose floor lock was busy."""
    tenants = sorted(set(tenant_ids))
    if not tenants:
        return []
    async with db.driver_transaction(
        Scope(tenant_ids=frozenset(tenants)), extra_settings=GENERIC_PLANS
    ) as driver:
        locked = await driver.fetchval(_LOCK_FREE_TENANTS, tenants)
        if locked:
            await driver.execute(_RAISE, locked)
    return sorted(locked)
