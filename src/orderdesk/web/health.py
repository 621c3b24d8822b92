"""Liveness and readiness for process managers and load balancers."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text

CHECK_TIMEOUT_SECONDS = 2.0


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


async def _check(name: str, probe) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return name, f"unavailable: {type(exc).__name__}"
    return name, "ok"


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[dict[str, object]]:
    """PostgreSQL and Redis both answer; 503 naming the one that does not."""

    async def database() -> None:
        async with state.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.queue.ping()

    checks = dict(await asyncio.gather(_check("database", database), _check("redis", redis)))
    ready = all(value == "ok" for value in checks.values())
    return Response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
