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


def add_explain_claims_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--explain-claims",
        type=int,
        default=0,
        metavar="N",
        help="Diagnosis: at the end of each OrderDesk phase (a report still open), run Get next's"
        " claim statement for N agents under EXPLAIN ANALYZE, rolled back, and print the buffers"
        " each scan touched.",
    )


def buffers_per_scan(plan: list) -> dict[str, int]:
    """Shared buffers each scan of an `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` plan touched,
    summed per index (or relation, for other scans). A scan's count includes the init-plans
    it ran first."""
    touched: dict[str, int] = {}

    def walk(node: dict) -> None:
        name = node.get("Index Name") or node.get("Relation Name")
        if name and "Scan" in node["Node Type"]:
            touched[name] = touched.get(name, 0) + node["Shared Hit Blocks"] + node["Shared Read Blocks"]
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return touched
