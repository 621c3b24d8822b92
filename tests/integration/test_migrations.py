"""The schema comes from Alembic; the round trip proves every downgrade works."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
from sqlalchemy.engine import make_url

from orderdesk.core.migrations import downgrade, upgrade
from orderdesk.settings import to_asyncpg_url
from tests.conftest import create_database, drop_database


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        types = await connection.fetch(
            "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND t.typtype = 'e'"
        )
        return {r["tablename"] for r in rows} | {f"type:{r['typname']}" for r in types}
    finally:
        await connection.close()


async def test_upgrade_downgrade_upgrade(service_urls):
    name = f"orderdesk_roundtrip_{secrets.token_hex(4)}"
    url = await create_database(service_urls.database_url, name)
    try:
        await asyncio.to_thread(upgrade, url)
        first = await _tables(url)
        assert {"tenants", "users", "api_keys", "alembic_version"} <= first
        await asyncio.to_thread(downgrade, url, "base")
        assert await _tables(url) == {"alembic_version"}
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == first
    finally:
        await drop_database(service_urls.database_url, name)


async def test_models_match_the_migrations(owner_url):
    """Autogenerate against the migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from orderdesk.models import metadata

    engine = create_async_engine(to_asyncpg_url(owner_url, variable="DATABASE_URL"))
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    await engine.dispose()
    assert diff == [], diff
