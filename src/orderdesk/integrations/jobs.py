"""Worker side of webhooks: the NOTIFY listener, the dispatch job and the periodic sweep.

Prompt: the outbox trigger NOTIFYs on commit; each worker's listener wakes that
worker's running dispatch loop, which takes the new events at once, in the same
process (no queue hop and no polling delay between a commit and its delivery).
Safe: a cron sweep enqueues a dispatch job every few seconds anyway, so a lost
notification, a broken listener, a flushed Redis or a killed job only delays
delivery. Several dispatches may run at once (on one or many workers): claims use
SKIP LOCKED and leases, so they never deliver the same row concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import httpx
import structlog
from sqlalchemy.engine import URL

from orderdesk.core import queue
from orderdesk.core.tenancy import Scope
from orderdesk.integrations import delivery
from orderdesk.tenants.services import all_tenant_ids

log = structlog.get_logger("orderdesk.webhooks")

NOTIFY_CHANNEL = "orderdesk_outbox"
DISPATCH_JOB = "dispatch_webhooks"
SWEEP_EVERY_SECONDS = 5
# After its last work, the notified dispatch loop stays this long for more events before
# it ends (and looks up the tenants afresh when woken again).
LINGER_SECONDS = 2.0
NOTIFIED_BUDGET_SECONDS = 60.0


def dispatch_job_id() -> str:
    # One queued dispatch per half second is plenty: a running dispatch drains everything due.
    return f"dispatch:{int(time.time() * 2)}"


async def dispatch_webhooks(ctx: dict[str, Any]) -> int:
    """Deliver whatever is due, for every tenant: by waking this worker's dispatch loop
    when it runs (a second loop beside it would only compete for the same rows), or
    here."""
    loop_task = ctx.get("notified_dispatch")
    if loop_task is not None and not loop_task.done():
        ctx["outbox_notified"].set()
        return 0
    db = ctx["db"]
    scope = Scope(tenant_ids=await all_tenant_ids(db))
    if not scope.tenant_ids:
        return 0
    return await delivery.dispatch(
        db,
        ctx["http"],
        ctx["delivery_policy"],
        scope,
        gate=delivery.RateGate(ctx.get("redis")),
        budget_seconds=ctx.get("dispatch_budget_seconds", 40.0),
    )


async def sweep_webhooks(ctx: dict[str, Any]) -> None:
    """Cron: make sure a dispatch runs even if every notification was lost."""
    await queue.enqueue(ctx["redis"], DISPATCH_JOB, job_id=dispatch_job_id())


async def start(ctx: dict[str, Any], settings) -> None:
    """Worker start-up: HTTP client, policy, the LISTEN connection and the dispatch loop it wakes."""
    ctx["http"] = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        follow_redirects=False,
    )
    ctx["delivery_policy"] = delivery.DeliveryPolicy.from_settings(settings)
    ctx["outbox_notified"] = asyncio.Event()
    ctx["notified_dispatch"] = asyncio.create_task(_dispatch_when_notified(ctx))
    ctx["listener"] = asyncio.create_task(_listen(ctx, settings.app_url))


async def stop(ctx: dict[str, Any]) -> None:
    """Stop listening; the dispatch loop records what it posted and hands back the rest."""
    for name in ("listener", "notified_dispatch"):
        if task := ctx.get(name):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if http := ctx.get("http"):
        await http.aclose()


async def _dispatch_when_notified(ctx: dict[str, Any]) -> None:
    """Deliver in this process whenever events commit, and every few seconds anyway (retries
    come due without a NOTIFY; and this way a worker sweeps even while Redis is down). One
    loop per worker: each NOTIFY wakes the loop that is running (or starts the next one)."""
    notified: asyncio.Event = ctx["outbox_notified"]
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(notified.wait(), timeout=SWEEP_EVERY_SECONDS)
        try:
            scope = Scope(tenant_ids=await all_tenant_ids(ctx["db"]))
            if scope.tenant_ids:
                await delivery.dispatch(
                    ctx["db"],
                    ctx["http"],
                    ctx["delivery_policy"],
                    scope,
                    gate=delivery.RateGate(ctx.get("redis")),
                    budget_seconds=NOTIFIED_BUDGET_SECONDS,
                    wake=notified,
                    linger_seconds=LINGER_SECONDS,
                )
            else:
                notified.clear()
        except Exception as exc:
            # The sweep's dispatch covers for us meanwhile.
            log.warning("notified_dispatch_failed", error=str(exc))
            await asyncio.sleep(1)


async def _listen(ctx: dict[str, Any], url: URL) -> None:
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    notified: asyncio.Event = ctx["outbox_notified"]

    def on_notify(*_args) -> None:
        notified.set()

    connection: asyncpg.Connection | None = None
    while True:
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(NOTIFY_CHANNEL, on_notify)
            # Anything committed while we were not listening.
            notified.set()
            # asyncpg reports a lost connection only through this flag: look once a second.
            while not connection.is_closed():  # noqa: ASYNC110
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            raise
        except Exception as exc:
            log.warning("outbox_listener_reconnecting", error=str(exc))
            await asyncio.sleep(1)
