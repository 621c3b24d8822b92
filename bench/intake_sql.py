"""The raw baseline: one order's SQL, sent with bare asyncpg, no web framework, no ORM.

The statements below are the ones `POST /api/v1/orders` sends, copied as SQLAlchemy
renders them (same text, same parameter types, same order, same transactions: the
API-key lookup and the intake in one, except when the lookup writes the key's
last-used time). `bench/intake.py` checks that before every run (the parity
check), so when the service's SQL changes this file must follow.

What the baseline leaves out is exactly the Python around the SQL: HTTP parsing,
pydantic validation, the ORM's unit of work and response rendering. The values are
those intake computes for the benchmark's order (bench/loadgen.py ORDER_TEMPLATE),
precomputed once.

Run by `bench/intake.py` as a child process: `python bench/intake_sql.py SPEC OUT`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
import time
import uuid

import asyncpg

# ---------------------------------------------------------------- the statements

SET_SCOPE = "SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true)"
SELECT_KEY_AND_TENANT = """
SELECT api_keys.id, api_keys.tenant_id, api_keys.name, api_keys.last_used_at, api_keys.revoked_at,
 tenants.is_active
FROM api_keys LEFT OUTER JOIN tenants ON tenants.id = api_keys.tenant_id
WHERE api_keys.secret_hash = $1::VARCHAR
"""
TOUCH_API_KEY = (
    "UPDATE api_keys SET last_used_at=$1::TIMESTAMP WITH TIME ZONE"
    " WHERE api_keys.tenant_id = $2::UUID AND api_keys.id = $3::UUID"
)
CLAIM_IDEMPOTENCY_KEY = """
INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)
 VALUES ($1::UUID, $2::VARCHAR, $3::VARCHAR, $4::SMALLINT, $5::JSONB)
 ON CONFLICT (tenant_id, key) DO NOTHING RETURNING idempotency_keys.key
"""
LOCK_REFERENCE = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
SELECT_ORDER_BY_REF = """
SELECT orders.tenant_id, orders.id, orders.number, orders.external_ref, orders.channel, orders.status,
 orders.payment_status, orders.priority, orders.customer_name, orders.customer_email, orders.customer_phone,
 orders.shipping_address, orders.billing_address, orders.currency, orders.subtotal_minor, orders.tax_minor,
 orders.shipping_minor, orders.discount_minor, orders.total_minor, orders.ship_by, orders.deliver_by,
 orders.tags, orders.notes, orders.lines_fingerprint, orders.search_text, orders.created_at,
 orders.updated_at, orders.status_changed_at, orders.version, orders.last_event_seq
FROM orders
WHERE orders.tenant_id = $1::UUID AND orders.external_ref = $2::VARCHAR
"""
TENANT_SETTINGS_AND_CATALOG = """
SELECT (SELECT tenants.settings
FROM tenants
WHERE tenants.id = $1::UUID) AS anon_1, EXISTS (SELECT *
FROM catalog_items
WHERE catalog_items.tenant_id = $1::UUID) AS anon_2
"""
NEXT_NUMBER = """
INSERT INTO order_counters (tenant_id, last_number) VALUES ($1::UUID, $2::BIGINT)
 ON CONFLICT (tenant_id) DO UPDATE SET last_number = (order_counters.last_number + $3::BIGINT)
 RETURNING order_counters.last_number
"""
RECENT_DUPLICATES = """
SELECT orders.number
FROM orders
WHERE orders.tenant_id = $1::UUID AND orders.customer_email = $2::VARCHAR
 AND orders.lines_fingerprint = $3::VARCHAR AND orders.created_at >= $4::TIMESTAMP WITH TIME ZONE
 ORDER BY orders.created_at DESC
 LIMIT $5::INTEGER
"""
INSERT_ORDER = """
INSERT INTO orders (tenant_id, id, number, external_ref, channel, status, payment_status, priority,
 customer_name, customer_email, customer_phone, shipping_address, billing_address, currency,
 subtotal_minor, tax_minor, shipping_minor, discount_minor, total_minor, ship_by, deliver_by, tags, notes,
 lines_fingerprint, created_at, updated_at, version, last_event_seq)
 VALUES ($1::UUID, $2::UUID, $3::BIGINT, $4::VARCHAR, $5::order_channel, $6::order_status,
 $7::payment_status, $8::order_priority, $9::VARCHAR, $10::VARCHAR, $11::VARCHAR, $12::JSONB, $13::JSONB,
 $14::VARCHAR, $15::BIGINT, $16::BIGINT, $17::BIGINT, $18::BIGINT, $19::BIGINT,
 $20::TIMESTAMP WITH TIME ZONE, $21::TIMESTAMP WITH TIME ZONE, $22::VARCHAR(40)[], $23::VARCHAR,
 $24::VARCHAR, $25::TIMESTAMP WITH TIME ZONE, $26::TIMESTAMP WITH TIME ZONE, $27::INTEGER, $28::INTEGER)
 RETURNING orders.search_text, orders.status_changed_at
"""
INSERT_LINES = """
INSERT INTO order_lines (tenant_id, order_id, line_no, sku, description, quantity, unit_price_minor,
 tax_minor, total_minor) VALUES ($1::UUID, $2::UUID, $3::SMALLINT, $4::VARCHAR, $5::VARCHAR, $6::INTEGER,
 $7::BIGINT, $8::BIGINT, $9::BIGINT)
"""
INSERT_CHECKS = """
INSERT INTO verification_checks (tenant_id, order_id, "check", result, detail, checked_at)
 VALUES ($1::UUID, $2::UUID, $3::VARCHAR, $4::check_result, $5::VARCHAR, $6::TIMESTAMP WITH TIME ZONE)
"""
INSERT_TWO_EVENTS = """
INSERT INTO order_events (tenant_id, order_id, seq, kind, actor_kind, actor_id, actor_name, channel,
 summary, changes) VALUES ($1::UUID, $2::UUID, $3::INTEGER, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR,
 $7::VARCHAR, $8::VARCHAR, $9::VARCHAR, $10::JSONB), ($11::UUID, $12::UUID, $13::INTEGER, $14::VARCHAR,
 $15::VARCHAR, $16::VARCHAR, $17::VARCHAR, $18::VARCHAR, $19::VARCHAR, $20::JSONB)
 RETURNING order_events.created_at, order_events.tenant_id, order_events.order_id, order_events.seq
"""
# A new order's outbox rows are numbered 1, 2, … by the API and written in one statement.
INSERT_OUTBOX = """
INSERT INTO outbox_events (tenant_id, id, event_type, order_id, order_seq, payload, created_at, fanned_out_at)
 VALUES ($1::UUID, $2::UUID, $3::VARCHAR, $4::UUID, $5::INTEGER, $6::JSONB, $7::TIMESTAMP WITH TIME ZONE,
 $8::TIMESTAMP WITH TIME ZONE)
"""
# The tenant's SLA policy (none here: the defaults) and its time zone, together.
SELECT_SLA_POLICY = """
SELECT sla_policies.tenant_id, sla_policies.time_zone, sla_policies.business_hours, sla_policies.holidays,
 sla_policies.targets, sla_policies.at_risk_percent, sla_policies.client_tier, sla_policies.stuck_after_hours,
 sla_policies.updated_at, sla_policies.updated_by, tenants.time_zone AS time_zone_1
FROM tenants LEFT OUTER JOIN sla_policies ON sla_policies.tenant_id = tenants.id
WHERE tenants.id = $1::UUID
"""
OPEN_WORK_ITEM = """
INSERT INTO work_items (tenant_id, id, kind, status, title, detail, cause, order_id, order_number, language,
 channel, priority, value_minor, currency, client_tier, sla_target_seconds, sla_consumed_seconds,
 sla_running_since, due_at, at_risk_at, created_by, created_at, updated_at)
 VALUES ($1::UUID, $2::UUID, $3::work_item_kind, $4::work_item_status, $5::VARCHAR, $6::VARCHAR, $7::VARCHAR,
 $8::UUID, $9::BIGINT, $10::VARCHAR, $11::VARCHAR, $12::order_priority, $13::BIGINT, $14::VARCHAR,
 $15::SMALLINT, $16::INTEGER, $17::INTEGER, $18::TIMESTAMP WITH TIME ZONE, $19::TIMESTAMP WITH TIME ZONE,
 $20::TIMESTAMP WITH TIME ZONE, $21::VARCHAR, $22::TIMESTAMP WITH TIME ZONE, $23::TIMESTAMP WITH TIME ZONE)
 ON CONFLICT (tenant_id, order_id, cause) WHERE order_id IS NOT NULL
 AND status IN ('open', 'claimed', 'snoozed', 'waiting_customer', 'waiting_client') DO NOTHING
"""
STORE_RESPONSE = """
UPDATE idempotency_keys SET response_status=$1::SMALLINT, response_body=$2::JSONB
 WHERE idempotency_keys.tenant_id = $3::UUID AND idempotency_keys.key = $4::VARCHAR
"""

# ---------------------------------------------------------------- the order's values

FIRST_ORDER_NUMBER = 1001
KEY_TOUCH_INTERVAL = dt.timedelta(minutes=1)
SHIPPING = {
    "name": None,
    "company": None,
    "line1": "Unter den Linden 1",
    "line2": None,
    "city": "Berlin",
    "region": None,
    "postal_code": "10117",
    "country": "DE",
}
LINES = [  # line_no, sku, description, quantity, unit price, tax, total
    (1, "TENT-2P", "Tent", 2, 19900, 7562, 47362),
    (2, "MAT-1", "", 1, 2500, 0, 2500),
]
SUBTOTAL, TAX, SHIPPING_MINOR, TOTAL = 42300, 7562, 495, 50357
# The work item a by-hand verification opens: the default SLA (4 business hours, tier 2).
# Its due times come from a business-hours calendar in the API; here a plain offset.
SLA_TARGET_SECONDS, CLIENT_TIER = 4 * 3600, 2
LINES_FINGERPRINT = hashlib.sha256(b"MAT-1\x1f1\x1eTENT-2P\x1f2").hexdigest()
CHECKS = [
    ("payment_confirmed", "passed", "payment is paid"),
    ("address_complete", "passed", "complete for DE"),
    ("contact_valid", "passed", "email or phone present and valid"),
    ("high_value", "passed", "below the high-value threshold"),
    ("country_mismatch", "passed", "billing and shipping countries agree"),
    ("duplicate_suspected", "passed", "no similar recent order"),
]


def _normalise(sql: str) -> str:
    return " ".join(sql.split()).replace("( ", "(").replace(" )", ")")


class Trace(list):
    """Statements in the order they were sent, for the parity check."""

    def add(self, sql: str) -> None:
        self.append(_normalise(sql))


async def _fetch(conn, trace: Trace | None, sql: str, *args):
    if trace is not None:
        trace.add(sql)
    return await conn.fetch(sql, *args)


async def _many(conn, trace: Trace | None, sql: str, rows: list[tuple]):
    if trace is not None:
        trace.add(sql)
    await conn.executemany(sql, rows)


class _Transaction:
    def __init__(self, conn, trace: Trace | None) -> None:
        self.tx = conn.transaction()
        self.trace = trace

    async def __aenter__(self):
        if self.trace is not None:
            self.trace.append("BEGIN")
        await self.tx.start()

    async def __aexit__(self, kind, exc, tb):
        if exc is None:
            if self.trace is not None:
                self.trace.append("COMMIT")
            await self.tx.commit()
        else:
            await self.tx.rollback()


async def resolve_key(conn, key: dict, trace: Trace | None = None) -> bool:
    """The API-key lookup the authentication middleware runs, in the transaction the
    intake then continues; False when it wrote the key's last-used time and committed."""
    await _fetch(
        conn, trace, SET_SCOPE,
        "orderdesk.tenant_ids", "{}", "orderdesk.user_id", "", "orderdesk.api_key_hash", key["hash"],
    )  # fmt: skip
    row = (await _fetch(conn, trace, SELECT_KEY_AND_TENANT, key["hash"]))[0]
    assert row["revoked_at"] is None and row["is_active"]
    await _fetch(conn, trace, SET_SCOPE, *_tenant_scope(key))
    now = dt.datetime.now(dt.UTC)
    if row["last_used_at"] is None or now - row["last_used_at"] >= KEY_TOUCH_INTERVAL:
        await _fetch(conn, trace, TOUCH_API_KEY, now, row["tenant_id"], row["id"])
        return False
    return True


def _tenant_scope(key: dict) -> tuple[str, ...]:
    return (
        "orderdesk.tenant_ids",
        "{" + key["tenant_id"] + "}",
        "orderdesk.user_id",
        "",
        "orderdesk.api_key_hash",
        "",
    )


async def intake(conn, key: dict, ref: str, trace: Trace | None = None) -> None:
    """One request: key lookup and intake in one transaction, unless the lookup wrote
    the key's last-used time (once a minute per key), which commits on its own."""
    transaction = _Transaction(conn, trace)
    await transaction.__aenter__()
    try:
        if not await resolve_key(conn, key, trace):
            await transaction.__aexit__(None, None, None)
            transaction = _Transaction(conn, trace)
            await transaction.__aenter__()
            await _fetch(conn, trace, SET_SCOPE, *_tenant_scope(key))
        await capture(conn, key, ref, trace)
    except BaseException as error:
        await transaction.__aexit__(type(error), error, None)
        raise
    await transaction.__aexit__(None, None, None)


async def capture(conn, key: dict, ref: str, trace: Trace | None = None) -> None:
    """The intake's statements for one new order with a new Idempotency-Key."""
    tenant_id = uuid.UUID(key["tenant_id"])
    email = f"{ref}@example.com".lower()
    request_hash = hashlib.sha256(ref.encode()).hexdigest()
    claimed = await _fetch(conn, trace, CLAIM_IDEMPOTENCY_KEY, tenant_id, ref, request_hash, 0, "{}")
    assert claimed, "idempotency key already taken"
    await _fetch(conn, trace, LOCK_REFERENCE, f"order-ref:{tenant_id}:{ref}")
    assert not await _fetch(conn, trace, SELECT_ORDER_BY_REF, tenant_id, ref)
    settings, _ = (await _fetch(conn, trace, TENANT_SETTINGS_AND_CATALOG, tenant_id))[0]
    number = (await _fetch(conn, trace, NEXT_NUMBER, tenant_id, FIRST_ORDER_NUMBER, 1))[0][0]
    window = settings.get("verification", {}).get("duplicate_window_minutes", 60)
    now = dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(minutes=window)
    await _fetch(conn, trace, RECENT_DUPLICATES, tenant_id, email, LINES_FINGERPRINT, since, 5)
    order_id = uuid.uuid4()
    shipping = json.dumps(SHIPPING)
    await _fetch(
        conn, trace, INSERT_ORDER,
        tenant_id, order_id, number, ref, "api", "awaiting_verification", "paid", "normal",
        "Erika Mustermann", email, "+49301234567", shipping, "null", "EUR", SUBTOTAL, TAX,
        SHIPPING_MINOR, 0, TOTAL, None, None, ["summer", "vip"], None, LINES_FINGERPRINT, now, now, 1, 2,
    )  # fmt: skip
    actor = (key["id"], f"API key {key['name']}")
    by_hand = "Waiting for an agent: the tenant verifies every order by hand"
    events = [  # seq, kind, channel, summary, changes, status after
        (1, "created", "api", f"Order #{number} captured via api",
         {"status": [None, "captured"], "total_minor": [None, TOTAL]}, "captured"),
        (2, "verification_needed", "system", by_hand,
         {"status": ["captured", "awaiting_verification"], "failed_checks": []}, "awaiting_verification"),
    ]  # fmt: skip
    params = []
    for seq, kind, channel, summary, changes, _ in events:
        params += [tenant_id, order_id, seq, kind, "api_key", *actor, channel, summary]
        params.append(json.dumps(changes))
    await _fetch(conn, trace, INSERT_TWO_EVENTS, *params)
    await _many(conn, trace, INSERT_LINES, [(tenant_id, order_id, *line) for line in LINES])
    await _many(conn, trace, INSERT_CHECKS, [(tenant_id, order_id, *check, now) for check in CHECKS])
    # The domain-event handlers, which capture runs before it answers: one outbox row
    # per timeline event, and the work queue's verification item.
    outbox = []
    for seq, kind, channel, summary, changes, status in events:
        event_id, at = uuid.uuid4(), dt.datetime.now(dt.UTC)
        snapshot = {
            "id": str(order_id), "number": number, "external_ref": ref, "status": status,
            "payment_status": "paid", "priority": "normal", "currency": "EUR", "total_minor": TOTAL,
            "customer": {"name": "Erika Mustermann", "email": email},
        }  # fmt: skip
        change = {"summary": summary, "changes": changes, "channel": channel, "actor_kind": "api_key"}
        payload = {
            "id": str(event_id), "type": f"order.{kind}", "version": 1, "timestamp": at.isoformat(),
            "tenant_id": str(tenant_id), "data": {"change": change, "order": snapshot, "sequence": seq},
        }  # fmt: skip
        outbox.append((tenant_id, event_id, f"order.{kind}", order_id, seq, json.dumps(payload), at, None))
    await _many(conn, trace, INSERT_OUTBOX, outbox)
    await _fetch(conn, trace, SELECT_SLA_POLICY, tenant_id)
    opened = dt.datetime.now(dt.UTC)
    due = opened + dt.timedelta(seconds=SLA_TARGET_SECONDS)
    await _fetch(
        conn, trace, OPEN_WORK_ITEM,
        tenant_id, uuid.uuid4(), "verification", "open", f"Verify order #{number}: manual verification",
        None, "verification", order_id, number, None, None, "normal", TOTAL, "EUR", CLIENT_TIER,
        SLA_TARGET_SECONDS, 0, opened, due, due - dt.timedelta(seconds=SLA_TARGET_SECONDS // 5),
        actor[1], opened, opened,
    )  # fmt: skip
    body = _response(tenant_id, order_id, number, ref, email, now)
    await _fetch(conn, trace, STORE_RESPONSE, 201, json.dumps(body), tenant_id, ref)


def _response(tenant_id, order_id, number, ref, email, now) -> dict:
    """The stored answer: the same fields as the API's OrderView, from the values written."""
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "id": str(order_id), "tenant_id": str(tenant_id), "number": number, "external_ref": ref,
        "channel": "api", "status": "awaiting_verification", "payment_status": "paid", "priority": "normal",
        "customer_name": "Erika Mustermann", "customer_email": email, "currency": "EUR",
        "total_minor": TOTAL, "tags": ["summer", "vip"], "on_hold": False, "created_at": stamp,
        "customer_phone": "+49301234567", "shipping_address": SHIPPING, "billing_address": None,
        "subtotal_minor": SUBTOTAL, "tax_minor": TAX, "shipping_minor": SHIPPING_MINOR, "discount_minor": 0,
        "ship_by": None, "deliver_by": None, "notes": None,
        "lines": [
            dict(zip(("line_no", "sku", "description", "quantity", "unit_price_minor", "tax_minor",
                      "total_minor"), line, strict=True))
            for line in LINES
        ],
        "holds": [],
        "checks": [
            {"check": check, "result": result, "detail": detail, "resolution": None,
             "resolved_by": None, "resolved_at": None}
            for check, result, detail in CHECKS
        ],
        "allowed_actions": ["verify", "cancel", "place_hold"], "updated_at": stamp, "version": 1,
    }  # fmt: skip


# ---------------------------------------------------------------- running it


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection set up as SQLAlchemy's asyncpg dialect sets up its own (JSON codecs)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "orderdesk-bench-raw"})
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=json.loads, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: json.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )
    return conn


async def trace_one(dsn: str, key: dict, ref: str) -> Trace:
    """The statements of one order, for comparing with what the API sends."""
    conn = await connect(dsn)
    try:
        trace = Trace()
        await intake(conn, key, ref, trace)
        return trace
    finally:
        await conn.close()


async def run(spec: dict) -> dict:
    """Closed loop: `concurrency` clients, each running key lookup + intake back to back.

    Like the API, a request checks one connection out of a pool; the pool is a plain
    queue (asyncpg's own pool runs a reset query on every release, which the API's
    pool does not).
    """
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # the loop's clock has 1 ms steps under uvloop
    pool: asyncio.LifoQueue = asyncio.LifoQueue()
    for _ in range(spec["connections"]):
        pool.put_nowait(await connect(spec["dsn"]))
    keys = spec["keys"]
    latencies: list[float] = []
    counter = iter(range(10**9))
    start = clock() + max(0.0, spec["start_at"] - time.time())
    measure_from = start + spec["warmup"]
    measure_to = measure_from + spec["duration"]
    await asyncio.sleep(max(0.0, start - clock()))
    cpu = {}

    async def client() -> None:
        while (started := clock()) < measure_to:
            n = next(counter)
            key = keys[n % len(keys)]
            conn = await pool.get()
            try:
                await intake(conn, key, f"{spec['ref_prefix']}-{n}")
            finally:
                pool.put_nowait(conn)
            done = clock()
            if measure_from <= done <= measure_to:  # completed inside the window
                latencies.append((done - started) * 1000)

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, measure_from - clock()))
        cpu["from"] = time.process_time()
        await asyncio.sleep(max(0.0, measure_to - clock()))
        cpu["to"] = time.process_time()

    marker = loop.create_task(mark_cpu())
    await asyncio.gather(*(client() for _ in range(spec["concurrency"])))
    await marker
    while not pool.empty():
        await pool.get_nowait().close()
    return {
        "statuses": {"201": len(latencies)},
        "latencies_ms": latencies,
        "errors": 0,
        "late": 0,
        "sample_failure": None,
        "window_s": spec["duration"],
        "cpu_s": cpu["to"] - cpu["from"],
    }


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
