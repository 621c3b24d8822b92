"""A benchmark's database of its own: created on the server, then dropped with FORCE; and
the platform's settings on it.

Shared by the scripts in bench/ that measure on a fresh, migrated database, so that no run
sees another's rows and nothing is left behind (the scripts migrate it themselves: some
time the migration, some fill it before the platform's settings exist).
"""

from __future__ import annotations

import secrets


def plain(url) -> str:
    """A SQLAlchemy URL as the DSN asyncpg and the migrations take (password kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, prefix: str = "orderdesk_bench_") -> tuple[str, str]:
    """A new, empty database on `server_url`'s server: (its name, the owner's DSN for it)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    name = f"{prefix}{secrets.token_hex(4)}"
    conn = await asyncpg.connect(plain(server))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, plain(server.set(database=name))


async def drop_database(server_url: str, name: str) -> None:
    """Drop `name`, ending the sessions still on it (a crashed phase may have left some)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(plain(make_url(server_url)))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def bench_settings(owner_dsn: str, redis_url: str):
    """The platform's settings on a benchmark's database: a throwaway secret, warnings only."""
    from orderdesk.settings import load_settings

    return load_settings(
        {
            "DATABASE_URL": owner_dsn,
            "REDIS_URL": redis_url,
            "ORDERDESK_SECRET_KEY": "bench-" + secrets.token_hex(24),
            "ORDERDESK_LOG_LEVEL": "WARNING",
        }
    )
