"""The lead's operations view over many open orders: its time, with and without the index
on when each order entered its status.

    uv run python bench/operations_view.py                      # 4 tenants x 50,000 orders
    uv run python bench/operations_view.py --orders 20000 --calls 10

In a database of its own (created, migrated, dropped): `--tenants` client companies with
`--orders` orders each, copied from one captured order with set-based SQL, spread over the
statuses (a fifth settled), entered into their status up to ten days ago, two thirds with
a delivery promise. Then `operations.operations_view` (what `/console/operations` renders)
is called `--calls` times as a lead of every tenant, first with the schema as migrated,
then with `ix_orders_tenant_status_since` dropped (statistics gathered again), and the
stuck-order query alone is explained both ways. The ratio of the two medians is the
index's worth to the view; what it costs the writes is in bench/allocation.py's A/B
(docs/benchmarks.md, "the cost of keeping when each order entered its status").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from benchdb import bench_settings, create_database, drop_database  # noqa: E402 (bench/, the script's own folder)

OPEN_STATUSES = (
    "captured",
    "awaiting_verification",
    "verified",
    "allocated",
    "backordered",
    "picking",
    "packed",
    "partially_shipped",
    "shipped",
)
SETTLED_STATUSES = ("delivered", "closed")
INDEX = "ix_orders_tenant_status_since"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--orders", type=int, default=50_000, help="Orders per tenant.")
    parser.add_argument("--calls", type=int, default=20, help="Calls of the view per variant.")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server, as a role that may create databases; env BENCH_DATABASE_URL.",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    for name in ("tenants", "orders", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


async def _fill(owner_dsn: str, template_id, tenant_id, orders: int) -> None:
    """`orders` copies of the captured order, with their own ids, numbers, statuses and times."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        columns = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0"
                " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
            )
        ]
        varied = {
            "id": "gen_random_uuid()",
            "number": "o.number + g",
            "external_ref": "'BENCH-' || g",
            "customer_email": "'c' || g || '@example.com'",
            "status": f"CAST((CAST($3 AS text[]))[1 + g % {len(OPEN_STATUSES) + len(SETTLED_STATUSES)}]"
            " AS order_status)",
            "deliver_by": (
                "CASE WHEN g % 3 = 0 THEN NULL ELSE now() + make_interval(hours => g % 240 - 48) END"
            ),
        }
        listed = ", ".join(columns)
        chosen = ", ".join(varied.get(c, f"o.{c}") for c in columns)
        await conn.execute(
            f"INSERT INTO orders ({listed}) SELECT {chosen} FROM orders o, generate_series(1, $2) g"  # noqa: S608 (the table's own column names)
            " WHERE o.id = $1",
            template_id,
            orders,
            [*OPEN_STATUSES, *SETTLED_STATUSES],
        )
        # The trigger stamped every copy now; spread their entry into the status over ten days
        # (an update that leaves the status alone does not fire it).
        await conn.execute(
            "UPDATE orders SET status_changed_at = now()"
            " - make_interval(mins => (hashtext(id::text) & 14399))"
            " WHERE tenant_id = $1 AND id <> $2",
            tenant_id,
            template_id,
        )
    finally:
        await conn.close()


async def _stuck_plan(owner_dsn: str, tenant_ids: list) -> dict:
    """The plan of a query shaped like the view's stuck count: every tenant's open statuses, one cutoff."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
            " SELECT o.tenant_id, o.status, count(*) FROM orders o"
            " JOIN unnest(CAST($1 AS uuid[])) t(tenant_id) ON o.tenant_id = t.tenant_id"
            " JOIN unnest(CAST($2 AS text[])) s(status) ON CAST(o.status AS text) = s.status"
            " WHERE o.status_changed_at < now() - interval '24 hours' GROUP BY 1, 2",
            tenant_ids,
            list(OPEN_STATUSES),
        )
    finally:
        await conn.close()
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]
    shared = top["Plan"].get("Shared Hit Blocks", 0) + top["Plan"].get("Shared Read Blocks", 0)
    return {"ms": round(top["Execution Time"], 2), "buffers": shared}


async def _time_view(db, actor, calls: int) -> list[float]:
    from orderdesk.workqueue import operations

    await operations.operations_view(db, actor)  # plans and caches warm
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        view = await operations.operations_view(db, actor)
        times.append(1000 * (time.perf_counter() - began))
    assert view.tenants, "the view saw no tenant"
    return times


async def run(args) -> dict:
    import asyncpg

    from orderdesk.accounts.actors import Actor, ActorKind
    from orderdesk.accounts.models import StaffRole
    from orderdesk.core.db import Database, make_engine
    from orderdesk.core.ids import new_id
    from orderdesk.core.migrations import upgrade
    from orderdesk.orders import services as order_services
    from orderdesk.orders.models import Channel
    from orderdesk.orders.schemas import OrderCreate
    from orderdesk.tenants import services as tenant_services
    from orderdesk.wiring import connect_features

    name, owner_dsn = await create_database(args.server_url)
    try:
        await asyncio.to_thread(upgrade, owner_dsn)
        settings = bench_settings(owner_dsn, args.redis_url)
        connect_features()
        db = Database(make_engine(settings.app_url, pool_size=2))
        try:
            system = await tenant_services.system_actor(db)
            tenant_ids = []
            print(f"filling {args.tenants} x {args.orders:,} orders …", flush=True)
            for n in range(args.tenants):
                tenant = await tenant_services.create_tenant(
                    db, system, slug=f"ops-{n}-{secrets.token_hex(3)}", name=f"Client {n}"
                )
                system = await tenant_services.system_actor(db)
                body = OrderCreate(
                    tenant_id=tenant.id,
                    external_ref="TEMPLATE",
                    customer={"name": "Bench Customer", "email": "template@example.com"},
                    shipping_address={
                        "line1": "Unter den Linden 1",
                        "city": "Berlin",
                        "postal_code": "10117",
                        "country": "DE",
                    },
                    currency="EUR",
                    lines=[{"sku": "TENT-2P", "quantity": 1, "unit_price_minor": 1990}],
                )
                captured = await order_services.capture_order(db, system, body, channel=Channel.API)
                await _fill(owner_dsn, captured.body["id"], tenant.id, args.orders)
                tenant_ids.append(tenant.id)
            lead = Actor(
                kind=ActorKind.STAFF,
                id=new_id(),
                display_name="Bench Lead",
                tenant_ids=frozenset(tenant_ids),
                staff_role=StaffRole.LEAD,
            )
            conn = await asyncpg.connect(owner_dsn)
            await conn.execute("VACUUM ANALYZE orders")
            variants = {}
            for variant in ("with the index", "without the index"):
                if variant == "without the index":
                    await conn.execute(f"DROP INDEX {INDEX}")
                    await conn.execute("ANALYZE orders")
                times = await _time_view(db, lead, args.calls)
                variants[variant] = {
                    "view_median_ms": round(statistics.median(times), 1),
                    "view_p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))], 1),
                    "stuck_query": await _stuck_plan(owner_dsn, tenant_ids),
                }
                print(f"  {variant}: {variants[variant]}", flush=True)
            await conn.close()
        finally:
            await db.dispose()
    finally:
        await drop_database(args.server_url, name)
    with_index, without = variants["with the index"], variants["without the index"]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "params": {"tenants": args.tenants, "orders_per_tenant": args.orders, "calls": args.calls},
        "variants": variants,
        "view_without_over_with": round(without["view_median_ms"] / with_index["view_median_ms"], 2),
        "stuck_query_without_over_with": round(
            without["stuck_query"]["ms"] / with_index["stuck_query"]["ms"], 2
        ),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    variants = result["variants"]
    print(
        f"view median: {variants['with the index']['view_median_ms']} ms with the index,"
        f" {variants['without the index']['view_median_ms']} ms without"
        f" (x{result['view_without_over_with']});"
        f" stuck query alone x{result['stuck_query_without_over_with']}"
    )
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
