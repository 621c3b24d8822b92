"""Telling a running import from one whose process is gone.

An import runs inside the request that uploads its file. If that process dies
(killed, out of memory, redeployed), nothing is left to end the import, and it
would say `running` forever. So the running process refreshes the import's
`heartbeat_at` every HEARTBEAT_SECONDS, whether or not rows are arriving (a slow
upload is alive too). An import still `running` whose heartbeat is older than
STALE_AFTER has lost its process: reading it, or the worker's sweep, marks it
`interrupted`, keeping the counters of what was committed.

Both times come from the database's clock, so servers with drifting clocks agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from uuid import UUID

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from orderdesk.core.db import Database
from orderdesk.core.tenancy import Scope
from orderdesk.imports.models import ImportStatus, OrderImport

log = structlog.get_logger("orderdesk.imports")

HEARTBEAT_SECONDS = 10.0
# Six missed heartbeats: long enough that a busy database or a paused process is not
# taken for a dead one, short enough that a user learns within a minute.
STALE_AFTER = dt.timedelta(seconds=60)

INTERRUPTED_MESSAGE = (
    "The import stopped: the server process importing the file ended (no sign of life since "
    "{since:%Y-%m-%d %H:%M:%S} UTC), after {rows} rows. The orders imported until then are kept. "
    "Upload the same file again as a new import to finish: orders already imported are counted "
    "as existing, never created twice."
)


async def _beat(db: Database, scope: Scope, tenant_id: UUID, import_id: UUID) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            async with db.transaction(scope) as session:
                await session.execute(
                    update(OrderImport)
                    .where(
                        OrderImport.tenant_id == tenant_id,
                        OrderImport.id == import_id,
                        OrderImport.status == ImportStatus.RUNNING,
                    )
                    .values(heartbeat_at=func.now())
                )
        except Exception:  # a missed beat is survivable; six in a row are what STALE_AFTER allows
            log.warning("import_heartbeat_failed", import_id=str(import_id), exc_info=True)


@contextlib.asynccontextmanager
async def beating(db: Database, scope: Scope, tenant_id: UUID, import_id: UUID) -> AsyncIterator[None]:
    """Keep the import's heartbeat fresh while the body runs."""
    task = asyncio.create_task(_beat(db, scope, tenant_id, import_id), name=f"import-heartbeat-{import_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle_stale(session: AsyncSession, rows: Iterable[OrderImport]) -> None:
    """Mark the `running` imports among `rows` whose heartbeat went quiet as `interrupted`.

    The update checks status and heartbeat again in the database, so an import that
    finished or beat meanwhile is left alone. Marked rows are updated in place.
    """
    for row in rows:
        if row.status is not ImportStatus.RUNNING:
            continue
        # Imports started before heartbeats existed have only their start time.
        since = row.heartbeat_at or row.started_at
        if since is None:
            continue
        failure = INTERRUPTED_MESSAGE.format(since=since.astimezone(dt.UTC), rows=row.rows_read)
        finished_at = await session.scalar(
            update(OrderImport)
            .where(
                OrderImport.tenant_id == row.tenant_id,
                OrderImport.id == row.id,
                OrderImport.status == ImportStatus.RUNNING,
                func.coalesce(OrderImport.heartbeat_at, OrderImport.started_at) == since,
                func.coalesce(OrderImport.heartbeat_at, OrderImport.started_at) < func.now() - STALE_AFTER,
            )
            .values(status=ImportStatus.INTERRUPTED, finished_at=func.now(), failure=failure)
            .returning(OrderImport.finished_at)
            .execution_options(synchronize_session=False)
        )
        if finished_at is None:
            continue
        log.warning("import_interrupted_process_gone", import_id=str(row.id), since=since.isoformat())
        # As committed: the session has nothing more to write for this row.
        for name, value in (
            ("status", ImportStatus.INTERRUPTED),
            ("finished_at", finished_at),
            ("failure", failure),
        ):
            set_committed_value(row, name, value)


async def sweep_interrupted_imports(db: Database, scope: Scope) -> int:
    """Mark every stale `running` import the scope reaches as `interrupted`; how many were."""
    async with db.transaction(scope) as session:
        running = list(
            await session.scalars(
                select(OrderImport).where(
                    OrderImport.tenant_id.in_(scope.tenant_ids), OrderImport.status == ImportStatus.RUNNING
                )
            )
        )
        await settle_stale(session, running)
    return sum(1 for row in running if row.status is ImportStatus.INTERRUPTED)
