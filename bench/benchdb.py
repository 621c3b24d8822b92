"""A benchmark's database of its own: created on the server, then dropped with FORCE.

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
