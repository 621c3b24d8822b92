"""CSV import: validated rows per second and peak memory, against COPY of the same rows.

    uv run python bench/csv_import.py --rows 1000000

In a database of its own (created on the server, migrated, dropped at the end):

1. A CSV file of N rows (one line item per row, 1-3 lines per order, every order with
   an email address and a phone number) is generated on the fly and streamed through
   `imports.services.run_import`, the path behind `PUT /api/v1/orders/imports/{id}/file`:
   decoding, parsing, grouping, the API's intake rules, numbering, verification
   checks, timeline and the domain events other features react to (outbox, work
   queue), committed 200 orders per transaction as the application role under
   row-level security. Peak memory is the process's ru_maxrss after this phase.
2. The orders and order lines it stored are read back and written again, for a second
   tenant, with asyncpg's `copy_records_to_table` as the superuser: the floor for
   putting the same orders and lines into the same tables with the same indexes. Only
   the time inside COPY is counted.
3. Those rows are deleted again and the two tables vacuumed, so that the next baseline
   starts from the tables as the import left them. Then *every* row the import stored
   (every table whose row count it raised: orders, lines, verification checks,
   timeline events, outbox events, work items, the order counter) is read back and
   written again for the second tenant in the same way, tables in the order their
   foreign keys need. Every key of these tables starts with the tenant, so the rows
   keep their ids and still reference each other. Only the time inside COPY counts.

The rate of each is file rows per second; both ratios are printed (and written to
`--json`). `--without-reactions` leaves other features'
event handlers unsubscribed, to show what they cost; `--profile` prints where the
import spends its time (slower).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import resource
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from orderdesk.core.db import Database, make_engine
from orderdesk.core.migrations import upgrade
from orderdesk.devservices import MACHINE_DATABASE_URL
from orderdesk.imports import services as imports
from orderdesk.imports.schemas import ImportCreate
from orderdesk.settings import load_settings
from orderdesk.tenants import services as tenants

COLUMNS = (
    "external_ref,customer_name,customer_email,customer_phone,ship_line1,ship_line2,ship_city,"
    "ship_region,ship_postal_code,ship_country,currency,payment_status,priority,tags,notes,ship_by,"
    "deliver_by,shipping_minor,discount_minor,total_minor,sku,description,quantity,unit_price_minor,tax_minor"
)
CHUNK = 64 * 1024
LINE_PATTERN = (1, 2, 3)  # lines per order, in turn: two on average
ORDER_COLUMNS = (
    "tenant_id, id, number, external_ref, channel, status, payment_status, priority, customer_name,"
    " customer_email, customer_phone, shipping_address, billing_address, currency, subtotal_minor,"
    " tax_minor, shipping_minor, discount_minor, total_minor, ship_by, deliver_by, tags, notes,"
    " lines_fingerprint, created_at, updated_at, version, last_event_seq"
)
LINE_COLUMNS = (
    "tenant_id, order_id, line_no, sku, description, quantity, unit_price_minor, tax_minor, total_minor"
)


# Every table the import adds rows to, parents before children (foreign keys); the run
# stops if the import's row counts show any other table.
STORED_TABLES = (
    "order_counters",
    "orders",
    "order_lines",
    "verification_checks",
    "order_events",
    "outbox_events",
    "work_items",
)


def order_count(rows: int, pattern: tuple[int, ...] = LINE_PATTERN) -> int:
    """How many orders `generated_csv` makes for `rows` rows."""
    count, left = 0, rows
    while left > 0:
        left -= pattern[count % len(pattern)]
        count += 1
    return count


async def generated_csv(
    rows: int, prefix: str, pattern: tuple[int, ...] = LINE_PATTERN
) -> AsyncIterator[bytes]:
    """The file, made as it is read, in 64 KiB chunks."""
    pending, size, written, n = [COLUMNS + "\r\n"], 0, 0, 0
    while written < rows:
        lines = min(pattern[n % len(pattern)], rows - written)
        order = (
            f"{prefix}-{n:07d},Kundin {n},kundin.{n}@{prefix}.example.com,030 12{n % 100000:05d},"
            f"Hauptstraße {n % 300 + 1},,Berlin,,{10115 + n % 800},DE,EUR,paid,normal,web;bulk,"
            f"{'Bitte beim Nachbarn abgeben' if n % 5 == 0 else ''},,,495,0,,"
        )
        for line in range(lines):
            text = f"{order}SKU-{(n + line) % 400:04d},Artikel {(n + line) % 400},{line + 1},1999,380\r\n"
            pending.append(text)
            size += len(text)
        written += lines
        n += 1
        if size >= CHUNK:
            yield "".join(pending).encode()
            pending, size = [], 0
            await asyncio.sleep(0)
    yield "".join(pending).encode()


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def copy_for_tenant(
    reader, writer, table: str, names: list[str], select: str, source_tenant, target_tenant
) -> tuple[float, int]:
    """COPY what `select` reads of the source tenant into `table` again, as the target
    tenant's, in batches of 20,000 rows: seconds inside COPY, and rows copied."""
    tenant_at = names.index("tenant_id")
    spent, copied = 0.0, 0

    async def copy(batch: list[list]) -> None:
        nonlocal spent, copied
        started = time.perf_counter()
        await writer.copy_records_to_table(table, records=batch, columns=names)
        spent += time.perf_counter() - started
        copied += len(batch)

    async with reader.transaction():
        batch = []
        async for record in reader.cursor(select, source_tenant):
            row = list(record)
            row[tenant_at] = target_tenant
            batch.append(row)
            if len(batch) == 20_000:
                await copy(batch)
                batch = []
        if batch:
            await copy(batch)
    return spent, copied


async def copy_same_rows(owner_url: str, source_tenant, target_tenant) -> tuple[float, int, int]:
    """COPY the source tenant's orders and lines again for the target; seconds inside COPY."""
    reader = await asyncpg.connect(asyncpg_dsn(owner_url))
    writer = await asyncpg.connect(asyncpg_dsn(owner_url))
    spent, counts = 0.0, []
    try:
        for table, columns in (("orders", ORDER_COLUMNS), ("order_lines", LINE_COLUMNS)):
            names = [c.strip() for c in columns.split(",")]
            select = f"SELECT {columns} FROM {table} WHERE tenant_id = $1"  # noqa: S608
            tenants = (source_tenant, target_tenant)
            seconds, copied = await copy_for_tenant(reader, writer, table, names, select, *tenants)
            spent += seconds
            counts.append(copied)
    finally:
        await reader.close()
        await writer.close()
    return spent, counts[0], counts[1]


async def row_counts(owner_url: str) -> dict[str, int]:
    """Rows in every table of the schema (as the superuser: all tenants)."""
    connection = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        return {
            row["tablename"]: await connection.fetchval(f'SELECT count(*) FROM "{row["tablename"]}"')  # noqa: S608
            for row in tables
        }
    finally:
        await connection.close()


async def remove_copied_orders(owner_url: str, target_tenant) -> None:
    """Take the first baseline's rows out again, so the second starts from the import's tables."""
    connection = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        await connection.execute("DELETE FROM order_lines WHERE tenant_id = $1", target_tenant)
        await connection.execute("DELETE FROM orders WHERE tenant_id = $1", target_tenant)
        await connection.execute("VACUUM (ANALYZE) orders, order_lines")
    finally:
        await connection.close()


async def copy_all_stored_rows(owner_url: str, source_tenant, target_tenant) -> tuple[float, dict[str, int]]:
    """COPY every row the import stored for the source tenant again for the target.

    Seconds inside COPY, and the rows copied per table. Every column is copied except the
    generated ones (PostgreSQL computes those, as it did for the import).
    """
    reader = await asyncpg.connect(asyncpg_dsn(owner_url))
    writer = await asyncpg.connect(asyncpg_dsn(owner_url))
    spent, counts = 0.0, {}
    try:
        for table in STORED_TABLES:
            names = [
                row["column_name"]
                for row in await reader.fetch(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER'"
                    " ORDER BY ordinal_position",
                    table,
                )
            ]
            columns = ", ".join(f'"{name}"' for name in names)
            select = f'SELECT {columns} FROM "{table}" WHERE tenant_id = $1'  # noqa: S608
            tenants = (source_tenant, target_tenant)
            seconds, copied = await copy_for_tenant(reader, writer, table, names, select, *tenants)
            spent += seconds
            counts[table] = copied
    finally:
        await reader.close()
        await writer.close()
    return spent, counts


async def main(args: argparse.Namespace) -> None:
    server = args.server
    name = f"orderdesk_bench_csv_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    owner_url = make_url(server).set(database=name).render_as_string(hide_password=False)
    db = None
    try:
        await asyncio.to_thread(upgrade, owner_url)
        settings = load_settings(
            {"DATABASE_URL": owner_url, "ORDERDESK_SECRET_KEY": "bench-" + "x" * 32, "ORDERDESK_ENV": "test"}
        )
        if not args.without_reactions:
            from orderdesk.wiring import connect_features

            connect_features()
        db = Database(make_engine(settings.app_url, pool_size=2))
        system = await tenants.system_actor(db)
        source = await tenants.create_tenant(db, system, slug=f"csv-{secrets.token_hex(3)}", name="Source")
        target = await tenants.create_tenant(db, system, slug=f"copy-{secrets.token_hex(3)}", name="Copy")
        system = await tenants.system_actor(db)  # now reaching both
        job = await imports.create_import(db, system, ImportCreate(filename="bench.csv", tenant_id=source.id))

        started = time.perf_counter()
        async for _ in generated_csv(args.rows, "gen", args.lines):
            pass
        generation = time.perf_counter() - started

        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        counts_before = await row_counts(owner_url)
        started, cpu = time.perf_counter(), time.process_time()
        report = await imports.run_import(db, system, job.id, generated_csv(args.rows, "ord", args.lines))
        import_seconds, import_cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler:
            profiler.disable()
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        counts_after = await row_counts(owner_url)
        stored = {
            table: counts_after[table] - counts_before.get(table, 0)
            for table in counts_after
            if counts_after[table] != counts_before.get(table, 0)
        }
        if set(stored) != set(STORED_TABLES):
            raise SystemExit(f"the import added rows to {sorted(stored)}, expected {sorted(STORED_TABLES)}")
        expected_orders = order_count(args.rows, args.lines)
        if (report.rows_read, report.orders_created, report.rows_rejected) != (args.rows, expected_orders, 0):
            raise SystemExit(f"unexpected report: {report.model_dump_json(indent=1)}")

        copy_seconds, orders, lines = await copy_same_rows(owner_url, source.id, target.id)
        assert (orders, lines) == (expected_orders, args.rows)
        await remove_copied_orders(owner_url, target.id)
        copy_all_seconds, copied = await copy_all_stored_rows(owner_url, source.id, target.id)
        if copied != stored:
            raise SystemExit(f"copied {copied}, but the import stored {stored}")

        import_rate, copy_rate = args.rows / import_seconds, args.rows / copy_seconds
        copy_all_rate = args.rows / copy_all_seconds
        stored_rows = sum(stored.values())
        file_mib = report.bytes_read / 2**20
        print(
            f"rows {args.rows:,} ({expected_orders:,} orders, {file_mib:.0f} MiB), "
            f"reactions {'off' if args.without_reactions else 'on'}"
        )
        cpu_note = f"({import_cpu:.1f} s CPU in Python, {1000 * import_cpu / args.rows:.2f} ms a row)"
        print(f"import:  {import_seconds:8.1f} s  {import_rate:10,.0f} rows/s  {cpu_note}")
        print(f"COPY:    {copy_seconds:8.1f} s  {copy_rate:10,.0f} rows/s  (orders and lines, same rows)")
        print(
            f"COPY:    {copy_all_seconds:8.1f} s  {copy_all_rate:10,.0f} rows/s  "
            f"(every stored row: {stored_rows:,}, {stored_rows / expected_orders:.1f} an order)"
        )
        print(f"ratio:   {import_rate / copy_rate:8.1%} of the COPY rate of orders and lines")
        print(f"ratio:   {import_rate / copy_all_rate:8.1%} of the COPY rate of every stored row")
        print("(goal: at least 20 % of COPY of the same final rows)")
        print("stored:  " + ", ".join(f"{table} {stored[table]:,}" for table in STORED_TABLES))
        print(
            f"memory:  peak RSS {peak_mib:,.0f} MiB (goal: at most 1024 MiB); generating the file alone "
            f"takes {generation:.1f} s"
        )
        if args.json:
            result = {
                "rows": args.rows,
                "orders": expected_orders,
                "file_mib": round(file_mib, 1),
                "reactions": not args.without_reactions,
                "import_seconds": import_seconds,
                "import_rows_per_second": import_rate,
                "import_python_cpu_seconds": import_cpu,
                "python_cpu_ms_per_row": 1000 * import_cpu / args.rows,
                "copy_orders_and_lines_seconds": copy_seconds,
                "copy_orders_and_lines_rows_per_second": copy_rate,
                "copy_all_stored_rows_seconds": copy_all_seconds,
                "copy_all_stored_rows_rows_per_second": copy_all_rate,
                "ratio_to_copy_orders_and_lines": import_rate / copy_rate,
                "ratio_to_copy_all_stored_rows": import_rate / copy_all_rate,
                "stored_rows_per_table": {table: stored[table] for table in STORED_TABLES},
                "stored_rows": stored_rows,
                "peak_rss_mib": peak_mib,
                "generation_seconds": generation,
            }
            args.json.write_text(json.dumps(result, indent=2))
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    finally:
        if db is not None:
            await db.dispose()
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_DATABASE_URL", MACHINE_DATABASE_URL),
        help="a superuser URL of the PostgreSQL server (default: %(default)s)",
    )
    parser.add_argument(
        "--lines",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=LINE_PATTERN,
        help="line items per order, in turn (default: 1,2,3)",
    )
    parser.add_argument("--without-reactions", action="store_true", help="other features' handlers off")
    parser.add_argument("--profile", action="store_true", help="print the import's profile (slower)")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    asyncio.run(main(parser.parse_args()))
