"""Allocation under contention: the allocation service against its raw reservation SQL.

    uv run python bench/allocation.py                       # 50 allocators, 10 hot SKUs
    uv run python bench/allocation.py --orders 3000 --json /tmp/allocation.json

What one run does, on a fresh database of its own (`--server-url`):

1. Makes three tenants with the same two warehouses (BER, MUC) and the same stock
   of `--skus` hot SKUs, fewer units than the orders want, so the last units are
   fought over and the rest is backordered. Then runs ANALYZE, as autovacuum would
   on a live server (the development server runs without it).
2. Raw baseline (tenant 1): `--concurrency` asyncpg connections as the application
   role, each transaction: scope settings, then per order line in (warehouse, sku)
   order the conditional `UPDATE stock_levels … WHERE on_hand - reserved >= q
   RETURNING`, BER first then MUC, and one ledger row per reservation. No ORM, no
   routing, no order rows: the floor the database sets for this work.
3. The application (tenant 2): the same orders, already verified, allocated by
   `inventory.services.retry_allocation` from `--concurrency` concurrent tasks, as the
   API does it. Requests made while others are being served are served together
   (`core/batching.py`), a batch per transaction: scope, each order row locked and
   read (warehouses, lines, allocations, availability, holds), every stock row the
   batch may use locked at once in key order, then per order routing, the timeline
   event and webhook payload, and one statement that reserves, writes the ledger,
   allocation and backorder rows, the order's new status and its timeline row; one
   commit for the batch.
4. Raw baseline again (tenant 3): the machine is shared, two samples show drift.
5. Oversell check from the ledger for every tenant: per (warehouse, sku) the reserved
   units the ledger adds up must equal `stock_levels.reserved`, and never exceed
   on hand. Then prints the table (and `--json`), and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from benchdb import bench_settings, create_database, drop_database, plain  # noqa: E402 (bench/, the script's own folder)
from diagnosis import add_drop_index_option, drop_indexes  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="Orders to allocate per phase.")
    parser.add_argument("--skus", type=int, default=10, help="Hot SKUs the orders fight over.")
    parser.add_argument("--concurrency", type=int, default=50, help="Concurrent allocators.")
    parser.add_argument(
        "--supply", type=float, default=0.7, help="Units in stock as a share of units ordered."
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a role that may create databases); env BENCH_DATABASE_URL.",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--keep", action="store_true", help="Keep the database (its name is printed).")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="OrderDesk's engine pool, shared by the allocators as in one deployed process"
        " (default: one connection per allocator).",
    )
    parser.add_argument(
        "--max-overflow",
        type=int,
        default=0,
        help="OrderDesk's connections beyond the pool while it is busy (ORDERDESK_DB_MAX_OVERFLOW;"
        " default 0, as the platform's).",
    )
    parser.add_argument(
        "--raw-connections",
        type=int,
        default=None,
        help="Connections of the raw baseline, each running allocations one after another"
        " (default: one per allocator).",
    )
    add_drop_index_option(parser)
    args = parser.parse_args(argv)
    for name in ("concurrency", "pool_size", "raw_connections"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_overflow < 0:
        parser.error("--max-overflow cannot be negative")
    return args


@dataclass
class Phase:
    name: str
    orders: int
    seconds: float
    reserved_units: int
    backordered_orders: int
    # Python CPU time of this process during the phase (time.process_time), per order.
    cpu_seconds: float = 0.0
    # Share of the machine's CPUs busy during the phase (all processes, from /proc/stat):
    # near 100 % the rate follows CPU per order rather than waiting.
    machine_busy: float = 0.0

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


def machine_times() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far, from the first line of /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]  # idle + iowait


def machine_busy(since: tuple[int, int]) -> float:
    total, idle = machine_times()
    elapsed = total - since[0]
    return 1 - (idle - since[1]) / elapsed if elapsed else 0.0


def make_orders(args) -> list[list[tuple[str, int]]]:
    """Each order: 1-3 lines of hot SKUs, 1-2 units each (same list for every phase)."""
    rng = random.Random(args.seed)
    skus = [f"HOT-{i:02d}" for i in range(args.skus)]
    return [
        [(sku, rng.randint(1, 2)) for sku in rng.sample(skus, rng.randint(1, min(3, len(skus))))]
        for _ in range(args.orders)
    ]


def stock_plan(args, orders) -> dict[tuple[str, str], int]:
    """Two thirds of the supply at BER, a third at MUC."""
    wanted: dict[str, int] = {}
    for lines in orders:
        for sku, qty in lines:
            wanted[sku] = wanted.get(sku, 0) + qty
    plan = {}
    for sku, qty in wanted.items():
        supply = int(qty * args.supply)
        plan[("BER", sku)] = supply * 2 // 3
        plan[("MUC", sku)] = supply - supply * 2 // 3
    return plan


async def setup(args, owner_url: str, settings, orders, stock) -> dict:
    from orderdesk.core.db import Database, make_engine
    from orderdesk.inventory import services as inventory
    from orderdesk.inventory.schemas import StockUpdateIn, WarehouseIn
    from orderdesk.orders import catalog
    from orderdesk.orders import services as order_services
    from orderdesk.orders.models import Channel
    from orderdesk.orders.schemas import OrderCreate
    from orderdesk.orders.verification import VerificationPolicy
    from orderdesk.tenants import services as tenant_services
    from orderdesk.wiring import connect_features

    connect_features()
    db = Database(make_engine(settings.app_url, pool_size=8))
    tenants = {}
    try:
        system = await tenant_services.system_actor(db)
        for role in ("raw1", "app", "raw2"):
            tenant = await tenant_services.create_tenant(
                db, system, slug=f"bench-{role}-{secrets.token_hex(3)}", name=f"Bench {role}"
            )
            system = await tenant_services.system_actor(db)
            info = {"id": tenant.id, "orders": []}
            if role == "app":
                # Verified at capture, before any warehouse exists: allocation is what the phase measures.
                await catalog.set_verification_policy(
                    db, system, tenant.id, VerificationPolicy(auto_verify=True)
                )

                async def capture(n: int, lines, tenant=tenant, system=system) -> None:
                    body = OrderCreate(
                        tenant_id=tenant.id,
                        external_ref=f"B-{n}",
                        customer={"name": "Bench Customer", "email": f"c{n}@example.com"},
                        shipping_address={
                            "line1": "Unter den Linden 1",
                            "city": "Berlin",
                            "postal_code": "10117",
                            "country": "DE",
                            "region": "Berlin",
                        },
                        currency="EUR",
                        lines=[{"sku": s, "quantity": q, "unit_price_minor": 1000} for s, q in lines],
                        payment_status="paid",
                    )
                    await order_services.capture_order(db, system, body, channel=Channel.API)

                for start in range(0, len(orders), 8):
                    await asyncio.gather(
                        *(capture(n, lines) for n, lines in enumerate(orders[start : start + 8], start=start))
                    )
                from sqlalchemy import select

                from orderdesk.orders.models import Order, OrderStatus

                async with db.transaction(system.scope) as session:
                    rows = (
                        await session.execute(
                            select(Order.id, Order.status)
                            .where(Order.tenant_id == tenant.id)
                            .order_by(Order.number)
                        )
                    ).all()
                assert {status for _, status in rows} == {OrderStatus.VERIFIED}
                info["orders"] = [order_id for order_id, _ in rows]
            warehouses = {}
            for code, region in (("BER", "Berlin"), ("MUC", "Bayern")):
                w = await inventory.create_warehouse(
                    db,
                    system,
                    WarehouseIn(tenant_id=tenant.id, code=code, name=code, country="DE", region=region),
                )
                warehouses[code] = w.id
                await inventory.update_stock(
                    db,
                    system,
                    w.id,
                    StockUpdateIn(
                        updates=[{"sku": sku, "on_hand": qty} for (c, sku), qty in stock.items() if c == code]
                    ),
                )
            info["warehouses"] = warehouses
            tenants[role] = info
    finally:
        await db.dispose()
    return tenants


RESERVE = """UPDATE stock_levels SET reserved = reserved + $4, updated_at = now()
WHERE tenant_id = $1 AND warehouse_id = $2 AND sku = $3 AND on_hand - reserved >= $4
RETURNING on_hand, reserved"""
LEDGER = """INSERT INTO stock_movements (tenant_id, warehouse_id, sku, kind, on_hand_before, on_hand_after,
    reserved_before, reserved_after, order_id, actor_kind, actor_id, actor_name)
VALUES ($1, $2, $3, 'reserve', $4, $4, $5, $6, $7, 'system', '0', 'bench')"""


async def raw_phase(args, app_dsn: str, tenant: dict, orders) -> Phase:
    """The reservation statements alone, sent by asyncpg."""
    import asyncpg

    connections = args.raw_connections or args.concurrency
    pool = await asyncpg.create_pool(app_dsn, min_size=connections, max_size=connections)
    queue: asyncio.Queue = asyncio.Queue()
    for lines in orders:
        queue.put_nowait(lines)
    reserved = backordered = 0
    tenants = "{" + str(tenant["id"]) + "}"
    ber, muc = tenant["warehouses"]["BER"], tenant["warehouses"]["MUC"]

    async def worker():
        nonlocal reserved, backordered
        async with pool.acquire() as conn:
            while not queue.empty():
                lines = queue.get_nowait()
                order_id = uuid.uuid4()
                missing = False
                async with conn.transaction():
                    await conn.execute("SELECT set_config('orderdesk.tenant_ids', $1, true)", tenants)
                    for sku, qty in sorted(lines):
                        for warehouse in (ber, muc):
                            row = await conn.fetchrow(RESERVE, tenant["id"], warehouse, sku, qty)
                            if row is not None:
                                await conn.execute(
                                    LEDGER,
                                    tenant["id"],
                                    warehouse,
                                    sku,
                                    row["on_hand"],
                                    row["reserved"] - qty,
                                    row["reserved"],
                                    order_id,
                                )
                                reserved += qty
                                break
                        else:
                            missing = True
                backordered += missing

    start, cpu, machine = time.perf_counter(), time.process_time(), machine_times()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds, cpu, busy = time.perf_counter() - start, time.process_time() - cpu, machine_busy(machine)
    await pool.close()
    return Phase("raw SQL", len(orders), seconds, reserved, backordered, cpu, busy)


async def app_phase(args, settings, tenant: dict) -> Phase:
    from orderdesk.core.db import GENERIC_PLANS, Database, make_engine
    from orderdesk.inventory import allocation
    from orderdesk.inventory import services as inventory
    from orderdesk.tenants import services as tenant_services

    pool_size = args.pool_size or args.concurrency
    db = Database(make_engine(settings.app_url, pool_size=pool_size, max_overflow=args.max_overflow))
    system = await tenant_services.system_actor(db)
    queue: asyncio.Queue = asyncio.Queue()
    for order_id in tenant["orders"]:
        queue.put_nowait(order_id)
    reserved = backordered = 0

    async def worker():
        nonlocal reserved, backordered
        while not queue.empty():
            view = await inventory.retry_allocation(db, system, queue.get_nowait())
            reserved += sum(a.reserved_qty for a in view.allocations)
            backordered += view.status == "backordered"

    # Before the clock, as the raw pool opens its connections first: open the pool's
    # connections and read one order on each (rolled back), so that each has learnt
    # OrderDesk's column types (asyncpg looks up enum types once per connection) and
    # built the read's plan, as a live server's connections long have.
    class Warmed(Exception):
        pass

    async def warm(order_id) -> None:
        with contextlib.suppress(Warmed):
            async with db.driver_transaction(system.scope, extra_settings=GENERIC_PLANS) as driver:
                await allocation.read_locked_order_stock(driver, system.tenant_ids, order_id)
                raise Warmed

    await asyncio.gather(*(warm(order_id) for order_id in tenant["orders"][: args.concurrency]))
    start, cpu, machine = time.perf_counter(), time.process_time(), machine_times()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds, cpu, busy = time.perf_counter() - start, time.process_time() - cpu, machine_busy(machine)
    await db.dispose()
    return Phase("OrderDesk allocation", len(tenant["orders"]), seconds, reserved, backordered, cpu, busy)


async def oversell_check(owner_dsn: str, tenant_id) -> dict:
    """From the ledger: reserved units per row add up to stock_levels.reserved, within on hand."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        rows = await conn.fetch(
            """SELECT s.warehouse_id, s.sku, s.on_hand, s.reserved,
                      coalesce(sum(m.reserved_after - m.reserved_before), 0) AS ledger_reserved,
                      bool_and(m.reserved_after <= m.on_hand_after) AS always_within
               FROM stock_levels s
               LEFT JOIN stock_movements m ON m.tenant_id = s.tenant_id AND m.warehouse_id = s.warehouse_id
                    AND m.sku = s.sku
               WHERE s.tenant_id = $1
               GROUP BY s.warehouse_id, s.sku, s.on_hand, s.reserved""",
            tenant_id,
        )
    finally:
        await conn.close()
    oversold = [r for r in rows if r["reserved"] > r["on_hand"] or r["always_within"] is False]
    mismatched = [r for r in rows if r["ledger_reserved"] != r["reserved"]]
    return {
        "rows": len(rows),
        "oversold": len(oversold),
        "ledger_mismatch": len(mismatched),
        "units_reserved": sum(r["reserved"] for r in rows),
        "units_on_hand": sum(r["on_hand"] for r in rows),
    }


async def run(args) -> dict:
    import asyncpg

    from orderdesk.core.migrations import upgrade

    name, owner_url = await create_database(args.server_url)
    try:
        await asyncio.to_thread(upgrade, owner_url)
        settings = bench_settings(owner_url, args.redis_url)
        orders = make_orders(args)
        stock = stock_plan(args, orders)
        print(f"setting up {args.orders} orders, {args.skus} hot SKUs in 2 warehouses …", flush=True)
        tenants = await setup(args, owner_url, settings, orders, stock)
        # Autovacuum is off on the development server: gather the statistics it would
        # have gathered after the set-up's inserts, so plans are those of a live system.
        conn = await asyncpg.connect(owner_url)
        await drop_indexes(conn, args.drop_index)
        await conn.execute("ANALYZE")
        await conn.close()
        app_dsn = plain(settings.app_url)
        phases = [await raw_phase(args, app_dsn, tenants["raw1"], orders)]
        print(f"  {phases[-1].name}: {phases[-1].rate:,.0f} orders/s", flush=True)
        phases.append(await app_phase(args, settings, tenants["app"]))
        print(f"  {phases[-1].name}: {phases[-1].rate:,.0f} orders/s", flush=True)
        phases.append(await raw_phase(args, app_dsn, tenants["raw2"], orders))
        print(f"  {phases[-1].name} (again): {phases[-1].rate:,.0f} orders/s", flush=True)
        checks = {role: await oversell_check(owner_url, t["id"]) for role, t in tenants.items()}
    finally:
        if not args.keep:
            await drop_database(args.server_url, name)
        else:
            print(f"kept database {name}")
    raw_rate = sum(p.rate for p in (phases[0], phases[2])) / 2
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "params": {
            "orders": args.orders,
            "skus": args.skus,
            "concurrency": args.concurrency,
            "supply": args.supply,
        },
        "phases": [
            {
                "name": p.name,
                "orders": p.orders,
                "seconds": round(p.seconds, 2),
                "orders_per_s": round(p.rate, 1),
                "units_reserved": p.reserved_units,
                "orders_backordered": p.backordered_orders,
                "cpu_ms_per_order": round(1000 * p.cpu_seconds / p.orders, 2),
                "machine_busy_pct": round(100 * p.machine_busy, 1),
            }
            for p in phases
        ],
        "ratio_to_raw": round(phases[1].rate / raw_rate, 3),
        # Raw CPU per order over ours: steadier than rates on a shared machine.
        "cpu_cost_ratio": round(
            (phases[0].cpu_seconds + phases[2].cpu_seconds) / 2 / phases[1].cpu_seconds, 3
        ),
        "oversell_check": checks,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print()
    print(
        f"{'phase':<24}{'orders':>8}{'seconds':>10}{'orders/s':>10}{'units':>8}{'backordered':>13}"
        f"{'CPU ms/order':>14}{'machine busy':>14}"
    )
    for p in result["phases"]:
        print(
            f"{p['name']:<24}{p['orders']:>8}{p['seconds']:>10}{p['orders_per_s']:>10}"
            f"{p['units_reserved']:>8}{p['orders_backordered']:>13}{p['cpu_ms_per_order']:>14}"
            f"{p['machine_busy_pct']:>13}%"
        )
    print(f"\nOrderDesk / raw (mean of both raw runs): {result['ratio_to_raw']:.0%}")
    print(f"CPU cost ratio (raw CPU per order / OrderDesk's): {result['cpu_cost_ratio']:.0%}")
    for role, check in result["oversell_check"].items():
        print(f"oversell check {role}: {check}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    oversold = any(c["oversold"] or c["ledger_mismatch"] for c in result["oversell_check"].values())
    return 1 if oversold else 0


if __name__ == "__main__":
    raise SystemExit(main())
