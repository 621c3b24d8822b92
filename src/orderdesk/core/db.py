"""Database plumbing: the declarative base, the engines, and scoped transactions.

Two roles touch the database. The owner runs migrations and the admin CLI; the
application role owns nothing and has no BYPASSRLS, so row-level security filters
every query it makes, whatever the code forgets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from sqlalchemy import DateTime, MetaData, Uuid, func
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orderdesk.core import events
from orderdesk.core.tenancy import (
    API_KEY_SETTING,
    TENANTS_SETTING,
    USER_SETTING,
    Scope,
    apply_scope,
    scope_settings,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True), UUID: Uuid}


def created_at_column() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def make_engine(url: URL, *, pool_size: int = 10, application_name: str = "orderdesk") -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )


class Database:
    """The application's connection pool and its one way in: a scoped transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def transaction(self, scope: Scope) -> AsyncIterator[AsyncSession]:
        """Open a transaction limited to `scope`; commits on success, rolls back on error.

        The scope is set with transaction-local settings before any statement runs, so
        row-level security sees exactly the tenants the caller may touch.
        """
        async with self.sessionmaker() as session, session.begin():
            await apply_scope(session, scope)
            yield session
            # Side effects of what the body recorded commit with it, or not at all.
            await events.dispatch(session)

    @asynccontextmanager
    async def driver_transaction(
        self, scope: Scope, *, advisory_lock: str | None = None
    ) -> AsyncIterator[Any]:
        """A scoped transaction on the driver's own connection (asyncpg), from the same pool.

        For the few hot paths where the ORM's cost per statement is most of the work
        (the work queue's Get next, measured in bench/claims.py). Statements use `$1`
        parameters. The scope is set exactly as in `transaction`, so row-level security
        applies the same; no domain events are dispatched (such paths record none).
        `advisory_lock` takes that transaction-level advisory lock (by name) in the same
        round trip, before any statement of the body runs.
        """
        async with self.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            async with driver.transaction():
                if advisory_lock is None:
                    await driver.execute(_SCOPE_SQL, *scope_settings(scope))
                else:
                    await driver.execute(_SCOPE_AND_LOCK_SQL, *scope_settings(scope), advisory_lock)
                yield driver

    async def dispose(self) -> None:
        await self.engine.dispose()


_SCOPE_SQL = (
    f"SELECT set_config('{TENANTS_SETTING}', $1, true), set_config('{USER_SETTING}', $2, true),"
    f" set_config('{API_KEY_SETTING}', $3, true)"
)
_SCOPE_AND_LOCK_SQL = _SCOPE_SQL + ", pg_advisory_xact_lock(hashtextextended($4, 0))"
