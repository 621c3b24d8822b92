"""Row-level security underneath the application: checked on the migrated schema itself."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import World

TENANT_TABLES_SQL = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy,
       EXISTS (
           SELECT 1 FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = 'tenant_id'
       ) AS tenant_in_pk
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE c.relkind IN ('r', 'p')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
              AND NOT a.attisdropped)
ORDER BY c.relname
"""


def _dsn(url: str, **changes) -> str:
    return make_url(url).set(drivername="postgresql", **changes).render_as_string(hide_password=False)


async def tenant_tables(owner_connection) -> list[asyncpg.Record]:
    return await owner_connection.fetch(TENANT_TABLES_SQL)


async def test_every_tenant_table_forces_rls_with_a_policy_and_tenant_in_pk(owner_connection):
    rows = await tenant_tables(owner_connection)
    assert len(rows) >= 3, "expected the tenant-owned tables of the spine at least"
    problems = [
        f"{r['relname']}: "
        + ", ".join(
            what
            for what, ok in (
                ("RLS not enabled", r["relrowsecurity"]),
                ("RLS not forced", r["relforcerowsecurity"]),
                ("no policy", r["has_policy"]),
                ("tenant_id not in primary key", r["tenant_in_pk"]),
            )
            if not ok
        )
        for r in rows
        if not (r["relrowsecurity"] and r["relforcerowsecurity"] and r["has_policy"] and r["tenant_in_pk"])
    ]
    assert problems == []


async def test_foreign_keys_between_tenant_tables_include_tenant_id(owner_connection):
    tenant_owned = {r["relname"] for r in await tenant_tables(owner_connection)}
    rows = await owner_connection.fetch(
        """
        SELECT con.conname, src.relname AS source, dst.relname AS target,
               ARRAY(SELECT a.attname FROM pg_attribute a
                     WHERE a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)) AS columns
        FROM pg_constraint con
        JOIN pg_class src ON src.oid = con.conrelid
        JOIN pg_class dst ON dst.oid = con.confrelid
        WHERE con.contype = 'f'
        """
    )
    missing = [
        r["conname"]
        for r in rows
        if r["source"] in tenant_owned and r["target"] in tenant_owned and "tenant_id" not in r["columns"]
    ]
    assert missing == []


async def test_application_role_cannot_bypass_rls(owner_connection, settings):
    role = await owner_connection.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", settings.app_database_role
    )
    assert role is not None
    assert not role["rolsuper"] and not role["rolbypassrls"]
    owners = await owner_connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = $1",
        settings.app_database_role,
    )
    assert owners == [], "the application role must not own tables (owners can drop policies)"


@pytest.fixture
async def app_connection(settings):
    connection = await asyncpg.connect(_dsn(settings.database_url, username=settings.app_database_role))
    yield connection
    await connection.close()


async def test_tenant_a_sees_no_row_of_tenant_b_in_any_table(world: World, app_connection, owner_connection):
    tables = [r["relname"] for r in await tenant_tables(owner_connection)]
    # Make sure B really has rows in these tables, or the check proves nothing.
    rows_of_b = {
        t: await owner_connection.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", world.b.id)
        for t in tables
    }
    rows_of_a = {
        t: await owner_connection.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", world.a.id)
        for t in tables
    }
    assert sum(rows_of_b.values()) > 0
    async with app_connection.transaction():
        await app_connection.execute(
            "SELECT set_config('orderdesk.tenant_ids', $1, true)", "{" + str(world.a.id) + "}"
        )
        for table in tables:
            foreign = await app_connection.fetchval(
                f"SELECT count(*) FROM (SELECT * FROM {table}) t WHERE tenant_id <> $1", world.a.id
            )
            assert foreign == 0, f"{table} leaked {foreign} foreign rows"
            own = await app_connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1", world.a.id
            )
            assert own == rows_of_a[table], f"{table}: the scope hides A's own rows"


async def test_no_tenant_set_means_no_rows(world: World, app_connection, owner_connection):
    for r in await tenant_tables(owner_connection):
        count = await app_connection.fetchval(f"SELECT count(*) FROM {r['relname']}")
        assert count == 0, f"{r['relname']} visible without a tenant scope"


async def test_writing_a_row_for_another_tenant_fails(world: World, app_connection, owner_connection):
    tables = [r["relname"] for r in await tenant_tables(owner_connection)]
    tried = 0
    for table in tables:
        async with app_connection.transaction():
            await app_connection.execute(
                "SELECT set_config('orderdesk.tenant_ids', $1, true)", "{" + str(world.a.id) + "}"
            )
            has_row = await app_connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1", world.a.id
            )
            if not has_row:
                continue
            tried += 1
            # Copy one of A's rows, relabelled as B's: RLS (or the missing grant) must refuse it.
            with pytest.raises((asyncpg.InsufficientPrivilegeError,)) as refused:
                await app_connection.execute(
                    f"""INSERT INTO {table}
                        SELECT (jsonb_populate_record(NULL::{table},
                                to_jsonb(t) || jsonb_build_object('tenant_id', $2::uuid))).*
                        FROM {table} t WHERE tenant_id = $1 LIMIT 1""",
                    world.a.id,
                    world.b.id,
                )
            assert "row-level security" in str(refused.value) or "permission denied" in str(refused.value)
    assert tried >= 3
