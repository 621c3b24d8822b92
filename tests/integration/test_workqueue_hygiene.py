"""An abandoned transaction cannot keep an item from the queue for long."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from sqlalchemy.engine import make_url

from orderdesk.workqueue import services as work
from tests.integration import test_workqueue
from tests.integration.test_workqueue import capture, items_of

team = test_workqueue.team  # the work queue tests' fixture: one tenant, two agents, a lead


async def test_an_abandoned_transaction_is_ended_and_its_item_comes_back(db, team, settings):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    abandoned = await asyncpg.connect(settings.app_url.set(drivername="postgresql").render_as_string(False))
    try:
        # The application role's setting in this database (migration 0010) ...
        assert await abandoned.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
        # ... shortened for this one session, so that the test need not wait a minute.
        await abandoned.execute("SET idle_in_transaction_session_timeout = '1s'")
        await abandoned.execute("BEGIN")
        await abandoned.execute(
            "SELECT set_config('orderdesk.tenant_ids', $1, true)", f"{{{team.tenant.id}}}"
        )
        locked = await abandoned.fetchval(
            "SELECT id FROM work_items WHERE tenant_id = $1 AND id = $2 FOR UPDATE", team.tenant.id, item.id
        )
        assert locked == item.id
        # While the lock is held, Get next skips the item rather than wait.
        assert await work.claim_next_work_item(db, team.agent1) is None
        await asyncio.sleep(2.5)
        claimed = await work.claim_next_work_item(db, team.agent1)
        assert claimed is not None and claimed.id == item.id
        assert abandoned.is_closed() or not await _alive(abandoned)
    finally:
        with contextlib.suppress(Exception):
            await abandoned.close()


async def _alive(connection) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return False
    return True


async def test_the_driver_path_is_scoped_like_any_transaction(db, team):
    """Get next runs on the driver's connection: row-level security must hold there too."""
    from orderdesk.core.tenancy import Scope

    await capture(db, team.tenant)
    await capture(db, team.other)
    async with db.driver_transaction(Scope(tenant_ids=frozenset({team.other.id}))) as driver:
        tenants = await driver.fetch("SELECT DISTINCT tenant_id FROM work_items")  # no filter on purpose
    assert [r["tenant_id"] for r in tenants] == [team.other.id]
    async with db.driver_transaction(Scope()) as driver:
        assert await driver.fetchval("SELECT count(*) FROM work_items") == 0
    # The outsider (an agent of the other tenant only) never gets the team's item.
    claimed = await work.claim_next_work_item(db, team.outsider)
    assert claimed is not None and claimed.tenant_id == team.other.id


@contextlib.asynccontextmanager
async def owner_connection(owner_url: str):
    """A plain driver connection as the owner, past row-level security, for catalogue checks."""
    connection = await asyncpg.connect(
        make_url(owner_url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        yield connection
    finally:
        await connection.close()


async def test_the_order_and_conversation_look_ups_keep_their_partial_indexes(owner_url):
    """Items without an order or a conversation stay out of those indexes (migration 0020), and
    an equality look-up still uses them in a plan made before its values are known."""
    async with owner_connection(owner_url) as connection:
        definitions = dict(
            await connection.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'work_items'"
                " AND indexname IN ('ix_work_items_order', 'ix_work_items_conversation')"
            )
        )
        assert definitions["ix_work_items_order"].endswith("WHERE (order_id IS NOT NULL)")
        assert definitions["ix_work_items_conversation"].endswith("WHERE (conversation_id IS NOT NULL)")
        look_ups = {
            "ix_work_items_order": "SELECT id FROM work_items WHERE tenant_id = ANY ($1) AND order_id = $2",
            "ix_work_items_conversation": "SELECT id FROM work_items"
            " WHERE tenant_id = $1 AND conversation_id = $2 AND status <> 'done'",
        }
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.execute(f"PREPARE by_order(uuid[], uuid) AS {look_ups['ix_work_items_order']}")
            await connection.execute(
                f"PREPARE by_conversation(uuid, uuid) AS {look_ups['ix_work_items_conversation']}"
            )
            by_order = await connection.fetch(
                "EXPLAIN EXECUTE by_order(ARRAY[gen_random_uuid()], gen_random_uuid())"
            )
            by_conversation = await connection.fetch(
                "EXPLAIN EXECUTE by_conversation(gen_random_uuid(), gen_random_uuid())"
            )
            assert "ix_work_items_order" in "\n".join(r[0] for r in by_order)
            assert "ix_work_items_conversation" in "\n".join(r[0] for r in by_conversation)
            await connection.execute("DEALLOCATE ALL")


async def test_the_queue_tables_vacuum_early_and_pause_as_they_go(owner_url):
    """Autovacuum starts on the queue tables at 2 % dead rows and pauses as it works
    (migration 0023): an unpaused VACUUM of the queue takes a core from Get next."""
    async with owner_connection(owner_url) as connection:
        options = {
            table: dict(option.split("=", 1) for option in reloptions or [])
            for table, reloptions in await connection.fetch(
                "SELECT relname, reloptions FROM pg_class WHERE relname IN ('work_items', 'work_claims')"
            )
        }
    for table in ("work_items", "work_claims"):
        assert options[table]["autovacuum_vacuum_scale_factor"] == "0.02"
        assert float(options[table]["autovacuum_vacuum_cost_delay"]) > 0
        assert options[table]["autovacuum_vacuum_cost_limit"] == "200"
