"""What the benchmarks share for diagnosis: measuring what one index costs by running without it."""

from __future__ import annotations

import argparse


def add_drop_index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        metavar="NAME",
        help="Diagnosis: drop this index after the set-up (repeatable), to measure what it costs.",
    )


async def drop_indexes(conn, names: list[str]) -> None:
    """Drop the named indexes (an asyncpg connection as the owner); an unknown name ends the run."""
    import asyncpg

    for name in names:
        try:
            await conn.execute(f'DROP INDEX "{name}"')
        except asyncpg.UndefinedObjectError:
            raise SystemExit(f"--drop-index {name}: the benchmark's database has no such index") from None
