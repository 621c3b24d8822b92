"""Webhook delivery: the worker against a bare HTTP client, and commit-to-acknowledgement latency.

    uv run python bench/webhooks.py                      # about 3 minutes
    uv run python bench/webhooks.py --events 2000 --rounds 1 --latency-seconds 10
    uv run python bench/webhooks.py --json /tmp/webhooks.json

What one run does:

1. Creates its own database on the server (`--server-url`), migrates it, makes one
   tenant and one unordered webhook endpoint through the services. The endpoint points
   at a receiver in a process of its own (uvicorn with httptools and uvloop, keep-alive)
   that answers 200 at once and notes the `webhook-id` and CLOCK_MONOTONIC of every
   request. Starts a real `orderdesk worker` on that database (its NOTIFY listener,
   dispatch loop, fan-out, claims, signed POSTs and recording, exactly as deployed).
2. Captures one order through the order services and keeps the outbox rows it wrote as
   templates: every throughput event is a copy of one (new event id, order id, number,
   reference), so rows and bodies are what the services write.
3. Throughput, `--rounds` rounds, each of the two back to back on `--events` fresh events:
   - bare: one httpx client (the worker's limits) posting the same kind of bodies, signed
     beforehand, `--concurrency` at a time (the worker's dispatch concurrency), timed from
     the first request to the receiver's last answer;
   - worker: the events inserted in one transaction (COPY; its commit NOTIFYs once), timed
     from the commit to the receiver's last answer.
   The ratio of the medians is the result (goal: at least 60 %).
4. Latency at `--latency-fraction` (half) of the worker's median rate: real order changes
   (place a hold / release it, through `orders.services.perform_action`, one outbox event
   each) committed open-loop at that rate from this process. Latency is the receiver's
   receipt minus the moment the service call returned (its transaction committed), both
   CLOCK_MONOTONIC on this machine; the first `--latency-warmup` seconds are not counted
   (goal: p50 under 50 ms, p99 under 250 ms).
5. Prints the table with the load average before and after (and writes JSON with
   `--json`), stops its processes, drops the database.

CPU time of this process, the receiver, the worker and the worker's PostgreSQL backends
is read from /proc over each window: on a shared machine, CPU milliseconds per event are
steadier than rates, and say which process ran short of CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdb import create_database, drop_database, plain

CLK_TCK = os.sysconf("SC_CLK_TCK")
# A Redis database of its own: arq job ids are global within a database, so a bench
# sharing one with another worker could have its dispatches deduplicated away.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
# application_name of the worker's pool (worker.py): its backends are the delivery path's.
DELIVERY_APPLICATION_NAMES = ("orderdesk-worker",)
ORDER_TEMPLATE = {
    "customer": {"name": "Erika Mustermann", "email": "erika@example.com", "phone": "030 1234567"},
    "shipping_address": {
        "line1": "Unter den Linden 1",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "currency": "EUR",
    "lines": [
        {
            "sku": "TENT-2P",
            "description": "Tent",
            "quantity": 2,
            "unit_price_minor": 19900,
            "tax_minor": 7562,
        },
        {"sku": "MAT-1", "quantity": 1, "unit_price_minor": 2500},
    ],
    "shipping_minor": 495,
    "payment_status": "paid",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="Events per throughput run.")
    parser.add_argument(
        "--events-per-order",
        type=int,
        default=2,
        help="Throughput events per order (capture writes 2: created, verification_needed).",
    )
    parser.add_argument("--rounds", type=int, default=3, help="Throughput rounds (medians are reported).")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="Bare client's posts in flight (dispatch's default)."
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=30.0, help="Measured seconds of the latency run."
    )
    parser.add_argument("--latency-warmup", type=float, default=3.0, help="Unmeasured seconds before it.")
    parser.add_argument(
        "--latency-fraction", type=float, default=0.5, help="Change rate as a fraction of the worker's max."
    )
    parser.add_argument("--rate", type=float, help="Events per second (instead of the fraction).")
    parser.add_argument(
        "--service-rate",
        type=float,
        default=10.0,
        help="Order changes per second through the services in the second latency run; 0 for none.",
    )
    parser.add_argument("--service-seconds", type=float, default=15.0, help="Measured seconds of that run.")
    parser.add_argument(
        "--ordered", action="store_true", help="Latency runs on an ordered endpoint (FIFO per order)."
    )
    parser.add_argument("--skip-latency", action="store_true", help="Throughput only.")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a role that may create databases); env BENCH_DATABASE_URL.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="env BENCH_REDIS_URL.",
    )
    parser.add_argument("--keep-db", action="store_true", help="Do not drop the database at the end.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the receiver (its own process)


class ReceiverApp:
    """ASGI: POST /hooks answers 200 at once and notes (webhook-id, CLOCK_MONOTONIC);
    GET /stats, GET /log and POST /reset are the bench's controls."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, float]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        path = scope["path"]
        if path == "/hooks":
            webhook_id = next((v for k, v in scope["headers"] if k == b"webhook-id"), b"").decode()
            self.acks.append((webhook_id, time.monotonic()))
            body = b'{"ok":true}'
        elif path == "/stats":
            body = json.dumps(
                {"count": len(self.acks), "last": self.acks[-1][1] if self.acks else None}
            ).encode()
        elif path == "/log":
            body = json.dumps(self.acks).encode()
        elif path == "/reset":
            self.acks = []
            body = b"{}"
        else:
            body = b"{}"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(
        ReceiverApp(),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReceiverProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            [sys.executable, __file__, "--serve-receiver", str(self.port)], start_new_session=True
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/hooks"

    async def wait_ready(self, control, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self.process.returncode}")
            try:
                await control.get(f"{self.base}/stats")
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("the receiver did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------- CPU


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks used) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


class CpuSample:
    """CPU ticks of the machine, of named process trees and of the PostgreSQL backends
    serving the delivery path (the worker's or the in-process dispatch's pool; not the
    sender's connections, nor other databases on the server). A backend that exits within
    the window is not counted: `sessions` (connections the database has accepted) shows
    when a pool opens and closes connections."""

    def __init__(self, roots: dict[str, int | None], backends: set[int], sessions: int) -> None:
        self.sessions = sessions
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        self.wall = time.monotonic()
        self.total = sum(fields[:8])
        self.idle = fields[3] + fields[4]
        stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _proc_stat(int(p)))}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        self.trees: dict[str, dict[int, int]] = {}
        for name, root in roots.items():
            tree, todo = {}, [root] if root else []
            while todo:
                pid = todo.pop()
                if pid in stats and pid not in tree:
                    tree[pid] = stats[pid][1]
                    todo.extend(children.get(pid, []))
            self.trees[name] = tree
        self.trees["postgres"] = {pid: stats[pid][1] for pid in backends if pid in stats}


def cpu_use(before: CpuSample, after: CpuSample, events: int) -> dict[str, float]:
    """Percent of one core per process tree and CPU milliseconds per event, and how busy the
    whole machine was. CPU time per event is the steadier figure on a shared machine."""
    seconds = max(after.wall - before.wall, 1e-6)
    use = {}
    for name, ticks in after.trees.items():
        old = before.trees.get(name, {})
        used = sum(t - old.get(pid, 0) for pid, t in ticks.items()) / CLK_TCK
        use[f"{name}_pct"] = round(used / seconds * 100, 1)
        use[f"{name}_ms_per_event"] = round(used * 1000 / max(events, 1), 2)
    total = after.total - before.total
    use["machine_pct"] = round(100 * (1 - (after.idle - before.idle) / total), 1) if total else 0.0
    use["connections_opened"] = after.sessions - before.sessions
    return use


# ---------------------------------------------------------------- the database


def _env(owner_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": owner_url,
        "REDIS_URL": redis_url,
        "ORDERDESK_SECRET_KEY": "bench-" + secrets.token_hex(24),
        "ORDERDESK_QUEUE": f"orderdesk-bench-webhooks-{secrets.token_hex(3)}",
        "ORDERDESK_ENV": "test",
        "ORDERDESK_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receiver is on loopback
        "ORDERDESK_LOG_LEVEL": "WARNING",
        "ORDERDESK_LOG_JSON": "true",
    }


@dataclass
class Bench:
    name: str
    owner_url: str
    app_dsn: str
    env: dict[str, str]
    tenant_id: uuid.UUID = None
    endpoint_id: uuid.UUID = None
    secret: str = ""
    templates: list[dict] = field(default_factory=list)  # payloads capture wrote, by order_seq
    actor: object = None  # the tenant's system actor, for order changes through the services


async def create_bench(args, receiver_url: str) -> Bench:
    import asyncpg

    from orderdesk.accounts.actors import Actor, ActorKind
    from orderdesk.core.db import Database, make_engine
    from orderdesk.core.migrations import upgrade
    from orderdesk.integrations import endpoints as endpoint_service
    from orderdesk.integrations.schemas import EndpointCreate
    from orderdesk.orders import services as orders
    from orderdesk.orders.models import Channel
    from orderdesk.orders.schemas import OrderCreate
    from orderdesk.settings import load_settings
    from orderdesk.tenants import services as tenant_services
    from orderdesk.wiring import connect_features

    name, owner_url = await create_database(args.server_url, prefix="orderdesk_bench_wh_")
    env = _env(owner_url, args.redis_url)
    settings = load_settings(env)
    bench = Bench(name, owner_url, plain(settings.app_url), env)
    await asyncio.to_thread(upgrade, owner_url)
    connect_features()
    db = Database(make_engine(settings.app_url, pool_size=2))
    try:
        system = await tenant_services.system_actor(db)
        tenant = await tenant_services.create_tenant(
            db, system, slug=f"bench-{secrets.token_hex(3)}", name="Bench Webhooks", time_zone="Europe/Berlin"
        )
        bench.tenant_id = tenant.id
        bench.actor = actor = Actor(
            kind=ActorKind.SYSTEM, id=tenant.id, display_name="bench", tenant_ids=frozenset({tenant.id})
        )
        endpoint = await endpoint_service.create_endpoint(
            db, actor, tenant.id, EndpointCreate(url=receiver_url, ordered=False), allow_private=True
        )
        bench.endpoint_id, bench.secret = endpoint.id, endpoint.secret
        # Its outbox rows are the templates; marked fanned out below, they are never delivered.
        await orders.capture_order(
            db,
            actor,
            OrderCreate.model_validate({**ORDER_TEMPLATE, "external_ref": "TEMPLATE-1"}),
            channel=Channel.API,
        )
    finally:
        await db.dispose()
    conn = await asyncpg.connect(owner_url)
    try:
        rows = await conn.fetch(
            "UPDATE outbox_events SET fanned_out_at = now()"
            " WHERE tenant_id = $1 RETURNING order_seq, payload",
            bench.tenant_id,
        )
    finally:
        await conn.close()
    bench.templates = [json.loads(r["payload"]) for r in sorted(rows, key=lambda r: r["order_seq"])]
    return bench


async def drop_bench(server_url: str, name: str) -> None:
    await drop_database(server_url, name)


OUTBOX_COLUMNS = ("tenant_id", "id", "event_type", "order_id", "order_seq", "payload", "created_at")


def make_events(bench: Bench, orders: int, per_order: int, start_number: int) -> list[tuple]:
    """Outbox rows for `orders` new orders, `per_order` events each, copied from the templates."""
    from orderdesk.core.ids import new_id

    rows = []
    for n in range(orders):
        order_id, number = new_id(), start_number + n
        for seq in range(1, per_order + 1):
            template = bench.templates[(seq - 1) % len(bench.templates)]
            event_id, now = new_id(), dt.datetime.now(dt.UTC)
            payload = json.loads(json.dumps(template))
            payload.update(id=str(event_id), timestamp=now.isoformat())
            payload["data"]["sequence"] = seq
            payload["data"]["order"].update(id=str(order_id), number=number, external_ref=f"BENCH-{number}")
            rows.append((bench.tenant_id, event_id, payload["type"], order_id, seq, json.dumps(payload), now))
    return rows


async def copy_events(conn, rows: list[tuple]) -> None:
    """One transaction, so one NOTIFY at its commit (the trigger is per statement)."""
    await conn.copy_records_to_table("outbox_events", records=rows, columns=OUTBOX_COLUMNS)


def presigned(bench: Bench, rows: list[tuple]) -> list[tuple[bytes, dict[str, str]]]:
    """Bodies encoded as claim_due encodes them, signed as post() signs them."""
    from orderdesk.integrations import signing

    signed_at = int(time.time())
    out = []
    for row in rows:
        body = json.dumps(json.loads(row[5]), separators=(",", ":"), sort_keys=True).encode()
        out.append((body, signing.headers_for([bench.secret], str(row[1]), signed_at, body)))
    return out


# ---------------------------------------------------------------- phases


def http_client():
    import httpx

    # The worker's client (integrations/jobs.py start()).
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50), follow_redirects=False
    )


@dataclass
class Ctx:
    args: argparse.Namespace
    bench: Bench
    receiver: ReceiverProcess
    control: object  # httpx.AsyncClient for the receiver's controls
    owner: object  # asyncpg connection as the owner
    next_number: int = 100_000
    worker_pid: int | None = None

    async def sample(self) -> CpuSample:
        backends = await self.owner.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = ANY($2::text[])",
            self.bench.name,
            list(DELIVERY_APPLICATION_NAMES),
        )
        sessions = await self.owner.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", self.bench.name
        )
        return CpuSample(
            {"bench": os.getpid(), "receiver": self.receiver.process.pid, "worker": self.worker_pid},
            {r["pid"] for r in backends},
            sessions,
        )

    def new_events(self, events: int) -> list[tuple]:
        per = self.args.events_per_order
        orders = -(-events // per)
        rows = make_events(self.bench, orders, per, self.next_number)[:events]
        self.next_number += orders
        return rows

    async def reset_receiver(self) -> None:
        await self.control.post(f"{self.receiver.base}/reset")

    async def receiver_stats(self) -> dict:
        return (await self.control.get(f"{self.receiver.base}/stats")).json()

    async def receiver_log(self) -> list[tuple[str, float]]:
        return (await self.control.get(f"{self.receiver.base}/log", timeout=60)).json()

    async def wait_received(self, count: int, within: float) -> dict:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = await self.receiver_stats()
            if stats["count"] >= count:
                return stats
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the receiver got {stats['count']} of {count} within {within:.0f} s")

    async def unsettled(self) -> int:
        """Events not fanned out yet, and deliveries not succeeded yet."""
        return await self.owner.fetchval(
            "SELECT (SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND fanned_out_at IS NULL)"
            " + (SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND status <> 'succeeded')",
            self.bench.tenant_id,
        )


async def run_bare(ctx: Ctx, events: int) -> dict:
    """A bare httpx client: the same kind of bodies, signed beforehand, the same concurrency,
    from the first request to the receiver's last receipt."""
    payloads = presigned(ctx.bench, ctx.new_events(events))
    await ctx.reset_receiver()
    queue = iter(payloads)
    failures = 0

    async with http_client() as http:

        async def worker() -> None:
            nonlocal failures
            for body, headers in queue:
                response = await http.post(ctx.receiver.url, content=body, headers=headers, timeout=15)
                failures += not response.is_success

        before = await ctx.sample()
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(ctx.args.concurrency)))
        after = await ctx.sample()
    stats = await ctx.receiver_stats()
    assert stats["count"] == events and not failures, (stats, failures)
    # To the receiver's last receipt, as the worker's runs are timed.
    elapsed = stats["last"] - started
    return {
        "events": events,
        "seconds": round(elapsed, 3),
        "rate": round(events / elapsed, 1),
        **cpu_use(before, after, events),
    }


class Worker:
    """`orderdesk worker` in its own session."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orderdesk.cli", "worker"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("ORDERDESK_")}, **env},
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


async def run_worker_batch(ctx: Ctx, events: int) -> dict:
    """`events` events committed at once; from the commit to the receiver's last answer."""
    rows = ctx.new_events(events)
    await ctx.reset_receiver()
    before = await ctx.sample()
    async with ctx.owner.transaction():
        await copy_events(ctx.owner, rows)
    committed = time.monotonic()
    stats = await ctx.wait_received(events, within=max(120, events / 20))
    after = await ctx.sample()
    elapsed = stats["last"] - committed
    assert stats["count"] == events, stats
    return {
        "events": events,
        "seconds": round(elapsed, 3),
        "rate": round(events / elapsed, 1),
        **cpu_use(before, after, events),
    }


async def wait_idle(ctx: Ctx, within: float = 60) -> None:
    """Until every event is fanned out and every delivery has succeeded; raises if not within."""
    deadline = time.monotonic() + within
    left = await ctx.unsettled()
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # polling the database is the point: it is what is checked
        left = await ctx.unsettled()
    if left:
        raise RuntimeError(f"{left} events or deliveries still unsettled after {within:.0f} s")


class SqlChanges:
    """Each change: one transaction through the application role under its tenant scope
    (as a service's), inserting the outbox rows capture writes for an order (created,
    verification_needed). Cheap to generate, so the rate holds and COMMIT's return is
    timed promptly."""

    kind = "outbox rows as capture writes them, one transaction per order"

    def __init__(self, ctx: Ctx, pool) -> None:
        self.ctx, self.pool = ctx, pool
        self.events_per_change = ctx.args.events_per_order
        self.committed: dict[str, float] = {}
        self.tenants = "{" + str(ctx.bench.tenant_id) + "}"

    async def change(self) -> float | None:
        rows = self.ctx.new_events(self.events_per_change)
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT set_config('orderdesk.tenant_ids', $1, true)", self.tenants)
                await conn.execute(
                    "INSERT INTO outbox_events (tenant_id, id, event_type, order_id, order_seq, payload,"
                    " created_at) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[],"
                    " $5::int[], $6::jsonb[], $7::timestamptz[])",
                    *(list(col) for col in zip(*rows, strict=True)),
                )
            now = time.monotonic()  # COMMIT has returned
        for row in rows:
            self.committed[str(row[1])] = now
        return now

    async def commit_times(self) -> dict[str, float]:
        return self.committed


class ServiceChanges:
    """Each change: `orders.services.perform_action` placing a hold on an order or releasing
    it (one outbox event, plus what the services do around it: timeline, work queue)."""

    kind = "order changes through the services (hold / release)"
    events_per_change = 1

    def __init__(self, ctx: Ctx, db, orders: list[uuid.UUID]) -> None:
        self.ctx, self.db, self.orders = ctx, db, orders
        self.held = dict.fromkeys(orders, False)
        self.free = deque(orders)  # an order is changed by one transaction at a time
        self.committed: dict[uuid.UUID, list[float]] = defaultdict(list)  # per order, in commit order
        self.baseline: dict[uuid.UUID, int] = {}

    async def start(self) -> None:
        self.baseline = {
            r["order_id"]: r["seq"]
            for r in await self.ctx.owner.fetch(
                "SELECT order_id, max(order_seq) AS seq FROM outbox_events"
                " WHERE order_id = ANY($1::uuid[]) GROUP BY order_id",
                self.orders,
            )
        }

    async def change(self) -> float | None:
        from orderdesk.orders import services as orders
        from orderdesk.orders.states import Action, HoldReason

        if not self.free:
            return None
        order_id = self.free.popleft()
        action = Action.RELEASE_HOLD if self.held[order_id] else Action.PLACE_HOLD
        try:
            await orders.perform_action(
                self.db, self.ctx.bench.actor, order_id, action, hold_reason=HoldReason.CUSTOMER_REQUEST
            )
            now = time.monotonic()  # the service's transaction has committed
            self.held[order_id] = not self.held[order_id]
            self.committed[order_id].append(now)
            return now
        finally:
            self.free.append(order_id)

    async def commit_times(self) -> dict[str, float]:
        """The k-th hold event of an order after the baseline is the k-th change committed on it."""
        by_order: dict[uuid.UUID, list[str]] = defaultdict(list)
        for r in await self.ctx.owner.fetch(
            "SELECT order_id, id, order_seq FROM outbox_events WHERE order_id = ANY($1::uuid[])"
            " AND event_type IN ('order.on_hold', 'order.released') ORDER BY order_id, order_seq",
            self.orders,
        ):
            if r["order_seq"] > self.baseline.get(r["order_id"], 0):
                by_order[r["order_id"]].append(str(r["id"]))
        return {
            event_id: at
            for order_id, times in self.committed.items()
            for event_id, at in zip(by_order[order_id], times, strict=False)
        }


async def make_change_pool(ctx: Ctx, db, count: int) -> list[uuid.UUID]:
    """Orders to place holds on and release, captured through the services."""
    from orderdesk.orders import services as orders
    from orderdesk.orders.models import Channel
    from orderdesk.orders.schemas import OrderCreate

    gate = asyncio.Semaphore(4)

    async def capture(n: int) -> uuid.UUID:
        async with gate:
            result = await orders.capture_order(
                db,
                ctx.bench.actor,
                OrderCreate.model_validate({**ORDER_TEMPLATE, "external_ref": f"CHANGE-{n}"}),
                channel=Channel.API,
            )
            return uuid.UUID(result.body["id"])

    return list(await asyncio.gather(*(capture(n) for n in range(count))))


async def run_latency(ctx: Ctx, changes, events_per_second: float, seconds: float) -> dict:
    """Open loop: changes started at a fixed rate (whether or not earlier ones finished), each
    committing `changes.events_per_change` outbox events; commit -> receiver's receipt."""
    args = ctx.args
    per_second = events_per_second / changes.events_per_change
    total = int(per_second * (args.latency_warmup + seconds))
    lag: list[float] = []
    failures: list[str] = []
    skipped = 0

    async def change(due: float) -> None:
        nonlocal skipped
        try:
            done = await changes.change()
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        if done is None:
            skipped += 1
        else:
            lag.append(done - due)

    # A trivial round trip to PostgreSQL meanwhile: on a shared machine the run queue, not
    # the code, can be most of the latency.
    probe_ms: list[float] = []
    probing = True

    async def probe() -> None:
        import asyncpg

        conn = await asyncpg.connect(ctx.bench.owner_url)
        try:
            while probing:
                t = time.monotonic()
                await conn.fetchval("SELECT 1")
                probe_ms.append((time.monotonic() - t) * 1000)
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    await ctx.reset_receiver()
    prober = asyncio.create_task(probe())
    tasks = []
    before = await ctx.sample()
    start = time.monotonic() + 0.2
    for i in range(total):
        due = start + i / per_second
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(change(due)))
    await asyncio.gather(*tasks)
    sent_until = time.monotonic()
    committed = await changes.commit_times()
    try:
        await ctx.wait_received(len(committed), within=60)
    except RuntimeError as exc:
        print(f"  warning: {exc}", file=sys.stderr)
    after = await ctx.sample()
    probing = False
    await prober
    acks: dict[str, float] = {}
    duplicates = 0
    for event_id, at in await ctx.receiver_log():
        if event_id in acks:
            duplicates += 1
        else:
            acks[event_id] = at
    measured_from = start + args.latency_warmup
    measured = {e: t for e, t in committed.items() if t >= measured_from}
    latencies = sorted((acks[e] - t) * 1000 for e, t in measured.items() if e in acks)
    # Where the time went: commit -> fan-out (the delivery row's creation, the worker's
    # clock) -> the receiver's receipt. Wall clocks, so the monotonic times are shifted.
    to_wall = time.time() - time.monotonic()
    fanned = {
        str(r["event_id"]): r["created_at"].timestamp() - to_wall
        for r in await ctx.owner.fetch(
            "SELECT event_id, created_at FROM webhook_deliveries WHERE event_id = ANY($1::uuid[])",
            [uuid.UUID(e) for e in measured],
        )
    }
    to_fan_out = sorted((fanned[e] - t) * 1000 for e, t in measured.items() if e in fanned)
    fan_out_to_ack = sorted((acks[e] - fanned[e]) * 1000 for e in fanned if e in acks)
    return {
        "changes": changes.kind,
        "ordered": args.ordered,
        "events_per_change": changes.events_per_change,
        "rate_events": round(events_per_second, 1),
        "achieved_rate_events": round(len(committed) / (sent_until - start), 1),
        "events_measured": len(latencies),
        "failed_changes": len(failures),
        "first_failure": failures[0] if failures else None,
        "skipped": skipped,
        "missing": sum(1 for e in committed if e not in acks),
        "duplicates": duplicates,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "commit_lag_p99_ms": round(percentile([x * 1000 for x in lag], 99), 1),
        "select_1_p50_ms": round(percentile(probe_ms, 50), 2),
        "select_1_p99_ms": round(percentile(probe_ms, 99), 2),
        "commit_to_fan_out_p50_ms": round(percentile(to_fan_out, 50), 1),
        "commit_to_fan_out_p99_ms": round(percentile(to_fan_out, 99), 1),
        "fan_out_to_ack_p50_ms": round(percentile(fan_out_to_ack, 50), 1),
        "fan_out_to_ack_p99_ms": round(percentile(fan_out_to_ack, 99), 1),
        **cpu_use(before, after, len(committed)),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---------------------------------------------------------------- driver


# ---------------------------------------------------------------- driver


def uptime() -> str:
    """What `uptime` says: the clock, and the load averages over 1, 5 and 15 minutes."""
    return f"{dt.datetime.now(dt.UTC):%H:%M:%S} UTC, load average: " + ", ".join(
        f"{x:.2f}" for x in os.getloadavg()
    )


def machine_notes() -> dict:
    try:
        model = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "uptime_before": uptime(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def median_of(runs: list[dict], key: str = "rate") -> float:
    return round(statistics.median(r[key] for r in runs), 1)


async def main(args: argparse.Namespace) -> dict:
    import asyncpg
    import httpx

    from orderdesk.core.db import Database, make_engine
    from orderdesk.settings import load_settings

    results: dict = {"machine": machine_notes(), "args": {k: str(v) for k, v in vars(args).items()}}
    receiver = ReceiverProcess()
    bench: Bench | None = None
    worker: Worker | None = None
    db = None
    log_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    async with httpx.AsyncClient(timeout=10) as control:
        try:
            await receiver.wait_ready(control)
            bench = await create_bench(args, receiver.url)
            owner = await asyncpg.connect(bench.owner_url)
            results["machine"]["postgres"] = await owner.fetchval("SHOW server_version")
            ctx = Ctx(args, bench, receiver, control, owner)
            worker = Worker(bench.env, log_dir / "worker.log")
            ctx.worker_pid = worker.process.pid
            print(
                f"database {bench.name}, receiver {receiver.url}, worker log {log_dir}/worker.log", flush=True
            )
            # The service layer in this process makes the order changes of the latency phase.
            db = Database(
                make_engine(
                    load_settings(bench.env).app_url, pool_size=10, application_name="orderdesk-bench-changes"
                )
            )
            orders: list[uuid.UUID] = []
            if not args.skip_latency and args.service_rate > 0:
                # Enough orders that each is changed by one transaction at a time; their
                # capture events are delivered during the warm-up below.
                orders = await make_change_pool(ctx, db, 150)

            # Warm-up (connections, statement caches, imports; proves the worker listens and
            # delivers), then statistics as autovacuum keeps them on a database in use.
            await wait_idle(ctx, within=120)
            await run_bare(ctx, 300)
            await run_worker_batch(ctx, 300)
            await wait_idle(ctx)
            await owner.execute("ANALYZE")

            runs: dict[str, list[dict]] = {"bare": [], "worker": []}
            for round_no in range(1, args.rounds + 1):
                runs["bare"].append(await run_bare(ctx, args.events))
                runs["worker"].append(await run_worker_batch(ctx, args.events))
                await wait_idle(ctx)
                print(
                    f"round {round_no}: bare httpx {runs['bare'][-1]['rate']}/s, "
                    f"worker {runs['worker'][-1]['rate']}/s",
                    flush=True,
                )
            results["throughput"] = runs
            bare, ours = median_of(runs["bare"]), median_of(runs["worker"])
            results["throughput_summary"] = {
                "bare_rate": bare,
                "worker_rate": ours,
                "ratio": round(ours / bare, 3),
            }

            if not args.skip_latency:
                await owner.execute(
                    "UPDATE webhook_endpoints SET ordered = $1 WHERE id = $2", args.ordered, bench.endpoint_id
                )
                results["latency"] = []
                rate = args.rate or args.latency_fraction * ours
                runs_to_make = [(SqlChanges(ctx, None), rate, args.latency_seconds)]
                if args.service_rate > 0:
                    runs_to_make.append(
                        (ServiceChanges(ctx, db, orders), args.service_rate, args.service_seconds)
                    )
                app_pool = await asyncpg.create_pool(bench.app_dsn, min_size=8, max_size=8)
                try:
                    for changes, events_per_second, seconds in runs_to_make:
                        if isinstance(changes, SqlChanges):
                            changes.pool = app_pool
                        else:
                            await changes.start()
                        await asyncio.sleep(1)
                        lat = await run_latency(ctx, changes, events_per_second, seconds)
                        results["latency"].append(lat)
                        print(
                            f"latency, {lat['changes']}, {lat['rate_events']} events/s:"
                            f" p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms",
                            flush=True,
                        )
                finally:
                    await app_pool.close()
            await owner.close()
        finally:
            if db is not None:
                await db.dispose()
            if worker is not None:
                worker.stop()
            receiver.stop()
            if bench is not None and not args.keep_db:
                await drop_bench(args.server_url, bench.name)
    results["machine"]["uptime_after"] = uptime()
    return results


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def report(results: dict) -> None:
    print()
    m = results["machine"]
    print(f"{m['date']}  {m['cpus']} CPUs ({m['cpu_model']}), PostgreSQL {m.get('postgres')}")
    print(f"  before: {m['uptime_before']}")
    print(f"  after:  {m['uptime_after']}")
    summary = results["throughput_summary"]
    print("\nthroughput, deliveries/s (median of rounds); CPU ms per delivery; machine busy %")
    bare, ours = results["throughput"]["bare"], results["throughput"]["worker"]
    print(
        f"  bare httpx  {summary['bare_rate']:8.1f}/s   runs {[r['rate'] for r in bare]}   "
        f"client {_median(bare, 'bench_ms_per_event')} receiver {_median(bare, 'receiver_ms_per_event')}   "
        f"machine {_median(bare, 'machine_pct')} %"
    )
    print(
        f"  worker      {summary['worker_rate']:8.1f}/s   runs {[r['rate'] for r in ours]}   "
        f"worker {_median(ours, 'worker_ms_per_event')} postgres {_median(ours, 'postgres_ms_per_event')} "
        f"receiver {_median(ours, 'receiver_ms_per_event')}   machine {_median(ours, 'machine_pct')} %"
    )
    print(f"  worker / bare: {summary['ratio']:.0%} (goal >= 60 %)")
    for lat in results.get("latency", []):
        print(
            f"\nlatency, commit -> receiver's receipt: {lat['changes']}, {lat['events_per_change']} event(s)"
            f" each, {lat['rate_events']} events/s (achieved {lat['achieved_rate_events']}),"
            f" {'ordered' if lat['ordered'] else 'unordered'} endpoint"
        )
        print(
            f"  p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, "
            f"max {lat['max_ms']} ms (goal p50 < 50, p99 < 250)\n  {lat['events_measured']} events measured, "
            f"{lat['missing']} missing, {lat['duplicates']} duplicates, {lat['failed_changes']} changes "
            f"failed, {lat['skipped']} skipped (no order free)"
        )
        print(
            f"  stages: commit -> fan-out p50 {lat['commit_to_fan_out_p50_ms']} p99 "
            f"{lat['commit_to_fan_out_p99_ms']} ms; fan-out -> receipt p50 {lat['fan_out_to_ack_p50_ms']} "
            f"p99 {lat['fan_out_to_ack_p99_ms']} ms"
        )
        print(
            f"  CPU ms per event: making changes (this process) {lat['bench_ms_per_event']}, worker "
            f"{lat['worker_ms_per_event']}, its postgres {lat['postgres_ms_per_event']}; worker "
            f"{lat['worker_pct']} % of a core, machine {lat['machine_pct']} % busy; SELECT 1 round trip "
            f"p50 {lat['select_1_p50_ms']} p99 {lat['select_1_p99_ms']} ms; commit lag p99 "
            f"{lat['commit_lag_p99_ms']} ms"
        )


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_receiver:
        serve_receiver(arguments.serve_receiver)
        sys.exit(0)
    outcome = asyncio.run(main(arguments))
    report(outcome)
    if arguments.json:
        arguments.json.write_text(json.dumps(outcome, indent=2, default=str))
