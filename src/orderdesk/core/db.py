"""Database plumbing: the declarative base, the engines, and scoped transactions.

Two roles touch the database. The owner runs migrations and the admin CLI; the
application role owns nothing and has no BYPASSRLS, so row-level security filters
every query it makes, whatever the code forgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from sqlalchemy import DateTime, MetaData, Uuid, func
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from orderdesk.core import events
from orderdesk.core.tenancy import Scope, apply_scope, scope_settings

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


# A pooled connection older than this is replaced before use (a server or proxy may drop
# long-lived connections on its own).
POOL_RECYCLE_SECONDS = 1800

# `extra_settings` for a hot path's driver transaction whose statements find rows by key:
# one generic plan per connection serves every call. Left to itself PostgreSQL plans such
# a statement afresh on each call while the generic plan's estimate looks dearer, as it
# does under row-level security (about 1 ms of server CPU per order in
# bench/allocation.py), and starts over after every VACUUM or ANALYZE that changes the
# statistics of a table the statement reads.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


def make_engine(
    url: URL, *, pool_size: int = 10, max_overflow: int = 0, application_name: str = "orderdesk"
) -> AsyncEngine:
    """The engine of one process: `pool_size` kept connections, and `max_overflow` more
    opened when those are busy and closed again on return.

    No overflow by default: a caller finding every connection busy waits for one (up to
    the pool's 30 s). Under a load above the pool, overflow connections are opened and
    closed again and again, and each pays the connect, the driver's type look-ups and
    the first plans of its statements inside somebody's request (Get next's p99 at 60 %
    of its rate: 323 ms with ten more, 17 ms without, docs/benchmarks.md). No code path
    holds two connections of one pool at once, so waiting cannot starve a request of
    its own connection (tests/integration/test_pool_recovery.py, and
    test_allocation_retry.py for requests waiting for an allocation batch)."""
    # No pre-ping: with asyncpg it costs round trips before every transaction (measured in
    # bench/claims.py). The scope statement that opens every transaction is the check
    # instead; see Database.transaction.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={"server_settings": {"application_name": application_name}},
    )


# What a transaction opener hands back: a session, or the driver connection and its transaction.
_Opened = TypeVar("_Opened")


class _OpenTransaction:
    """A transaction begun for a request (by its authentication), waiting to be continued."""

    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session: AsyncSession | None = session
        self.scope = scope

    def take(self, scope: Scope) -> AsyncSession | None:
        """The session, once, to a transaction in the same scope; None otherwise."""
        if scope != self.scope:
            return None
        session, self.session = self.session, None
        return session


class Database:
    """The application's connection pool and its one way in: a scoped transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._open_transaction: _OpenTransaction | None = None

    def continuing(self, session: AsyncSession, scope: Scope) -> Database:
        """This database as one request sees it: its first `transaction(scope)` continues
        `session` (begun, with `scope` applied) instead of opening another.

        So a request that authenticated with a database read (an API key) does its work
        in that same transaction: one connection checkout, one scope, one commit. The
        request must call `release_open_transaction` when it ends.
        """
        view = copy.copy(self)
        view._open_transaction = _OpenTransaction(session, scope)
        return view

    async def release_open_transaction(self) -> None:
        """Roll back and return the transaction `continuing` was given, if nobody took it."""
        pending = self._open_transaction
        session = pending.session if pending else None
        if session is not None:
            pending.session = None
            await session.close()

    async def _continue_open_transaction(
        self, scope: Scope, extra_settings: Mapping[str, str] | None = None
    ) -> AsyncSession | None:
        """The request's open transaction when this one can continue it (same scope, no
        extra settings); otherwise it is given back first, so that a request never holds
        two connections at once (with no pool overflow, requests doing so could starve
        each other). It held only the key lookup, which is rolled back either way."""
        pending = self._open_transaction
        if pending is None:
            return None
        session = pending.take(scope) if not extra_settings else None
        if session is None:
            await self.release_open_transaction()
        return session

    async def begin(self, scope: Scope) -> AsyncSession:
        """A session in a new transaction limited to `scope`; the caller commits and closes it."""
        return await self._open(scope)

    @asynccontextmanager
    async def transaction(
        self, scope: Scope, *, extra_settings: dict[str, str] | None = None
    ) -> AsyncIterator[AsyncSession]:
        """Open a transaction limited to `scope`; commits on success, rolls back on error.

        The scope is set with transaction-local settings before any statement runs, so
        row-level security sees exactly the tenants the caller may touch.
        `extra_settings` are set with it, in the same statement (see `apply_scope`).
        """
        session = await self._continue_open_transaction(scope, extra_settings)
        if session is None:
            session = await self._open(scope, extra_settings)
        try:
            yield session
            # Side effects of what the body recorded commit with it, or not at all.
            await events.dispatch(session)
            await session.commit()
        finally:
            await session.close()  # rolls back whatever did not commit

    async def _open(self, scope: Scope, extra_settings: dict[str, str] | None = None) -> AsyncSession:
        """A session in a new transaction with `scope` (and `extra_settings`) applied."""

        async def begin() -> AsyncSession:
            session = self.sessionmaker()
            try:
                await session.begin()
                await apply_scope(session, scope, extra_settings=extra_settings)
            except BaseException as error:
                if _from_dropped_connection(error) and not _invalidated_by_sqlalchemy(error):
                    # A goodbye SQLAlchemy did not read as a disconnect: never reuse this one.
                    await session.invalidate()
                await session.close()
                raise
            return session

        return await self._begin_on_a_live_connection(begin)

    @asynccontextmanager
    async def driver_transaction(
        self,
        scope: Scope,
        *,
        advisory_lock: str | None = None,
        extra_settings: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Any]:
        """A scoped transaction on the driver's own connection (asyncpg), from the same pool.

        For the few hot paths where the ORM's cost per statement is most of the work
        (the work queue's Get next, measured in bench/claims.py). Statements use `$1`
        parameters. The scope is set exactly as in `transaction`, so row-level security
        applies the same; no domain events are dispatched (such paths record none).
        `advisory_lock` takes that transaction-level advisory lock (by name), and
        `extra_settings` (name → value) are set transaction-local, both in the same round
        trip, before any statement of the body runs.
        """
        opening = "BEGIN; " + _scope_statement(scope, advisory_lock, extra_settings)
        # A driver transaction never continues the request's open one: that goes back first.
        await self.release_open_transaction()

        async def begin() -> tuple[PoolProxiedConnection, Any]:
            # The pool's connection without SQLAlchemy's Connection around it: Get next runs
            # two of these per cycle, and that wrapper's checkout and return were the largest
            # piece of the cycle's Python (bench/claims.py).
            pooled = await self.engine.raw_connection()
            driver = pooled.driver_connection
            try:
                # BEGIN and the scope in one round trip (the simple query protocol runs both).
                await driver.execute(opening)
            except BaseException as error:
                if _from_dropped_connection(error):
                    await greenlet_spawn(pooled.invalidate)
                else:
                    # The pool does not end a transaction SQLAlchemy did not begin.
                    with contextlib.suppress(Exception):
                        await _end_transaction(driver, "ROLLBACK")
                await _return_to_pool(pooled)
                raise
            return pooled, driver

        pooled, driver = await self._begin_on_a_live_connection(begin)
        try:
            try:
                yield driver
            except BaseException:
                await _end_transaction(driver, "ROLLBACK")
                raise
            await _end_transaction(driver, "COMMIT")
        finally:
            await _return_to_pool(pooled)

    async def _begin_on_a_live_connection(self, begin: Callable[[], Awaitable[_Opened]]) -> _Opened:
        """Run `begin` (take a pooled connection, start a transaction, run the scope statement).

        Pooled connections are not pinged before use. If the scope statement, the first of
        every transaction, meets a connection the server has dropped (a restart, a
        failover), the pool's other idle connections are as dead as that one: they are
        retired and the transaction starts once more on a fresh connection. Nothing of the
        caller's has run yet. `begin` releases its own connection when it fails.
        """
        for attempt in (1, 2):
            try:
                return await begin()
            except Exception as error:
                if not _from_dropped_connection(error):
                    raise
                if not _invalidated_by_sqlalchemy(error):
                    # A goodbye SQLAlchemy did not read as a disconnect, or one on the
                    # driver's own connection, which it never sees: retire the pool here.
                    await self.engine.dispose(close=False)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def dispose(self) -> None:
        await self.engine.dispose()


async def session_driver(session: AsyncSession) -> Any:
    """The asyncpg connection under `session`: statements on it run in the session's
    transaction, under its scope, without SQLAlchemy's work per statement ($1 parameters)."""
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def _return_to_pool(pooled: PoolProxiedConnection) -> None:
    """Give a raw pooled connection back, even if the caller is cancelled meanwhile.

    Usually nothing here waits (no transaction is left for the pool to roll back); the
    pool may close a surplus connection, though, and that must not be abandoned halfway.
    """
    closing = asyncio.ensure_future(greenlet_spawn(pooled.close))
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await closing
        raise


# How asyncpg reports a connection the server closed while it sat in the pool, depending on
# when the goodbye is read: a reset socket, a closed connection, the server's shutdown
# message itself (57P01 and kin), or a protocol-state clash.
_DROPPED_CONNECTION = (
    OSError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


def _invalidated_by_sqlalchemy(error: BaseException) -> bool:
    """Whether SQLAlchemy read `error` as a disconnect itself (it then retires the pool's
    older connections on its own)."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _from_dropped_connection(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) says the server closed the connection."""
    if _invalidated_by_sqlalchemy(error):
        return True
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _DROPPED_CONNECTION):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


def _scope_statement(
    scope: Scope, advisory_lock: str | None, extra_settings: Mapping[str, str] | None
) -> str:
    """The driver transaction's first statement, its values written in: the scope, then
    `extra_settings`, then the advisory lock (taken once the settings are in place).

    The simple query protocol that lets BEGIN travel with it takes no parameters. Every
    value here is made by the platform (tenant and user ids, a key's hex digest, setting
    and lock names), and `_quoted` refuses what could end a literal early anyway.
    """
    settings = scope_settings(scope) | dict(extra_settings or {})
    calls = [f"set_config({_quoted(name)}, {_quoted(value)}, true)" for name, value in settings.items()]
    if advisory_lock is not None:
        calls.append(f"pg_advisory_xact_lock(hashtextextended({_quoted(advisory_lock)}, 0))")
    return "SELECT " + ", ".join(calls)


def _quoted(value: str) -> str:
    """`value` as an SQL string literal. Backslashes and NULs are refused rather than
    escaped, so the literal means the same whatever `standard_conforming_strings` says."""
    if "\\" in value or "\x00" in value:
        raise ValueError(f"not allowed in a transaction setting: {value!r}")
    return "'" + value.replace("'", "''") + "'"


async def _end_transaction(driver: Any, command: str) -> None:
    """COMMIT or ROLLBACK a driver transaction; a rollback is skipped when the connection
    is gone or holds no transaction (the server already ended it)."""
    if command == "ROLLBACK" and (driver.is_closed() or not driver.is_in_transaction()):
        return
    await driver.execute(command)
