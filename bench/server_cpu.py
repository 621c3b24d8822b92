"""CPU time of the PostgreSQL backends serving a benchmark's database, read from /proc.

Shared by the benchmark scripts that report the database's CPU per unit of work beside
their own (the client's) CPU: on a machine where both share two cores, the sum is what
limits the rate.
"""

from __future__ import annotations

import os
from pathlib import Path


async def backend_pids(owner_dsn: str) -> list[int]:
    """The server processes of every other session on the database `owner_dsn` names."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes from /proc (0 for those gone or unreadable)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks
