"""Pooled connections are not pinged before use: a connection the server dropped is
replaced when a transaction opens, before anything of the caller's runs."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from orderdesk.core.db import _quoted, _return_to_pool, make_engine
from orderdesk.core.tenancy import Scope


async def drop_application_connections(owner_connection) -> int:
    """What a server restart or a failover does to every pooled connection of the app role."""
    return await owner_connection.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND usename <> current_user AND pid <> pg_backend_pid()"
    )


async def test_a_transaction_after_the_server_dropped_the_pool_succeeds(db, owner_connection, world):
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    async with db.transaction(scope) as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert await drop_application_connections(owner_connection) >= 1

    async with db.transaction(scope) as session:
        tenants = await session.scalar(text("SELECT current_setting('orderdesk.tenant_ids')"))
    assert str(world.a.id) in tenants


async def test_a_driver_transaction_after_the_server_dropped_the_pool_succeeds(db, owner_connection, world):
    scope = Scope(tenant_ids=frozenset({world.b.id}))
    async with db.driver_transaction(scope) as driver:
        assert await driver.fetchval("SELECT 1") == 1
    assert await drop_application_connections(owner_connection) >= 1

    async with db.driver_transaction(scope, advisory_lock="pool-recovery") as driver:
        tenants = await driver.fetchval("SELECT current_setting('orderdesk.tenant_ids')")
    assert str(world.b.id) in tenants


async def test_an_error_in_the_body_is_not_retried_and_rolls_back(db, owner_connection, world):
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    attempts = 0
    try:
        async with db.transaction(scope) as session:
            attempts += 1
            await session.execute(text("CREATE TEMP TABLE pool_probe (x int) ON COMMIT DROP"))
            await session.execute(text("SELECT 1 / 0"))
    except Exception as error:
        assert "division by zero" in str(error)
    assert attempts == 1


async def test_a_driver_transaction_gives_its_connection_back_after_an_error_or_a_cancel(db, world):
    """The pool's connection is taken without SQLAlchemy's wrapper; it must still come back,
    with nothing of the failed or cancelled transaction left on it."""
    pool = db.engine.sync_engine.pool
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    with pytest.raises(ZeroDivisionError):
        async with db.driver_transaction(scope) as driver:
            await driver.execute("CREATE TEMP TABLE driver_probe (x int)")
            raise ZeroDivisionError
    assert pool.checkedout() == 0

    entered = asyncio.Event()

    async def held() -> None:
        async with db.driver_transaction(scope) as driver:
            await driver.execute("CREATE TEMP TABLE driver_probe (x int)")
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(held())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.checkedout() == 0

    async with db.driver_transaction(scope) as driver:
        # Both transactions rolled back: their temporary table is gone.
        assert await driver.fetchval("SELECT to_regclass('pg_temp.driver_probe')") is None


async def test_a_driver_transaction_sets_its_extra_settings_for_itself_only(db, world):
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    async with db.driver_transaction(
        scope, extra_settings={"plan_cache_mode": "force_generic_plan"}, advisory_lock="settings-probe"
    ) as driver:
        assert await driver.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await driver.fetchval("SELECT current_setting('orderdesk.tenant_ids')") == f"{{{world.a.id}}}"
    async with db.driver_transaction(scope) as driver:
        assert await driver.fetchval("SHOW plan_cache_mode") == "auto"


async def test_a_driver_transaction_whose_opening_fails_leaves_no_transaction_on_the_pool(db, world):
    """BEGIN and the scope travel together; when the scope statement fails (here: its
    advisory lock waits past the lock timeout), the pool must not get the half-opened
    transaction back, or the next user of the connection could not begin one."""
    pool = db.engine.sync_engine.pool
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    async with db.driver_transaction(scope, advisory_lock="held-elsewhere"):
        with pytest.raises(Exception, match="lock timeout"):
            async with db.driver_transaction(
                scope, extra_settings={"lock_timeout": "50ms"}, advisory_lock="held-elsewhere"
            ):
                pass
    assert pool.checkedout() == 0
    # The connection just given back (the pool hands out the most recent first) is idle,
    # not inside the failed transaction (which the next session's BEGIN would trip over).
    pooled = await db.engine.raw_connection()
    try:
        assert not pooled.driver_connection.is_in_transaction()
    finally:
        await _return_to_pool(pooled)


def test_scope_values_that_could_end_a_literal_are_refused():
    assert _quoted("it's") == "'it''s'"
    for bad in ("a\\', true); --", "nul\x00"):
        with pytest.raises(ValueError, match="not allowed"):
            _quoted(bad)


@pytest.mark.parametrize(("max_overflow", "second_connects"), [("default", False), (1, True)])
async def test_max_overflow_decides_whether_a_busy_pool_connects_or_waits(
    settings, max_overflow, second_connects
):
    """ORDERDESK_DB_MAX_OVERFLOW: by default the next caller of a busy pool waits for a
    pooled connection instead of paying for a new one; with overflow it connects."""
    if max_overflow == "default":
        assert settings.db_max_overflow == 0  # ORDERDESK_DB_MAX_OVERFLOW unset
        engine = make_engine(settings.app_url, pool_size=1)
    else:
        engine = make_engine(settings.app_url, pool_size=1, max_overflow=max_overflow)
    try:
        async with engine.connect() as first:
            await first.execute(text("SELECT 1"))

            async def second() -> int:
                async with engine.connect() as connection:
                    return await connection.scalar(text("SELECT 2"))

            if second_connects:
                assert await asyncio.wait_for(second(), timeout=10) == 2
            else:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(second(), timeout=0.5)
        # Once the first is back, a waiting caller gets it.
        async with engine.connect() as again:
            assert await again.scalar(text("SELECT 3")) == 3
    finally:
        await engine.dispose()


@pytest.mark.parametrize("opener", ["other_scope", "extra_settings", "driver"])
async def test_a_request_never_holds_two_connections(settings, world, opener):
    """A request that authenticated by API key holds the lookup's transaction for its work.
    When its work cannot continue that one, it is given back first: on a pool of one
    connection without overflow the work still gets a connection instead of waiting
    for its own request to finish."""
    from orderdesk.core.db import Database

    engine = make_engine(settings.app_url, pool_size=1, max_overflow=0)
    database = Database(engine)
    scope = Scope(tenant_ids=frozenset({world.a.id}))
    try:
        request_db = database.continuing(await database.begin(scope), scope)
        async with asyncio.timeout(10):
            if opener == "driver":
                async with request_db.driver_transaction(scope) as driver:
                    assert await driver.fetchval("SELECT 1") == 1
            else:
                other = Scope(tenant_ids=frozenset({world.b.id})) if opener == "other_scope" else scope
                extra = {"lock_timeout": "1s"} if opener == "extra_settings" else None
                async with request_db.transaction(other, extra_settings=extra) as session:
                    assert await session.scalar(text("SELECT 1")) == 1
            await request_db.release_open_transaction()  # what the request does at its end
    finally:
        await engine.dispose()
