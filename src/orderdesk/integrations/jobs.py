"""Worker side of webhooks: the dispatch job, the periodic sweep and the NOTIFY listener.

Prompt: the outbox trigger NOTIFYs on commit; the worker's listener enqueues a
dispatch at once. Safe: a cron sweep enqueues a dispatch every few seconds anyway,
so a lost notification, a flushed Redis or a killed job only delays delivery.
Several dispatch jobs may run at once (on one or many workers): claims use SKIP
LOCKED and leases, so they never deliver the same row concurrently.
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


def dispatch_job_id() -> str:
    # One queued dispatch per half second is plenty: a running dispatch drains everything due.
    return f"dispatch:{int(time.time() * 2)}"


async def dispatch_webhooks(ctx: dict[str, Any]) -> int:
    """Deliver whatever is due, for every tenant."""
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
    """Worker start-up: HTTP client, policy, and the LISTEN connection."""
    ctx["http"] = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        follow_redirects=False,
    )
    ctx["delivery_policy"] = delivery.DeliveryPolicy.from_settings(settings)
    ctx["listener"] = asyncio.create_task(_listen(ctx, settings.app_url))


async def stop(ctx: dict[str, Any]) -> None:
    if listener := ctx.get("listener"):
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    if http := ctx.get("http"):
        await http.aclose()


async def _listen(ctx: dict[str, Any], url: URL) -> None:
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    def on_notify(*_args) -> None:
        task = loop.create_task(_enqueue_dispatch(ctx))
        pending.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(pending.discard)

    connection: asyncpg.Connection | None = None
    while True:
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(NOTIFY_CHANNEL, on_notify)
            # Anything committed while we were not listening.
            await _enqueue_dispatch(ctx)
            while not connection.is_closed():
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            raise
        except Exception as exc:
            log.warning("outbox_listener_reconnecting", error=str(exc))
            await asyncio.sleep(1)


async def _enqueue_dispatch(ctx: dict[str, Any]) -> None:
    try:
        await queue.enqueue(ctx["redis"], DISPATCH_JOB, job_id=dispatch_job_id())
    except Exception as exc:
        log.warning("dispatch_enqueue_failed", error=str(exc))
