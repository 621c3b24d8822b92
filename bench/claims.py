"""Get next under load: the claim service against its bare SKIP LOCKED statement.

    uv run python bench/claims.py                          # 100,000 items, 50 agents, 60 s phases
    uv run python bench/claims.py --duration 120 --json /tmp/claims.json
    uv run python bench/claims.py --items 20000 --duration 20 --profile /tmp/claims.prof
    uv run python bench/claims.py --claims 1000000 --pool-size 10   # one long OrderDesk phase

What one run does, on a fresh database of its own (`--server-url`):

1. Makes `--tenants` tenants, `--agents` agents (each assigned to 3 tenants with a
   random set of languages, channels and, for half of them, task kinds) and
   `--items` open work items of mixed tenants, kinds, languages, channels,
   priorities, values and due times (written with one INSERT … SELECT), each with
   its order (but half the customer messages) and each customer message with its
   conversation, as on a live desk. `--drop-index` then drops an index, to
   measure what it costs.
2. Runs phases of `--duration` seconds, each from the same starting queue (claims
   are undone and `work_claims` emptied between phases). In every phase each of
   the 50 agents loops: claim the next item, then finish it (80 %) or hand it
   back (20 %, so items are claimed more than once).
   - **raw SQL**: asyncpg, 50 connections as the application role: BEGIN, the
     tenant scope, the bare claim statement (the SKIP LOCKED sub-query, the
     update, the history insert), COMMIT; then one statement that finishes or
     hands back the item and closes its claim.
   - **OrderDesk**: `services.claim_next_work_item` then `complete_work_item` or
     `hand_back_work_item`, what `POST /api/v1/work-items/next` and the item
     endpoints call (the HTTP layer is not part of this run).
   Closed loop (each agent claims again at once) unless the phase name carries
   `@N`: then open loop, claims due at N % of OrderDesk's closed-loop rate measured
   earlier in the run (the same rate for both claimers), latency counted from when
   each claim was due. `+report`: a REPEATABLE READ transaction opened before the
   phase and held to its end (a long report), which keeps every row version of the
   phase from being vacuumed.
   `--claims N` instead runs one OrderDesk phase until N claims were made,
   re-opening finished items every few seconds so the queue never runs dry.
3. Checks, per phase, from the recorded history: every claim the agents saw is
   copied (agent, item, CLOCK_MONOTONIC when the claim answered and when the
   release began) into a table of the bench database, and checked there: no
   item held by two agents at once, no agent holding two items, per item as many
   `work_claims` rows as claims seen, at most one open claim per item; and for
   every `--sample-every`-th claim, right after it, how many items the agent
   could take were more urgent and still open (the claim is "within the N most
   urgent" when that is < N). With `--claims`, samples whose check overlapped a
   re-opening batch are reported apart: that batch's items were not open when the
   claim chose. Before each phase the objects that exist are frozen out of the
   garbage collector's sight, as `orderdesk serve` does, and the phase's
   collections are counted.

Rates are claim-and-release cycles per second; latencies are the claim call alone
(closed loop) or from when the claim was due (open loop). Paced phases also say how
many of their slowest claims (at or above the p99) answered during one of the phase's
VACUUMs or within 0.5 s after it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import json
import os
import platform
import random
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from benchdb import bench_settings, create_database, drop_database, plain  # noqa: E402 (bench/, the script's own folder)
from diagnosis import add_drop_index_option, add_explain_claims_option, buffers_per_scan, drop_indexes  # noqa: E402 (bench/, the script's own folder)
from server_cpu import backend_pids, cpu_seconds  # noqa: E402

KINDS = ("order_entry", "verification", "exception", "customer_message", "tracking_follow_up", "return")
LANGUAGES = ("en", "de", "fr", "es")
CHANNELS = ("email", "phone", "chat")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="Open items at the start of each phase.")
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--agents", type=int, default=50, help="Concurrent agents (one connection each).")
    parser.add_argument("--duration", type=float, default=60, help="Seconds per phase.")
    parser.add_argument(
        "--sample-every", type=int, default=50, help="Check the urgency rank of every n-th claim."
    )
    parser.add_argument("--hand-back-share", type=float, default=0.2)
    parser.add_argument(
        "--phases",
        default="raw,app,raw,app,app@60,raw@60,app+report,raw+report,app+idle-report",
        help="raw / app (OrderDesk), closed loop; @N: open loop, claims due at N %% of OrderDesk's"
        " closed-loop rate measured before in the run, latency counted from when each was due;"
        " +report: a snapshot held all phase by a session without a timeout; +idle-report: a"
        " transaction left idle by the application role, which its idle_in_transaction_session_timeout"
        " ends (phase 2x long).",
    )
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=10,
        help="Seconds between VACUUMs of the queue tables during a phase, standing in for autovacuum"
        " (off on the shared development server); 0 leaves it to the server.",
    )
    parser.add_argument(
        "--claims",
        type=int,
        default=0,
        help="Run one OrderDesk phase until this many claims were made (no time limit), recycling"
        " finished items so the queue never runs dry; its history is checked in SQL afterwards.",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="OrderDesk phases: the engine's pool size, shared by all agents as in one deployed process"
        " (it may open as many again as overflow); default one per agent.",
    )
    parser.add_argument(
        "--full-rate",
        type=float,
        default=None,
        help="Claims per second that @N phases take N %% of, instead of OrderDesk's closed-loop rate"
        " measured in the run: the same pace across runs, to compare them.",
    )
    parser.add_argument(
        "--max-overflow",
        type=int,
        default=0,
        help="OrderDesk phases: connections opened beyond the pool while it is busy"
        " (ORDERDESK_DB_MAX_OVERFLOW; default 0, as the platform's).",
    )
    parser.add_argument(
        "--recycle-every",
        type=float,
        default=None,
        help="Seconds between re-openings of finished items during a phase (default: 5 with"
        " --claims, else never).",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3,
        help="Open-loop phases: first seconds not counted.",
    )
    parser.add_argument(
        "--progress-every", type=float, default=60, help="Seconds between progress lines of a phase."
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a superuser: the checks read past row-level security);"
        " env BENCH_DATABASE_URL.",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--profile", type=Path, help="cProfile the OrderDesk phases into this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the database (its name is printed).")
    add_drop_index_option(parser)
    add_explain_claims_option(parser)
    args = parser.parse_args(argv)
    if args.full_rate is not None and args.full_rate <= 0:
        parser.error("--full-rate must be a positive number of claims per second")
    if args.max_overflow < 0:
        parser.error("--max-overflow must be 0 or more")
    if args.explain_claims < 0:
        parser.error("--explain-claims must be 0 or more agents")
    return args


@dataclass
class Agent:
    index: int
    id: uuid.UUID
    tenant_ids: list[uuid.UUID]


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cycles: int = 0
    empty: int = 0
    # Claim latency: the call alone (closed loop), or from when the claim was due (open loop).
    latencies: list[float] = field(default_factory=list)
    # The claim call alone, in both.
    service: list[float] = field(default_factory=list)
    # perf_counter when each claim in `latencies` answered, in the same order.
    answered: list[float] = field(default_factory=list)
    # (start, end) perf_counter of each VACUUM during the phase.
    vacuums: list[tuple[float, float]] = field(default_factory=list)
    pace: float | None = None
    # (agent, tenant, item, CLOCK_MONOTONIC ns when the claim answered, ns when the release
    # began), written to the bench_holds table in batches so that any number of claims fits.
    # The ids are kept as their 16 bytes: a tuple of ints and bytes leaves the garbage
    # collector's sight after the first collection it survives, one holding UUID objects
    # never does. Kept as UUIDs, a phase's history was nearly all this process's tracked
    # objects, and each full collection, which stops every agent, walked it: 5-23 ms.
    holds: list[tuple[int, bytes, bytes, int, int]] = field(default_factory=list)
    holds_written: int = 0
    recycled: int = 0
    ranks: list[int] = field(default_factory=list)
    # Rank samples whose check ran while a re-opening batch was being written (perf_counter
    # windows below): the items that batch put back were not open when the claim was made,
    # yet the check, a moment later, counts them. Kept apart, with their ranks.
    ranks_beside_recycling: list[int] = field(default_factory=list)
    # (generation, seconds) of every garbage collection during the phase.
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    recycling: list[tuple[float, float]] = field(default_factory=list)
    # (seconds into the phase, seconds late) of each time this process's event loop woke
    # up 20 ms or more after it asked to.
    loop_stalls: list[tuple[float, float]] = field(default_factory=list)
    # (table, seconds into the phase, full page images, bytes) of WAL each VACUUM wrote.
    vacuum_wal: list[tuple[str, float, int, int]] = field(default_factory=list)
    # What the whole server wrote to the WAL during the phase (pg_stat_wal, differences):
    # records, full page images, bytes and flushes (wal_sync). The benchmark's own writes
    # (claim history, VACUUMs) are in it, alike for raw and OrderDesk phases.
    wal: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    dead_rows: dict = field(default_factory=dict)
    # CPU seconds of this process (the agents' Python side) during the phase.
    client_cpu: float = 0.0
    # CPU seconds of the PostgreSQL backends serving this database (the agents' connections).
    db_cpu: float = 0.0
    finished_at: list[float] = field(default_factory=list)
    report_ended_after: float | None = None
    started: float = 0.0
    started_utc: str = ""

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0

    def slow_near_vacuum(self, after: float = 0.5) -> tuple[int, int]:
        """Of the claims at or above the p99, how many answered during a VACUUM or within
        `after` seconds of its end: (those, all of them)."""
        if not self.latencies:
            return 0, 0
        p99 = self.percentile(0.99) / 1000
        slow = [t for t, latency in zip(self.answered, self.latencies, strict=True) if latency >= p99]
        near = sum(1 for t in slow if any(start <= t <= end + after for start, end in self.vacuums))
        return near, len(slow)

    def slowest_by_second(self) -> dict[int, int]:
        """How many of the claims at or above the p99 answered in each second of the phase."""
        if not self.latencies:
            return {}
        p99 = self.percentile(0.99) / 1000
        seconds = sorted(
            int(t - self.started)
            for t, latency in zip(self.answered, self.latencies, strict=True)
            if latency >= p99
        )
        return {second: seconds.count(second) for second in dict.fromkeys(seconds)}

    def percentile(self, p: float, of: str = "latencies") -> float:
        values = getattr(self, of)
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


# ------------------------------------------------------------------ setup


async def setup(args, owner_dsn: str, settings) -> list[Agent]:
    import asyncpg

    from orderdesk.core.db import Database, make_engine
    from orderdesk.tenants import services as tenant_services

    db = Database(make_engine(settings.app_url, pool_size=2))
    try:
        system = await tenant_services.system_actor(db)
        tenant_ids = []
        for n in range(args.tenants):
            tenant = await tenant_services.create_tenant(
                db, system, slug=f"bench-{n}-{secrets.token_hex(3)}", name=f"Bench client {n}"
            )
            tenant_ids.append(tenant.id)
    finally:
        await db.dispose()
    rng = random.Random(args.seed)
    agents = []
    conn = await asyncpg.connect(owner_dsn)
    try:
        for index in range(args.agents):
            agent = Agent(index, uuid.uuid4(), rng.sample(tenant_ids, min(3, len(tenant_ids))))
            agents.append(agent)
            await conn.execute(
                "INSERT INTO users (id, email, display_name, password_hash, kind, staff_role)"
                " VALUES ($1, $2, $3, 'unusable', 'staff', 'agent')",
                agent.id,
                f"agent{index}@bench.example",
                f"Agent {index}",
            )
            for tenant_id in agent.tenant_ids:
                kinds = [] if rng.random() < 0.5 else rng.sample(KINDS, rng.randint(3, 5))
                await conn.execute(
                    "INSERT INTO agent_assignments (tenant_id, user_id, languages, channels, task_kinds)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    tenant_id,
                    agent.id,
                    rng.sample(LANGUAGES, rng.randint(2, 3)),
                    rng.sample(CHANNELS, rng.randint(2, 3)),
                    kinds,
                )
        # As on a live desk, every item has its order except half the customer messages,
        # and every customer message its conversation: the indexes on both columns then
        # hold what they would in production. Ids derive from g so the items can find them.
        await conn.execute(BENCH_ORDERS, args.items, tenant_ids)
        await conn.execute(BENCH_CONVERSATIONS, args.items, tenant_ids)
        # Due times from two hours ago (breached) to two days ahead; half the items need a
        # language, half a channel; values and priorities spread.
        await conn.execute(
            """
            INSERT INTO work_items (tenant_id, id, kind, status, title, cause, order_id, order_number,
                conversation_id, language, channel, priority,
                value_minor, currency, client_tier, sla_target_seconds, sla_consumed_seconds,
                sla_running_since, due_at, at_risk_at, created_by, created_at, updated_at)
            SELECT t.ids[1 + (g % cardinality(t.ids))], gen_random_uuid(),
                (ARRAY['order_entry','verification','exception','customer_message',
                       'tracking_follow_up','return'])[1 + (g * 7 % 6)]::work_item_kind,
                'open', 'Bench item ' || g, 'manual:bench',
                CASE WHEN g * 7 % 6 <> 3 OR g % 2 = 0 THEN md5('order' || g)::uuid END,
                CASE WHEN g * 7 % 6 <> 3 OR g % 2 = 0 THEN g END,
                CASE WHEN g * 7 % 6 = 3 THEN md5('conversation' || g)::uuid END,
                CASE WHEN g % 2 = 0 THEN (ARRAY['en','de','fr','es'])[1 + (g / 2 % 4)] END,
                CASE WHEN g % 3 = 0 THEN (ARRAY['email','phone','chat'])[1 + (g / 3 % 3)] END,
                (ARRAY['normal','normal','normal','high','urgent'])[1 + (g * 13 % 5)]::order_priority,
                (g * 7919) % 500000, 'EUR', 1 + g % 3, 14400, 0, now() - interval '1 hour',
                now() + ((g::bigint * 104729) % 180000 - 7200) * interval '1 second',
                now() + ((g::bigint * 104729) % 180000 - 7200) * interval '1 second' - interval '48 minutes',
                'bench', now() - (g % 3600) * interval '1 second', now()
            FROM generate_series(1, $1) AS g, (SELECT $2::uuid[] AS ids) AS t
            """,
            args.items,
            tenant_ids,
        )
        await conn.execute(HOLDS_TABLE)
        await drop_indexes(conn, args.drop_index)
        await conn.execute("VACUUM ANALYZE work_items")
        await conn.execute("VACUUM ANALYZE agent_assignments")
    finally:
        await conn.close()
    return agents


# One order per item number g (the same rows the items point at), all awaiting verification.
BENCH_ORDERS = """
    INSERT INTO orders (tenant_id, id, number, channel, status, payment_status, priority, customer_name,
        shipping_address, currency, subtotal_minor, tax_minor, shipping_minor, discount_minor,
        total_minor, lines_fingerprint)
    SELECT t.ids[1 + (g % cardinality(t.ids))], md5('order' || g)::uuid, g, 'agent',
        'awaiting_verification', 'pending', 'normal', 'Bench customer ' || g, '{}', 'EUR',
        (g * 7919) % 500000, 0, 0, 0, (g * 7919) % 500000, 'bench'
    FROM generate_series(1, $1) AS g, (SELECT $2::uuid[] AS ids) AS t
    WHERE g * 7 % 6 <> 3 OR g % 2 = 0
"""

# One conversation per customer-message item.
BENCH_CONVERSATIONS = """
    INSERT INTO conversations (tenant_id, id, reply_token, status, channel)
    SELECT t.ids[1 + (g % cardinality(t.ids))], md5('conversation' || g)::uuid, 'bench' || g, 'open', 'email'
    FROM generate_series(1, $1) AS g, (SELECT $2::uuid[] AS ids) AS t
    WHERE g * 7 % 6 = 3
"""

RESET = [
    """UPDATE work_items SET status = 'open', outcome = NULL, finished_at = NULL, finished_by = NULL,
        claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL, version = 1
       WHERE status <> 'open'""",
    "TRUNCATE work_claims",
    "TRUNCATE bench_holds",
    "VACUUM ANALYZE work_items",
    "VACUUM ANALYZE work_claims",
    # The set-up's and the reset's writes go to disk now, not in the phase: else the
    # operating system writes them back about 30 s later (dirty_expire_centisecs), and
    # every commit of the phase waits behind that flush.
    "CHECKPOINT",
]


async def reset(owner_dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        for statement in RESET:
            await conn.execute(statement)
    finally:
        await conn.close()


QUEUE_TABLES = ("work_items", "work_claims")


async def autovacuum_throttle(conn, table: str) -> tuple[float, int]:
    """The cost-based pause autovacuum would take on `table`: (delay in ms, cost limit).

    A manual VACUUM runs unthrottled (vacuum_cost_delay = 0) unless told; the stand-in for
    autovacuum must pause as autovacuum would, from the table's own settings where it has
    them, else the server's autovacuum settings (-1 meaning "as for a manual VACUUM").
    """
    options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table)
    own = dict(option.split("=", 1) for option in options or [])
    settings = {
        row["name"]: row["setting"]
        for row in await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            [
                "autovacuum_vacuum_cost_delay",
                "autovacuum_vacuum_cost_limit",
                "vacuum_cost_delay",
                "vacuum_cost_limit",
            ],
        )
    }
    delay = float(own.get("autovacuum_vacuum_cost_delay", settings["autovacuum_vacuum_cost_delay"]))
    if delay < 0:
        delay = float(settings["vacuum_cost_delay"])
    limit = int(own.get("autovacuum_vacuum_cost_limit", settings["autovacuum_vacuum_cost_limit"]))
    if limit < 0:
        limit = int(settings["vacuum_cost_limit"])
    return delay, limit


async def wal_stats(pool) -> dict[str, int]:
    """The server's WAL counters so far (pg_stat_wal)."""
    row = await pool.fetchrow("SELECT wal_records, wal_fpi, wal_bytes, wal_sync FROM pg_stat_wal")
    return {name: int(value) for name, value in row.items()}


def vacuum_wal_usage(messages: list[str]) -> tuple[int, int]:
    """(full page images, bytes) of WAL that VACUUM VERBOSE reported writing."""
    for message in messages:
        if found := re.search(r"WAL usage: \d+ records, (\d+) full page images, (\d+) bytes", message):
            return int(found[1]), int(found[2])
    return 0, 0


async def table_stats(owner_dsn: str) -> dict:
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT n_live_tup, n_dead_tup, autovacuum_count, n_tup_upd, n_tup_hot_upd"
            " FROM pg_stat_user_tables WHERE relname = 'work_items'"
        )
        return dict(row)
    finally:
        await conn.close()


# ------------------------------------------------------------------ the two claimers


# The bare claim: pick the most urgent open item the agent may take with SKIP LOCKED in a
# sub-query, mark it claimed, record the claim. Nothing else (no lease sweep, no
# one-item-at-a-time rule, no answer beyond the ids).
RAW_CLAIM = """
WITH candidate AS (
    SELECT w.tenant_id, w.id FROM work_items w
    WHERE w.status = 'open'
      AND w.tenant_id = ANY ($1::uuid[])
      AND EXISTS (SELECT 1 FROM agent_assignments a
                  WHERE a.tenant_id = w.tenant_id AND a.user_id = $2
                    AND (cardinality(a.task_kinds) = 0 OR w.kind::text = ANY (a.task_kinds))
                    AND (w.language IS NULL OR w.language = ANY (a.languages))
                    AND (w.channel IS NULL OR w.channel = ANY (a.channels)))
    ORDER BY w.due_at, w.priority DESC, w.value_minor DESC, w.client_tier, w.created_at, w.id
    LIMIT 1
    FOR UPDATE OF w SKIP LOCKED
), claimed AS (
    UPDATE work_items w SET
        status = 'claimed', claimed_by = $2, claimed_at = $3, lease_expires_at = $4,
        updated_at = $3, version = w.version + 1
    FROM candidate c
    WHERE w.tenant_id = c.tenant_id AND w.id = c.id
    RETURNING w.tenant_id, w.id
), history AS (
    INSERT INTO work_claims (tenant_id, id, work_item_id, agent_id, claimed_at, via)
    SELECT tenant_id, $5, id, $2, $3, 'get_next' FROM claimed
)
SELECT tenant_id, id FROM claimed
"""


RELEASE = """
WITH item AS (
    UPDATE work_items SET
        status = $4::work_item_status,
        outcome = CASE WHEN $4 = 'done' THEN 'resolved'::work_outcome END,
        finished_at = CASE WHEN $4 = 'done' THEN $3::timestamptz END,
        finished_by = CASE WHEN $4 = 'done' THEN 'bench' END,
        claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL,
        updated_at = $3, version = version + 1
    WHERE tenant_id = $1 AND id = $2 AND status = 'claimed'
    RETURNING tenant_id, id
)
UPDATE work_claims c SET released_at = $3, release_reason = $5
FROM item WHERE c.tenant_id = item.tenant_id AND c.work_item_id = item.id AND c.released_at IS NULL
"""


class RawClaimer:
    def __init__(self, app_dsn: str, agents: int) -> None:
        self.app_dsn = app_dsn
        self.size = agents
        self.sql = RAW_CLAIM

    async def __aenter__(self):
        import asyncpg

        self.pool = await asyncpg.create_pool(self.app_dsn, min_size=self.size, max_size=self.size)
        return self

    async def __aexit__(self, *exc):
        await self.pool.close()

    def worker(self, agent: Agent):
        import datetime as dt

        tenants = "{" + ",".join(str(t) for t in agent.tenant_ids) + "}"
        pool = self.pool
        sql = self.sql

        class Worker:
            async def __aenter__(w):
                w.conn = await pool.acquire()
                w.claim_stmt = await w.conn.prepare(sql)
                w.release_stmt = await w.conn.prepare(RELEASE)
                return w

            async def __aexit__(w, *exc):
                await pool.release(w.conn)

            async def claim(w):
                now = dt.datetime.now(dt.UTC)
                async with w.conn.transaction():
                    await w.conn.execute("SELECT set_config('orderdesk.tenant_ids', $1, true)", tenants)
                    row = await w.claim_stmt.fetchrow(
                        agent.tenant_ids, agent.id, now, now + dt.timedelta(minutes=10), uuid.uuid4()
                    )
                return (row["tenant_id"], row["id"]) if row else None

            async def release(w, tenant_id, item_id, hand_back: bool):
                now = dt.datetime.now(dt.UTC)
                async with w.conn.transaction():
                    await w.conn.execute("SELECT set_config('orderdesk.tenant_ids', $1, true)", tenants)
                    await w.release_stmt.fetch(
                        tenant_id,
                        item_id,
                        now,
                        "open" if hand_back else "done",
                        "hand_back" if hand_back else "done",
                    )

        return Worker()


class AppClaimer:
    def __init__(self, settings, agents: int, pool_size: int | None = None, max_overflow: int = 0) -> None:
        self.settings = settings
        self.size = pool_size or agents
        self.max_overflow = max_overflow

    async def __aenter__(self):
        from orderdesk.core.db import Database, make_engine

        engine = make_engine(self.settings.app_url, pool_size=self.size, max_overflow=self.max_overflow)
        self.db = Database(engine)
        # Open every connection before the clock starts.
        conns = [await self.db.engine.connect() for _ in range(self.size)]
        for c in conns:
            await c.close()
        return self

    async def __aexit__(self, *exc):
        await self.db.dispose()

    async def explain_claim(self, agent: Agent) -> dict[str, int]:
        """Buffers per scan of Get next's claim statement for `agent`, run under EXPLAIN ANALYZE
        in a transaction that is rolled back (`--explain-claims`)."""
        from orderdesk.core.ids import new_id
        from orderdesk.core.tenancy import Scope
        from orderdesk.workqueue import services

        class Measured(Exception):
            pass

        sql, names = services._CLAIM_WITH_SKILLS_DRIVER
        now = services.utcnow()
        params = {
            "tenant_ids": sorted(agent.tenant_ids),
            "agent_id": agent.id,
            "now": now,
            "lease": now + services.LEASE,
            "claim_id": new_id(),
        }
        scope = Scope(tenant_ids=frozenset(agent.tenant_ids))
        with contextlib.suppress(Measured):
            async with self.db.driver_transaction(scope, extra_settings=services.GET_NEXT_SETTINGS) as driver:
                plan = await driver.fetchval(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *(params[n] for n in names)
                )
                raise Measured
        return buffers_per_scan(json.loads(plan) if isinstance(plan, str) else plan)

    def worker(self, agent: Agent):
        from orderdesk.accounts.actors import Actor, ActorKind
        from orderdesk.accounts.models import StaffRole
        from orderdesk.workqueue import services
        from orderdesk.workqueue.states import WorkOutcome

        actor = Actor(
            kind=ActorKind.STAFF,
            id=agent.id,
            display_name=f"Agent {agent.index}",
            tenant_ids=frozenset(agent.tenant_ids),
            staff_role=StaffRole.AGENT,
        )
        db = self.db

        class Worker:
            async def __aenter__(w):
                return w

            async def __aexit__(w, *exc):
                return None

            async def claim(w):
                item = await services.claim_next_work_item(db, actor)
                return (item.tenant_id, item.id) if item else None

            async def release(w, tenant_id, item_id, hand_back: bool):
                if hand_back:
                    await services.hand_back_work_item(db, actor, item_id)
                else:
                    await services.complete_work_item(db, actor, item_id, WorkOutcome.RESOLVED)

        return Worker()


# ------------------------------------------------------------------ checks


RANK = """
SELECT id FROM (
    (SELECT w.id, w.due_at, w.priority, w.value_minor, w.client_tier, w.created_at FROM work_items w
     WHERE w.status = 'open' AND w.tenant_id = ANY ($1::uuid[])
       AND EXISTS (SELECT 1 FROM agent_assignments a
                   WHERE a.tenant_id = w.tenant_id AND a.user_id = $2
                     AND (cardinality(a.task_kinds) = 0 OR w.kind::text = ANY (a.task_kinds))
                     AND (w.language IS NULL OR w.language = ANY (a.languages))
                     AND (w.channel IS NULL OR w.channel = ANY (a.channels)))
     ORDER BY w.due_at, w.priority DESC, w.value_minor DESC, w.client_tier, w.created_at, w.id
     LIMIT $5)
    UNION ALL
    SELECT id, due_at, priority, value_minor, client_tier, created_at FROM work_items
    WHERE tenant_id = $3 AND id = $4
) s
ORDER BY due_at, priority DESC, value_minor DESC, client_tier, created_at, id
"""


RECYCLE = """
UPDATE work_items SET status = 'open', outcome = NULL, outcome_note = NULL, finished_at = NULL,
    finished_by = NULL, updated_at = now(), version = version + 1
WHERE status = 'done'
"""


async def rank_of(checker, agent: Agent, tenant_id, item_id, limit: int) -> int:
    """How many items the agent could take, still open, come before the one just claimed."""
    async with checker.acquire() as conn:
        rows = await conn.fetch(RANK, agent.tenant_ids, agent.id, tenant_id, item_id, limit)
    ids = [r["id"] for r in rows]
    return ids.index(item_id)


HOLDS_TABLE = """
CREATE TABLE IF NOT EXISTS bench_holds (
    agent int NOT NULL, tenant_id uuid NOT NULL, item_id uuid NOT NULL,
    answered bigint NOT NULL, released bigint NOT NULL
)
"""


async def write_holds(checker, phase: Phase) -> None:
    """Move the recorded holds into bench_holds (COPY), keeping the client's memory flat."""
    batch, phase.holds = phase.holds, []
    if batch:
        records = [
            (agent, uuid.UUID(bytes=tenant_id), uuid.UUID(bytes=item_id), answered, released)
            for agent, tenant_id, item_id, answered, released in batch
        ]
        async with checker.acquire() as conn:
            await conn.copy_records_to_table("bench_holds", records=records)
        phase.holds_written += len(batch)


# Overlapping holds, from the client's own record: sorted by the moment each claim answered,
# a hold overlaps an earlier one when it answered before the latest release of those began.
OVERLAPS = """
SELECT count(*) FROM (
    SELECT answered, max(released) OVER (PARTITION BY {key} ORDER BY answered, released
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
    FROM bench_holds
) s WHERE answered < before
"""


async def history_checks(owner_dsn: str, phase: Phase) -> dict:
    """The phase's history, checked in SQL: the client's holds (bench_holds) and `work_claims`."""
    import asyncpg

    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute("SET work_mem = '256MB'")
        holds = await conn.fetchrow(
            "SELECT count(*) AS holds, count(DISTINCT item_id) AS items FROM bench_holds"
        )
        more_than_once = await conn.fetchval(
            "SELECT count(*) FROM (SELECT item_id FROM bench_holds GROUP BY item_id HAVING count(*) > 1) m"
        )
        overlaps = await conn.fetchval(OVERLAPS.format(key="item_id"))
        agent_overlaps = await conn.fetchval(OVERLAPS.format(key="agent"))
        db = await conn.fetchrow(
            """SELECT count(*) AS claims,
                      count(DISTINCT id) AS claim_ids,
                      count(DISTINCT work_item_id) AS items,
                      count(*) FILTER (WHERE released_at IS NULL) AS still_open,
                      (SELECT count(*) FROM (SELECT work_item_id FROM work_claims WHERE released_at IS NULL
                        GROUP BY tenant_id, work_item_id HAVING count(*) > 1) d) AS items_with_two_open_claims
               FROM work_claims"""
        )
        # Per item, as many claims recorded by the database as the agents saw.
        mismatched = await conn.fetchval(
            """SELECT count(*) FROM
                 (SELECT tenant_id, item_id, count(*) AS n FROM bench_holds GROUP BY 1, 2) h
                 FULL JOIN (SELECT tenant_id, work_item_id AS item_id, count(*) AS n
                            FROM work_claims GROUP BY 1, 2) c USING (tenant_id, item_id)
               WHERE h.n IS DISTINCT FROM c.n"""
        )
        claimed_now = await conn.fetchval("SELECT count(*) FROM work_items WHERE status = 'claimed'")
    finally:
        await conn.close()
    return {
        "client_claims": holds["holds"],
        "db_claims": db["claims"],
        "db_distinct_claim_ids": db["claim_ids"],
        "distinct_items": holds["items"],
        "items_claimed_more_than_once": more_than_once,
        "double_assignment_client_side": overlaps,
        "agent_holding_two": agent_overlaps,
        "items_with_two_open_claims": db["items_with_two_open_claims"],
        "items_whose_claim_count_differs": mismatched,
        "open_claims_left": db["still_open"],
        "items_left_claimed": claimed_now,
    }


# ------------------------------------------------------------------ a phase


async def run_phase(
    args,
    name: str,
    claimer,
    agents: list[Agent],
    checker,
    owner_dsn: str,
    app_dsn: str,
    pace: float | None = None,
) -> Phase:
    """One phase. With `pace` (claims per second, all agents together) the loop is open: each
    agent's claims fall due on a fixed schedule, and a claim's latency runs from when it was
    due, so time spent behind schedule counts; otherwise each agent claims again at once."""
    import asyncpg

    phase = Phase(name)
    phase.pace = pace
    claims_seen = itertools.count(1)
    # What `orderdesk serve` does once started: what exists now (modules, compiled
    # statements, the set-up's objects) leaves the collector's sight, so a full collection
    # during the phase walks only what the phase itself made. Done before every phase,
    # raw or OrderDesk alike; the pauses that remain are counted (gc_pauses).
    gc.collect()
    gc.freeze()
    collection_began = 0.0

    def note_collection(stage: str, info: dict) -> None:
        nonlocal collection_began
        if stage == "start":
            collection_began = time.perf_counter()
        else:
            phase.gc_pauses.append((info["generation"], time.perf_counter() - collection_began))

    gc.callbacks.append(note_collection)
    stop_at = 0.0
    # --claims: the phase ends when that many claims were made, however long it takes.
    claim_limit = args.claims or None
    rng = random.Random(args.seed)
    hand_backs = [rng.random() < args.hand_back_share for _ in range(997)]
    clock = time.monotonic_ns

    def going() -> bool:
        return time.perf_counter() < stop_at and (claim_limit is None or phase.cycles < claim_limit)

    async def agent_loop(agent: Agent) -> None:
        n = agent.index
        # Open loop: this agent's claims are due every `interval`, the agents staggered evenly.
        interval = len(agents) / pace if pace else 0.0
        due = started + interval * agent.index / len(agents)
        async with claimer.worker(agent) as worker:
            while going():
                if pace:
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                    if not going():
                        break
                asked = time.perf_counter()
                got = await worker.claim()
                answered_at = time.perf_counter()
                if pace:
                    latency, due = answered_at - due, due + interval
                else:
                    latency = answered_at - asked
                if got is None:
                    phase.empty += 1
                    if not pace:
                        await asyncio.sleep(0.05)
                    continue
                answered = clock()
                if not pace or answered_at - started >= args.warmup:
                    phase.latencies.append(latency)
                    phase.answered.append(answered_at)
                    phase.service.append(answered_at - asked)
                tenant_id, item_id = got
                if next(claims_seen) % args.sample_every == 0:
                    rank = await rank_of(checker, agent, tenant_id, item_id, 1000)
                    checked_at = time.perf_counter()
                    # From when the claim was asked: its snapshot may predate a batch that
                    # committed before the answer arrived.
                    beside = any(b < checked_at and e > asked for b, e in phase.recycling[-3:])
                    (phase.ranks_beside_recycling if beside else phase.ranks).append(rank)
                n += 1
                hand_back = hand_backs[n % len(hand_backs)]
                phase.holds.append((agent.index, tenant_id.bytes, item_id.bytes, answered, clock()))
                await worker.release(tenant_id, item_id, hand_back)
                phase.cycles += 1
                phase.finished_at.append(time.perf_counter())

    report = None
    duration = float("inf") if claim_limit else args.duration
    if name.endswith("+report"):
        # The long report: a snapshot held for the whole phase by a session the
        # application role's idle timeout does not govern (the owner's).
        report = await asyncpg.connect(owner_dsn)
        await report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await report.fetchval("SELECT count(*) FROM work_items")
    elif name.endswith("+idle-report"):
        # A report of the application role left idle in its transaction (a crashed request):
        # its idle_in_transaction_session_timeout (migration 0010) should end it.
        duration = max(2 * args.duration, 120)
        report = await asyncpg.connect(app_dsn)
        await report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await report.execute(
            "SELECT set_config('orderdesk.tenant_ids', $1, true)",
            "{" + ",".join(sorted({str(t) for a in agents for t in a.tenant_ids})) + "}",
        )
        await report.fetchval("SELECT count(*) FROM work_items")
    before = await table_stats(owner_dsn)
    vacuums: list[float] = []
    backends = await backend_pids(owner_dsn)
    db_cpu_before = cpu_seconds(backends)
    wal_before = await wal_stats(checker)

    async def vacuum_loop() -> None:
        conn = await asyncpg.connect(owner_dsn)
        reports: list[str] = []
        conn.add_log_listener(lambda _conn, message: reports.append(message.message))
        try:
            throttles = {table: await autovacuum_throttle(conn, table) for table in QUEUE_TABLES}
            while time.perf_counter() < stop_at:
                await asyncio.sleep(args.vacuum_every)
                began = time.perf_counter()
                for table, (delay_ms, limit) in throttles.items():
                    await conn.execute(f"SET vacuum_cost_delay = {delay_ms}")
                    await conn.execute(f"SET vacuum_cost_limit = {limit}")
                    # Autovacuum never vacuums a table's indexes in parallel; a manual VACUUM
                    # does unless told, with two more processes on a two-core machine.
                    reports.clear()
                    await conn.execute(f"VACUUM (PARALLEL 0, VERBOSE) {table}")
                    phase.vacuum_wal.append((table, round(began - started, 2), *vacuum_wal_usage(reports)))
                vacuums.append(time.perf_counter() - began)
                phase.vacuums.append((began, time.perf_counter()))
        finally:
            await conn.close()

    async def recycle_loop(every: float) -> None:
        # Finished items go back to the queue, unchanged otherwise (same due times, skills,
        # tenants), so a long phase never runs dry and the head of the queue stays contested.
        conn = await asyncpg.connect(owner_dsn)
        try:
            while going():
                await asyncio.sleep(every)
                began = time.perf_counter()
                # Open before the statement runs, so that a check running meanwhile sees it.
                phase.recycling.append((began, float("inf")))
                status = await conn.execute(RECYCLE)
                phase.recycling[-1] = (began, time.perf_counter())
                phase.recycled += int(status.split()[-1])
        finally:
            await conn.close()

    async def holds_loop() -> None:
        while going():
            await asyncio.sleep(1)
            if len(phase.holds) >= 20_000:
                await write_holds(checker, phase)

    async def progress_loop() -> None:
        last_cycles, last_at = 0, time.perf_counter()
        while going():
            await asyncio.sleep(args.progress_every)
            now, cycles = time.perf_counter(), phase.cycles
            rate = (cycles - last_cycles) / (now - last_at)
            print(
                f"    {name} {now - started:7.0f} s  claims {cycles:>9,}  {rate:7.1f}/s"
                f"  recycled {phase.recycled:,}  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            last_cycles, last_at = cycles, now

    async def watch_event_loop(tick: float = 0.01) -> None:
        # A claim answered late because this process's event loop was busy (or not scheduled)
        # is the client's delay, not the database's: note every tick that woke up late.
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(tick)
            late = time.perf_counter() - asked - tick
            if late >= 0.02:
                phase.loop_stalls.append((asked - started, late))

    # CPU time, not wall time: on a busy machine wall time mostly shows waiting to be scheduled.
    profiler = cProfile.Profile(time.process_time) if args.profile and name.startswith("app") else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    phase.started = started
    phase.started_utc = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1000):03d}"
    cpu_started = time.process_time()
    stop_at = started + duration
    background = [asyncio.create_task(vacuum_loop())] if args.vacuum_every else []

    async def watch_report() -> None:
        # The server ends the session with an error and closes the socket; asyncpg sees it.
        while time.perf_counter() < stop_at and not report.is_closed():  # noqa: ASYNC110 (asyncpg has no event)
            await asyncio.sleep(0.5)
        if report.is_closed():
            phase.report_ended_after = time.perf_counter() - started

    if name.endswith("+idle-report"):
        background.append(asyncio.create_task(watch_report()))
    recycle_every = args.recycle_every if args.recycle_every is not None else (5 if args.claims else 0)
    if recycle_every:
        background.append(asyncio.create_task(recycle_loop(recycle_every)))
    holds_writer = asyncio.create_task(holds_loop())
    background.append(asyncio.create_task(progress_loop()))
    background.append(asyncio.create_task(watch_event_loop()))
    await asyncio.gather(*(agent_loop(a) for a in agents))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = time.process_time() - cpu_started
    gc.callbacks.remove(note_collection)
    phase.db_cpu = cpu_seconds(backends) - db_cpu_before
    wal_after = await wal_stats(checker)
    phase.wal = {name: wal_after[name] - wal_before[name] for name in wal_before}
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(args.profile))
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await holds_writer  # not cancelled: a batch being copied must land
    phase.dead_rows = {
        "before": before,
        "after": await table_stats(owner_dsn),
        "vacuums": len(vacuums),
        "vacuum_seconds_max": round(max(vacuums), 2) if vacuums else None,
    }
    if args.explain_claims and isinstance(claimer, AppClaimer):
        for agent in agents[: args.explain_claims]:
            touched = await claimer.explain_claim(agent)
            print(
                f"    {name} explain agent {agent.index}: "
                + ", ".join(f"{k} {v}" for k, v in touched.items())
            )
    if report is not None and not report.is_closed():
        try:
            await report.fetchval("SELECT count(*) FROM work_items")  # still the same snapshot
            await report.execute("COMMIT")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
            phase.report_ended_after = phase.report_ended_after or phase.seconds
        await report.close()
    await write_holds(checker, phase)
    phase.checks = await history_checks(owner_dsn, phase)
    return phase


async def run(args) -> dict:
    import asyncpg

    from orderdesk.core.migrations import upgrade
    from orderdesk.workqueue import services  # noqa: F401  (loaded before anything is timed)

    name, owner_dsn = await create_database(args.server_url)
    phases: list[Phase] = []
    try:
        await asyncio.to_thread(upgrade, owner_dsn)
        settings = bench_settings(owner_dsn, args.redis_url)
        print(f"setting up {args.items:,} items, {args.tenants} tenants, {args.agents} agents …", flush=True)
        agents = await setup(args, owner_dsn, settings)
        checker = await asyncpg.create_pool(owner_dsn, min_size=2, max_size=4)
        try:
            for phase_name in ["app"] if args.claims else args.phases.split(","):
                pace = None
                if "@" in phase_name:
                    # The same claims per second for raw and OrderDesk: a share of what OrderDesk
                    # sustained closed-loop earlier in this run (or of --full-rate).
                    closed = [p.rate for p in phases if p.name == "app"]
                    if args.full_rate:
                        closed = [args.full_rate]
                    if not closed:
                        raise SystemExit(
                            f"{phase_name}: needs an 'app' phase before it, or --full-rate, to set the pace"
                        )
                    pace = float(phase_name.split("@")[1]) / 100 * sum(closed) / len(closed)
                await reset(owner_dsn)
                if phase_name.startswith("raw"):
                    claimer = RawClaimer(plain(settings.app_url), args.agents)
                else:
                    claimer = AppClaimer(
                        settings, args.agents, pool_size=args.pool_size, max_overflow=args.max_overflow
                    )
                async with claimer:
                    phase = await run_phase(
                        args, phase_name, claimer, agents, checker, owner_dsn, plain(settings.app_url), pace
                    )
                phases.append(phase)
                paced = ""
                if pace:
                    near, slow = phase.slow_near_vacuum()
                    paced = (
                        f" (due {pace:.1f}/s; call alone p99 {phase.percentile(0.99, 'service'):.1f} ms;"
                        f" {near}/{slow} of the slowest near a VACUUM)"
                    )
                print(
                    f"  {phase.name:<12} {phase.rate:8.1f} cycles/s  p50 {phase.percentile(0.5):6.1f} ms"
                    f"  p99 {phase.percentile(0.99):7.1f} ms  claims {phase.cycles:,}"
                    f"{paced}"
                    f"  cpu/cycle {phase.client_cpu / max(phase.cycles, 1) * 1000:.2f} ms"
                    f" db/cycle {phase.db_cpu / max(phase.cycles, 1) * 1000:.2f} ms"
                    f" wal/cycle {phase.wal['wal_bytes'] / max(phase.cycles, 1):,.0f} B"
                    f" ({phase.wal['wal_fpi'] / max(phase.cycles, 1):.2f} page images)"
                    f"  double {phase.checks['double_assignment_client_side']}"
                    f"/{phase.checks['items_with_two_open_claims']}",
                    flush=True,
                )
        finally:
            await checker.close()
    finally:
        if not args.keep:
            await drop_database(args.server_url, name)
        else:
            print(f"kept database {name}")
    return summarise(args, phases)


def summarise(args, phases: list[Phase]) -> dict:
    def mean_rate(prefix: str) -> float | None:
        rates = [p.rate for p in phases if p.name == prefix]
        return sum(rates) / len(rates) if rates else None

    raw, app = mean_rate("raw"), mean_rate("app")

    def cpu_per_cycle(prefix: str) -> float | None:
        chosen = [p for p in phases if p.name == prefix and p.cycles]
        if not chosen:
            return None
        return sum(p.client_cpu + p.db_cpu for p in chosen) / sum(p.cycles for p in chosen)

    raw_cpu, app_cpu = cpu_per_cycle("raw"), cpu_per_cycle("app")
    raw_report, app_report = mean_rate("raw+report"), mean_rate("app+report")
    app_idle_report = mean_rate("app+idle-report")
    within = [r for p in phases for r in p.ranks]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "params": {
            "items": args.items,
            "tenants": args.tenants,
            "agents": args.agents,
            "duration_s": args.duration,
            "hand_back_share": args.hand_back_share,
            "sample_every": args.sample_every,
            "vacuum_every_s": args.vacuum_every,
            "claims_target": args.claims,
            "app_pool_size": args.pool_size or args.agents,
            "app_max_overflow": args.max_overflow,
            "full_rate": args.full_rate,
        },
        "phases": [
            {
                "name": p.name,
                "seconds": round(p.seconds, 1),
                "claims": p.cycles,
                "cycles_per_s": round(p.rate, 1),
                "claim_p50_ms": round(p.percentile(0.5), 2),
                "claim_p99_ms": round(p.percentile(0.99), 2),
                "claim_p999_ms": round(p.percentile(0.999), 2),
                "paced_claims_per_s": round(p.pace, 1) if p.pace else None,
                "claim_call_p50_ms": round(p.percentile(0.5, "service"), 2),
                "claim_call_p99_ms": round(p.percentile(0.99, "service"), 2),
                # Claims at or above the p99 that answered during a VACUUM or within 0.5 s after.
                "slowest_near_vacuum": p.slow_near_vacuum()[0],
                "slowest": p.slow_near_vacuum()[1],
                "started_utc": p.started_utc,
                "vacuum_wal": p.vacuum_wal,
                "wal": p.wal,
                "slowest_by_second": p.slowest_by_second(),
                "event_loop_stalls": [[round(at, 2), round(late * 1000, 1)] for at, late in p.loop_stalls],
                "vacuums_s": [
                    [round(start - p.started, 2), round(end - p.started, 2)] for start, end in p.vacuums
                ],
                "empty_answers": p.empty,
                "client_cpu_ms_per_cycle": round(p.client_cpu / max(p.cycles, 1) * 1000, 3),
                "db_cpu_ms_per_cycle": round(p.db_cpu / max(p.cycles, 1) * 1000, 3),
                "rank_samples": len(p.ranks),
                "rank_max": max(p.ranks) if p.ranks else None,
                "rank_within_50": sum(1 for r in p.ranks if r < 50),
                "rank_samples_beside_recycling": len(p.ranks_beside_recycling),
                "rank_max_beside_recycling": max(p.ranks_beside_recycling, default=None),
                "recycled": p.recycled,
                "gc_collections": len(p.gc_pauses),
                "gc_full_collections": sum(1 for g, _ in p.gc_pauses if g == 2),
                "gc_pause_max_ms": round(1000 * max((t for _, t in p.gc_pauses), default=0), 1),
                "report_ended_after_s": round(p.report_ended_after, 1) if p.report_ended_after else None,
                "rate_by_20s": [
                    sum(1 for t in p.finished_at if p.started + a <= t < p.started + a + 20) / 20
                    for a in range(0, int(p.seconds), 20)
                ],
                "checks": p.checks,
                "work_items_stats": p.dead_rows,
            }
            for p in phases
        ],
        "app_over_raw": round(app / raw, 3) if raw and app else None,
        # What the rate ratio would be where CPU is the only limit: raw CPU per cycle over
        # OrderDesk's (client process + the database's backends), less swayed by neighbours.
        "cpu_cost_ratio": round(raw_cpu / app_cpu, 3) if raw_cpu and app_cpu else None,
        "app_report_over_app": round(app_report / app, 3) if app and app_report else None,
        "raw_report_over_raw": round(raw_report / raw, 3) if raw and raw_report else None,
        "app_idle_report_over_app": round(app_idle_report / app, 3) if app and app_idle_report else None,
        "total_claims": sum(p.cycles for p in phases),
        "rank_samples": len(within),
        "rank_within_50": sum(1 for r in within if r < 50),
        "double_assignments": sum(
            p.checks["double_assignment_client_side"]
            + p.checks["items_with_two_open_claims"]
            + p.checks["agent_holding_two"]
            + abs(p.checks["db_claims"] - p.checks["client_claims"])
            + abs(p.checks["db_claims"] - p.checks["db_distinct_claim_ids"])
            + p.checks["items_whose_claim_count_differs"]
            for p in phases
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print()
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 1 if result["double_assignments"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
