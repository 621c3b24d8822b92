"""Worker side of outbound communication: the send job, its periodic sweep and the NOTIFY listener.

Prompt: a reply's transaction NOTIFYs `orderdesk_comms_outbound`, delivered on
commit; the listener enqueues a send at once. Safe: the sweep enqueues a send every
few seconds anyway, so a lost notification, a flushed Redis or a killed job only
delays a message (they stay `queued` in PostgreSQL until a send records them).
Several send jobs may run at once: claims use SKIP LOCKED and a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL

from orderdesk.comms import sending
from orderdesk.comms.outbound import NOTIFY_CHANNEL
from orderdesk.core import queue
from orderdesk.core.tenancy import Scope
from orderdesk.tenants.services import all_tenant_ids

log = structlog.get_logger("orderdesk.comms.jobs")

SEND_JOB = "send_outbound_messages"
SWEEP_EVERY_SECONDS = 10


def send_job_id() -> str:
    # One queued send per half second is plenty: a running send drains everything due.
    return f"comms-send:{int(time.time() * 2)}"


async def send_outbound_messages(ctx: dict[str, Any]) -> int:
    """Send every queued reply, chat reply and platform notice that is due, for every tenant."""
    db = ctx["db"]
    scope = Scope(tenant_ids=await all_tenant_ids(db))
    if not scope.tenant_ids:
        return 0
    policy = ctx.get("mail_policy") or sending.MailPolicy.from_settings(ctx["settings"])
    return await sending.deliver_due(db, policy, scope, http=ctx.get("http"))


async def sweep_outbound_messages(ctx: dict[str, Any]) -> None:
    """Cron: make sure a send runs even if every notification was lost."""
    await queue.enqueue(ctx["redis"], SEND_JOB, job_id=send_job_id())


async def start(ctx: dict[str, Any], settings) -> None:
    """Worker start-up: the mail policy and the LISTEN connection."""
    ctx["mail_policy"] = sending.MailPolicy.from_settings(settings)
    if not settings.outbound_smtp_host:
        log.warning(
            "outbound_mail_disabled", reason="ORDERDESK_OUTBOUND_SMTP_HOST is not set; email stays queued"
        )
    ctx["comms_listener"] = asyncio.create_task(_listen(ctx, settings.app_url))


async def stop(ctx: dict[str, Any]) -> None:
    if listener := ctx.get("comms_listener"):
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _listen(ctx: dict[str, Any], url: URL) -> None:
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    def on_notify(*_args) -> None:
        task = loop.create_task(_enqueue_send(ctx))
        pending.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(pending.discard)

    connection: asyncpg.Connection | None = None
    while True:
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(NOTIFY_CHANNEL, on_notify)
            await _enqueue_send(ctx)  # anything committed while we were not listening
            while not connection.is_closed():  # noqa: ASYNC110 - asyncpg offers no close event
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            raise
        except Exception as exc:
            log.warning("comms_listener_reconnecting", error=str(exc))
            await asyncio.sleep(1)


async def _enqueue_send(ctx: dict[str, Any]) -> None:
    try:
        await queue.enqueue(ctx["redis"], SEND_JOB, job_id=send_job_id())
    except Exception as exc:
        log.warning("comms_send_enqueue_failed", error=str(exc))
