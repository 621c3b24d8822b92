"""The arq worker: every feature's jobs and periodic sweeps, with shared resources in ctx."""

from __future__ import annotations

from typing import Any

from orderdesk.accounts.jobs import purge_sign_in_state_job
from orderdesk.core.db import Database, make_engine
from orderdesk.core.queue import JobRegistry, Periodic
from orderdesk.settings import Settings
from orderdesk.web.logging import configure_logging
from orderdesk.wiring import connect_features


def job_registry() -> JobRegistry:
    registry = JobRegistry()
    registry.jobs.append(purge_sign_in_state_job)
    registry.periodic.append(Periodic(purge_sign_in_state_job, minute={0, 15, 30, 45}))
    return registry


def worker_settings(settings: Settings) -> dict[str, Any]:
    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings.log_level, json=settings.log_json)
        connect_features()
        ctx["settings"] = settings
        ctx["db"] = Database(make_engine(settings.app_url, pool_size=5, application_name="orderdesk-worker"))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if db := ctx.get("db"):
            await db.dispose()

    return job_registry().worker_settings(
        redis_url=settings.redis_url,
        queue_name=settings.queue_name,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
