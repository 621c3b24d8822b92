"""The arq worker: every feature's jobs and periodic sweeps, with shared resources in ctx."""

from __future__ import annotations

from typing import Any

from orderdesk.accounts.jobs import purge_sign_in_state_job
from orderdesk.comms import jobs as comms_jobs
from orderdesk.core.db import Database, make_engine
from orderdesk.core.queue import JobRegistry, Periodic, job
from orderdesk.fulfillment import jobs as fulfillment_jobs
from orderdesk.imports.jobs import sweep_interrupted_imports_job
from orderdesk.integrations import jobs as webhook_jobs
from orderdesk.settings import Settings
from orderdesk.tracking import links as tracking_links
from orderdesk.tracking.jobs import purge_tracking_lookups_job
from orderdesk.web.logging import configure_logging
from orderdesk.wiring import connect_features
from orderdesk.workqueue import jobs as work_jobs


def job_registry() -> JobRegistry:
    registry = JobRegistry()
    registry.jobs += [
        purge_sign_in_state_job,
        # Dispatches are many and carry no result worth keeping; a failed one is simply
        # superseded by the next sweep, so it is not retried either.
        job(webhook_jobs.dispatch_webhooks, keep_result_seconds=0, max_tries=1),
        job(webhook_jobs.sweep_webhooks, keep_result_seconds=0, max_tries=1),
        job(work_jobs.sweep_work_queue, keep_result_seconds=0, max_tries=1),
        job(fulfillment_jobs.sweep_fulfillment, keep_result_seconds=0, max_tries=1),
        # Outbound mail and chat: like dispatches, a failed send is superseded by the next sweep.
        job(comms_jobs.send_outbound_messages, keep_result_seconds=0, max_tries=1),
        job(comms_jobs.sweep_outbound_messages, keep_result_seconds=0, max_tries=1),
        purge_tracking_lookups_job,
        job(sweep_interrupted_imports_job, keep_result_seconds=0, max_tries=1),
    ]
    registry.periodic += [
        Periodic(purge_sign_in_state_job, minute={0, 15, 30, 45}),
        Periodic(
            webhook_jobs.sweep_webhooks,
            second=set(range(0, 60, webhook_jobs.SWEEP_EVERY_SECONDS)),
            run_at_startup=True,
        ),
        Periodic(work_jobs.sweep_work_queue, second=set(range(0, 60, work_jobs.SWEEP_EVERY_SECONDS))),
        Periodic(fulfillment_jobs.sweep_fulfillment, minute=fulfillment_jobs.SWEEP_MINUTES),
        Periodic(
            comms_jobs.sweep_outbound_messages,
            second=set(range(0, 60, comms_jobs.SWEEP_EVERY_SECONDS)),
            run_at_startup=True,
        ),
        Periodic(purge_tracking_lookups_job, minute={7, 37}),
        # At start too: imports whose server died with the last deployment show as interrupted.
        Periodic(sweep_interrupted_imports_job, second={30}, run_at_startup=True),
    ]
    return registry


def worker_settings(settings: Settings) -> dict[str, Any]:
    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings.log_level, json=settings.log_json)
        connect_features()
        tracking_links.configure_public_links(settings.public_url, settings.secret_key)
        ctx["settings"] = settings
        ctx["db"] = Database(
            make_engine(
                settings.app_url,
                pool_size=10,
                max_overflow=settings.db_max_overflow,
                application_name="orderdesk-worker",
            )
        )
        await webhook_jobs.start(ctx, settings)
        await comms_jobs.start(ctx, settings)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await comms_jobs.stop(ctx)
        await webhook_jobs.stop(ctx)
        if db := ctx.get("db"):
            await db.dispose()

    return job_registry().worker_settings(
        redis_url=settings.redis_url,
        queue_name=settings.queue_name,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
