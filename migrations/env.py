"""Alembic environment: migrations run as the owner named by DATABASE_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from orderdesk.models import metadata
from orderdesk.settings import SettingsError, to_asyncpg_url

config = context.config
target_metadata = metadata


def _owner_url():
    # An explicit URL (set by `orderdesk migrate` or tests) wins over the environment.
    raw = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not raw:
        raise SystemExit("DATABASE_URL is not set")
    try:
        return to_asyncpg_url(raw, variable="DATABASE_URL")
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None


def run_migrations_offline() -> None:
    context.configure(url=_owner_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_owner_url(), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(run_migrations_online())
