"""Worker side of the work queue: one periodic sweep.

Every 15 seconds: items whose lease expired go back to the queue, snoozed items
that are due wake up, and newly breached items are marked escalated (the lead's
board shows them). "Get next" does the first two itself as well, so a stopped
worker only delays escalation marks. The sweep may run more than once or on
several workers at the same time: it uses SKIP LOCKED and conditional updates.
"""

from __future__ import annotations

from typing import Any

from orderdesk.tenants.services import all_tenant_ids
from orderdesk.workqueue import services

SWEEP_EVERY_SECONDS = 15


async def sweep_work_queue(ctx: dict[str, Any]) -> int:
    """Returns how many items were newly escalated."""
    db = ctx["db"]
    return await services.sweep_work_queue(db, await all_tenant_ids(db))
