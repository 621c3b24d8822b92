"""Webhook delivery: fan-out, claiming, attempts, retries, dead letters.

Delivery is at least once: a receiver may see a message twice (a worker can die
after the receiver answered and before the answer is recorded), always with the
same `webhook-id`, which receivers use to deduplicate.

Everything that must happen is a row in PostgreSQL first. Workers claim due
deliveries with `FOR UPDATE SKIP LOCKED` and a lease, so several workers run side
by side, and a delivery held by a worker that died is claimed again once its lease
expires. Nothing depends on Redis keeping a job: the periodic sweep finds every
due row by its status and time, not by an id watermark, so rows that commit out of
id order are never skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from uuid import UUID

import httpx
import structlog
from sqlalchemy import func, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core.db import Database
from orderdesk.core.tenancy import Scope
from orderdesk.integrations import signing
from orderdesk.integrations.endpoints import signing_secrets
from orderdesk.integrations.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from orderdesk.integrations.urls import UnsafeUrl, check_target

log = structlog.get_logger("orderdesk.webhooks")

LEASE = dt.timedelta(seconds=30)
RESPONSE_EXCERPT = 500
JITTER = 0.1  # ±10 % on every retry delay, so failing endpoints are not hit in waves
MAX_RETRY_AFTER = dt.timedelta(hours=24)
BLOCKED_RECHECK_SECONDS = 0.1
FAN_OUT_BATCH = 500  # events per fan-out


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    retry_schedule: tuple[float, ...]
    timeout_seconds: float
    disable_after: dt.timedelta
    allow_private: bool
    lease: dt.timedelta = dt.timedelta(seconds=30)

    @classmethod
    def from_settings(cls, settings) -> DeliveryPolicy:
        return cls(
            retry_schedule=tuple(settings.webhook_retry_schedule),
            timeout_seconds=settings.webhook_timeout_seconds,
            disable_after=dt.timedelta(days=settings.webhook_disable_after_days),
            allow_private=settings.webhooks_allow_private,
            lease=dt.timedelta(seconds=settings.webhook_lease_seconds),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    tenant_id: UUID
    delivery_id: UUID
    event_id: UUID
    order_id: UUID | None
    attempts: int
    endpoint: WebhookEndpoint
    body: bytes
    ordered: bool = False  # on an ordered endpoint: settling it may let the order's next event go


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None
    retry_after: dt.timedelta | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# ---------------------------------------------------------------- fan-out


async def fan_out(db: Database, scope: Scope, limit: int = FAN_OUT_BATCH) -> int:
    """Create a delivery for every enabled endpoint whose filter matches each new event.
    Returns how many deliveries it created."""
    async with db.transaction(scope) as session:
        return (await _fan_out(session, scope, limit))[1]


# One statement, one round trip: lock a batch of new events (skipping those another
# fan-out holds), create their deliveries, mark them fanned out. The deliveries are due
# at the transaction's now(), which the claim compares with: a claim in the same
# transaction takes them. Delivery ids are version 7 UUIDs, as core/ids.py makes them,
# from the database's clock.
FAN_OUT_SQL = text(
    """
    WITH events AS (
        SELECT tenant_id, id, event_type, order_id, order_seq
        FROM outbox_events
        WHERE fanned_out_at IS NULL AND tenant_id = ANY (:tenants)
        ORDER BY created_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE outbox_events o SET fanned_out_at = now()
        FROM events
        WHERE o.tenant_id = events.tenant_id AND o.id = events.id
        RETURNING 1
    ), created AS (
        INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, order_id, order_seq,
                                        status, attempts, next_attempt_at, created_at)
        SELECT ev.tenant_id,
               encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
                   substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                   FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid,
               ep.id, ev.id, ev.order_id, ev.order_seq,
               'pending', 0, now(), clock_timestamp()
        FROM events ev
        JOIN webhook_endpoints ep ON ep.tenant_id = ev.tenant_id AND ep.enabled
         AND (coalesce(cardinality(ep.event_types), 0) = 0 OR ev.event_type = ANY (ep.event_types))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM created) AS deliveries
    """
)


async def _fan_out(session: AsyncSession, scope: Scope, limit: int) -> tuple[int, int]:
    """(events fanned out, deliveries created)."""
    row = (await session.execute(FAN_OUT_SQL, {"tenants": list(scope.tenant_ids), "limit": limit})).one()
    return row.events, row.deliveries


# ---------------------------------------------------------------- claiming

CLAIM_SQL = text(
    """
    WITH due AS (
        SELECT d.tenant_id, d.id
        FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
        WHERE d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.leased_until IS NULL OR d.leased_until < now())
          AND e.enabled
          AND d.tenant_id = ANY (:tenants)
          -- An ordered endpoint gets an order's next event only when the earlier ones
          -- are settled (succeeded or dead), including events not yet fanned out.
          AND NOT (e.ordered AND d.order_id IS NOT NULL AND (
              EXISTS (SELECT 1 FROM webhook_deliveries p
                      WHERE p.tenant_id = d.tenant_id AND p.endpoint_id = d.endpoint_id
                        AND p.order_id = d.order_id AND p.order_seq < d.order_seq
                        AND p.status = 'pending')
              OR EXISTS (SELECT 1 FROM outbox_events o
                         WHERE o.tenant_id = d.tenant_id AND o.order_id = d.order_id
                           AND o.order_seq < d.order_seq AND o.fanned_out_at IS NULL)))
        ORDER BY d.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries w
    SET leased_until = now() + make_interval(secs => :lease)
    FROM due, outbox_events o, webhook_endpoints e
    WHERE w.tenant_id = due.tenant_id AND w.id = due.id
      AND o.tenant_id = w.tenant_id AND o.id = w.event_id
      AND e.tenant_id = w.tenant_id AND e.id = w.endpoint_id
    RETURNING w.tenant_id, w.id, w.event_id, w.order_id, w.attempts, o.payload::text AS payload,
              e.id AS endpoint_id, e.url, e.secret, e.previous_secret, e.previous_secret_expires_at,
              e.failing_since, e.rate_limit_per_second, e.ordered
    """
)


async def claim_due(db: Database, scope: Scope, limit: int, lease: dt.timedelta = LEASE) -> list[Claim]:
    """Lease up to `limit` due deliveries for this worker."""
    async with db.transaction(scope) as session:
        return await _claim_due(session, scope, limit, lease)


async def _claim_due(session: AsyncSession, scope: Scope, limit: int, lease: dt.timedelta) -> list[Claim]:
    rows = (
        await session.execute(
            CLAIM_SQL,
            {"tenants": list(scope.tenant_ids), "limit": limit, "lease": lease.total_seconds()},
        )
    ).all()
    endpoints: dict[UUID, WebhookEndpoint] = {}
    for r in rows:
        if r.endpoint_id not in endpoints:
            # Detached: only read (URL, secrets, rate limit, failing_since as claimed).
            endpoints[r.endpoint_id] = WebhookEndpoint(
                tenant_id=r.tenant_id,
                id=r.endpoint_id,
                url=r.url,
                secret=r.secret,
                previous_secret=r.previous_secret,
                previous_secret_expires_at=r.previous_secret_expires_at,
                failing_since=r.failing_since,
                rate_limit_per_second=r.rate_limit_per_second,
            )
    return [
        Claim(
            tenant_id=r.tenant_id,
            delivery_id=r.id,
            event_id=r.event_id,
            order_id=r.order_id,
            attempts=r.attempts,
            endpoint=endpoints[r.endpoint_id],
            # The body every attempt sends: the same bytes for the same event.
            body=json.dumps(json.loads(r.payload), separators=(",", ":"), sort_keys=True).encode(),
            ordered=r.ordered and r.order_id is not None,
        )
        for r in rows
    ]


async def release(db: Database, scope: Scope, claims: list[Claim]) -> None:
    """Give leased deliveries back unattempted (shutdown, rate limit)."""
    if not claims:
        return
    async with db.transaction(scope) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_([c.delivery_id for c in claims]),
                WebhookDelivery.status == DeliveryStatus.PENDING,
            )
            .values(leased_until=None)
        )


# ---------------------------------------------------------------- attempting


def _retry_after(response: httpx.Response) -> dt.timedelta | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return min(dt.timedelta(seconds=max(0.0, float(raw))), MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return min(max(when - dt.datetime.now(dt.UTC), dt.timedelta(0)), MAX_RETRY_AFTER)


async def post(http: httpx.AsyncClient, claim: Claim, policy: DeliveryPolicy) -> Outcome:
    """One signed POST. Never raises: every failure becomes an Outcome."""
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    try:
        await check_target(claim.endpoint.url, allow_private=policy.allow_private)
    except UnsafeUrl as exc:
        return Outcome(None, 0, None, f"refused: {exc}")
    headers = signing.headers_for(
        signing_secrets(claim.endpoint, now), str(claim.event_id), int(now.timestamp()), claim.body
    )
    try:
        response = await http.post(
            claim.endpoint.url, content=claim.body, headers=headers, timeout=policy.timeout_seconds
        )
    except httpx.TimeoutException:
        return Outcome(None, int((time.perf_counter() - started) * 1000), None, "timed out")
    except httpx.HTTPError as exc:
        return Outcome(
            None, int((time.perf_counter() - started) * 1000), None, f"{type(exc).__name__}: {exc}"[:500]
        )
    latency = int((time.perf_counter() - started) * 1000)
    excerpt = response.text[:RESPONSE_EXCERPT] if response.content else None
    retry_after = _retry_after(response) if response.status_code in (429, 503) else None
    return Outcome(response.status_code, latency, excerpt, None, retry_after)


def next_delay(attempts_made: int, policy: DeliveryPolicy, outcome: Outcome) -> dt.timedelta | None:
    """How long until the next attempt, or None when the message is dead."""
    index = attempts_made - 1
    if index >= len(policy.retry_schedule):
        return None
    base = policy.retry_schedule[index]
    delay = dt.timedelta(seconds=base * (1 + random.uniform(-JITTER, JITTER)))
    if outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    return delay


def _settle(
    claim: Claim, outcome: Outcome, policy: DeliveryPolicy, now: dt.datetime
) -> tuple[DeliveryStatus, dict]:
    """What an attempt changes: the delivery's new status and its columns."""
    values: dict = {
        "attempts": claim.attempts + 1,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "leased_until": None,
    }
    if outcome.succeeded:
        status = DeliveryStatus.SUCCEEDED
        values.update(status=status, finished_at=now)
    elif outcome.status_code == 410:
        status = DeliveryStatus.DEAD
        values.update(status=status, finished_at=now)
    else:
        delay = next_delay(claim.attempts + 1, policy, outcome)
        if delay is None:
            status = DeliveryStatus.DEAD
            values.update(status=status, finished_at=now)
        else:
            status = DeliveryStatus.PENDING
            values.update(next_attempt_at=now + delay)
    return status, values


async def _settle_endpoint(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    outcomes: list[Outcome],
    policy: DeliveryPolicy,
    now: dt.datetime,
) -> None:
    """What a batch of attempts (in the order they finished) changes on their endpoint, in
    at most one statement: the same end state as applying them one by one.

    `failing_since` is the time of the first failure after the last success: a success
    clears it, a failure sets it only when it is not set. A 410 disables the endpoint;
    so does failing since longer than `disable_after`. `endpoint` is as it was when the
    deliveries were claimed."""
    failing = [not o.succeeded and o.status_code != 410 for o in outcomes]
    last_success = max((i for i, o in enumerate(outcomes) if o.succeeded), default=-1)
    failed_after_success = any(failing[last_success + 1 :])
    values: dict = {}
    condition = None
    if last_success >= 0 and not failed_after_success:
        if endpoint.failing_since is not None or any(failing[:last_success]):
            values["failing_since"] = None
            condition = WebhookEndpoint.failing_since.is_not(None)
    elif failed_after_success:
        if last_success >= 0:
            since = now  # the success in this batch cleared it
            values["failing_since"] = now
        else:
            since = endpoint.failing_since or now
            # Later failures must not move it forward.
            values["failing_since"] = func.coalesce(WebhookEndpoint.failing_since, now)
            condition = WebhookEndpoint.failing_since.is_(None)
        if now - since >= policy.disable_after:
            values.update(
                enabled=False, disabled_reason=f"failing without a success since {since:%Y-%m-%d %H:%M} UTC"
            )
    if any(o.status_code == 410 for o in outcomes):
        values.update(enabled=False, disabled_reason="the receiver answered 410 Gone")
    if not values:
        return
    query = update(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == endpoint.tenant_id, WebhookEndpoint.id == endpoint.id
    )
    if condition is not None and "enabled" not in values:
        query = query.where(condition)
    await session.execute(query.values(**values, updated_at=now))
    if values.get("enabled") is False:
        log.warning(
            "webhook_endpoint_disabled",
            tenant=str(endpoint.tenant_id),
            endpoint=str(endpoint.id),
            reason=values["disabled_reason"],
        )
        # The tenant's client admins are told by email, committed with the change.
        from orderdesk.comms import notices

        await notices.webhook_endpoint_disabled_in(
            session,
            endpoint.tenant_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            reason=values["disabled_reason"],
        )


async def record_many(
    db: Database, attempts: list[tuple[Claim, Outcome]], policy: DeliveryPolicy
) -> list[DeliveryStatus]:
    """Store the attempts and move their deliveries (and maybe endpoints) on, in one transaction.

    The same end state as recording each attempt on its own, in the order given; only
    the round trips are shared (one INSERT for the attempts, one batch of UPDATEs for the
    deliveries, at most one UPDATE per endpoint)."""
    if not attempts:
        return []
    async with db.transaction(Scope(tenant_ids=frozenset(c.tenant_id for c, _ in attempts))) as session:
        return await _record(session, attempts, policy)


async def _record(
    session: AsyncSession, attempts: list[tuple[Claim, Outcome]], policy: DeliveryPolicy
) -> list[DeliveryStatus]:
    now = dt.datetime.now(dt.UTC)
    settled = [_settle(claim, outcome, policy, now) for claim, outcome in attempts]
    await session.execute(
        insert(WebhookAttempt),
        [
            {
                "tenant_id": claim.tenant_id,
                "delivery_id": claim.delivery_id,
                "endpoint_id": claim.endpoint.id,
                "event_id": claim.event_id,
                "order_id": claim.order_id,
                "attempted_at": now,
                "status_code": outcome.status_code,
                "latency_ms": outcome.latency_ms,
                "response_excerpt": outcome.excerpt,
                "error": outcome.error,
            }
            for claim, outcome in attempts
        ],
    )
    # By primary key; rows with the same columns to set go out as one executemany.
    await session.execute(
        update(WebhookDelivery),
        [
            {"tenant_id": claim.tenant_id, "id": claim.delivery_id, **values}
            for (claim, _), (_, values) in zip(attempts, settled, strict=True)
        ],
    )
    by_endpoint: dict[tuple[UUID, UUID], tuple[WebhookEndpoint, list[Outcome]]] = {}
    for claim, outcome in attempts:
        key = (claim.tenant_id, claim.endpoint.id)
        by_endpoint.setdefault(key, (claim.endpoint, []))[1].append(outcome)
    # In key order, so that two workers settling the same endpoints never wait on each other
    # in opposite orders.
    for key in sorted(by_endpoint):
        endpoint, outcomes = by_endpoint[key]
        await _settle_endpoint(session, endpoint, outcomes, policy, now)
    return [status for status, _ in settled]


async def record(db: Database, claim: Claim, outcome: Outcome, policy: DeliveryPolicy) -> DeliveryStatus:
    """Store the attempt and move the delivery (and maybe the endpoint) on."""
    [status] = await record_many(db, [(claim, outcome)], policy)
    return status


# ---------------------------------------------------------------- the dispatch loop


class RateGate:
    """Per-endpoint requests-per-second limit, shared by every worker through Redis."""

    def __init__(self, redis) -> None:
        self.redis = redis

    async def admit(self, endpoint: WebhookEndpoint) -> bool:
        if not endpoint.rate_limit_per_second or self.redis is None:
            return True
        key = f"orderdesk:webhook-rate:{endpoint.id}:{int(time.time())}"
        count = await self.redis.incr(key)
        if count == 1:
            await self.redis.expire(key, 2)
        return count <= endpoint.rate_limit_per_second


async def next_due_in(db: Database, scope: Scope) -> float | None:
    """Seconds until the earliest pending delivery is due and not leased (None when there is none).

    A delivery another dispatch holds counts from its lease's end: its holder settles it
    (and goes on to what it unblocks), so waiting for it would only keep idle dispatches
    polling; it is ours to take only if the holder dies."""
    async with db.transaction(scope) as session:
        return await _next_due_in(session, scope)


async def _next_due_in(session: AsyncSession, scope: Scope) -> float | None:
    earliest = await session.scalar(
        text(
            "SELECT min(GREATEST(d.next_attempt_at, d.leased_until)) FROM webhook_deliveries d "
            "JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id "
            "WHERE d.status = 'pending' AND e.enabled AND d.tenant_id = ANY (:tenants)"
        ),
        {"tenants": list(scope.tenant_ids)},
    )
    if earliest is None:
        return None
    return max(0.0, (earliest - dt.datetime.now(dt.UTC)).total_seconds())


async def _turn(
    db: Database, scope: Scope, policy: DeliveryPolicy, finished: list[tuple[Claim, Outcome]], limit: int
) -> tuple[int, list[Claim], float | None]:
    """One turn of the dispatch loop, in one transaction: record the attempts that finished,
    fan out new events, claim up to `limit` due deliveries and, when none is, find how
    long until one will be. (The fixed cost of a transaction was most of a turn's, when
    each of these steps, and each attempt, had one of its own.)"""
    async with db.transaction(scope) as session:
        if finished:
            await _record(session, finished, policy)
        if limit <= 0:
            return 0, [], None
        fanned, _ = await _fan_out(session, scope, FAN_OUT_BATCH)
        claims = await _claim_due(session, scope, limit, policy.lease)
        wait = None if claims else await _next_due_in(session, scope)
    return fanned, claims, wait


async def dispatch(
    db: Database,
    http: httpx.AsyncClient,
    policy: DeliveryPolicy,
    scope: Scope,
    *,
    budget_seconds: float = 40.0,
    concurrency: int = 32,
    gate: RateGate | None = None,
    idle_wait_seconds: float = 2.0,
    wake: asyncio.Event | None = None,
    linger_seconds: float = 0.0,
) -> int:
    """Fan out and deliver until nothing is due (waiting briefly for soon-due retries)
    or the budget is spent. Returns how many deliveries it claimed.

    Up to `concurrency` posts are in flight. Whenever some finish (or `wake` is set),
    one transaction records them and claims as many due deliveries as there is room
    for, so posting never waits for a whole batch and the database sees one
    transaction per turn rather than several per delivery.

    `wake` is set by whoever hears the outbox NOTIFY (the worker's listener): with it,
    new events are taken as they commit, even while posts are in flight, and an idle
    dispatch stays `linger_seconds` after its last work, so a steady flow is delivered
    by one running loop. Raises whatever the database raises; before that, and on
    cancellation, it records what was posted and hands back what was not, including
    what the turn under way when it was cancelled claimed."""
    deadline = time.monotonic() + budget_seconds
    claimed = 0
    in_flight: set[asyncio.Task] = set()
    finished: list[tuple[Claim, Outcome]] = []  # posted, not yet recorded
    unsettled: dict[UUID, Claim] = {}  # claimed, not yet recorded or postponed
    look = True  # whether a turn may find something new to claim
    postponed = False  # a rate-limited delivery was put off: it is due again shortly
    wait: float | None = None
    last_work = time.monotonic()
    running: tuple[asyncio.Future, list[tuple[Claim, Outcome]]] | None = None  # a turn and what it records

    async def deliver(claim: Claim) -> None:
        nonlocal postponed
        if gate is not None and not await gate.admit(claim.endpoint):
            await _postpone(db, claim, dt.timedelta(seconds=1))
            unsettled.pop(claim.delivery_id, None)
            postponed = True
        else:
            finished.append((claim, await post(http, claim, policy)))

    async def pause(seconds: float) -> bool:
        """Sleep, or until `wake` is set. True when woken."""
        if wake is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(wake.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            return False
        return True

    async def progress(room: int) -> int:
        """Until a post finishes, or (with room for more) `wake` is set.
        Returns how many deliveries finished."""
        waiting: set[asyncio.Future] = set(in_flight)
        woken = None
        if wake is not None and room > 0:
            woken = asyncio.ensure_future(wake.wait())
            waiting.add(woken)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)  # answers already read finish too, and share the next turn
        finally:
            if woken is not None:
                woken.cancel()
        done = [t for t in in_flight if t.done()]
        for task in done:
            in_flight.discard(task)
            task.result()  # a post never raises; a failing rate gate or postpone does
        return len(done)

    try:
        while True:
            accepting = time.monotonic() < deadline
            room = concurrency - len(in_flight) if accepting else 0
            looking = room > 0 and look
            if finished or looking:
                outcomes, finished[:] = finished[:], []
                if wake is not None and looking:
                    wake.clear()  # this turn sees every commit so far; later ones set it again
                # Shielded: a cancellation (shutdown) does not stop the turn midway. Stopped
                # while its COMMIT is on the way, it could not tell whether its claims took
                # effect, and claims nobody tracks stay leased, unposted, until the lease
                # ends. The wind-up below waits for it instead and takes in what it did.
                turn = asyncio.ensure_future(_turn(db, scope, policy, outcomes, room if looking else 0))
                running = (turn, outcomes)
                fanned, claims, turn_wait = await asyncio.shield(turn)
                running = None
                for claim, _ in outcomes:
                    unsettled.pop(claim.delivery_id, None)
                for claim in claims:
                    unsettled[claim.delivery_id] = claim
                    in_flight.add(asyncio.create_task(deliver(claim)))
                claimed += len(claims)
                if fanned or claims or outcomes:
                    last_work = time.monotonic()
                if looking:
                    wait = turn_wait
                    # A full claim, or a full fan-out, may have left more behind.
                    look = len(claims) == room or fanned >= FAN_OUT_BATCH
            if in_flight:
                full = accepting and len(in_flight) >= concurrency
                done = await progress(concurrency - len(in_flight) if accepting else 0)
                # A finished post is worth a look for more when it freed the only room, may
                # let its order's next event go (ordered endpoint), failed (a retry may be
                # due at once) or was put off; a success with room to spare changes nothing
                # claimable, and is recorded without one (a turn with fewer statements).
                look = (
                    look
                    or (
                        done > 0
                        and (full or postponed or any(c.ordered or not o.succeeded for c, o in finished))
                    )
                    or (wake is not None and wake.is_set())
                )
                postponed = False
                continue
            if finished:
                continue
            if not accepting:
                break
            if look:
                continue
            now = time.monotonic()
            if wait is not None and wait <= idle_wait_seconds and now + wait <= deadline:
                # Due but not claimable (waiting behind an earlier event of its order, or a
                # retry due shortly): look again shortly rather than spinning.
                await pause(max(wait, BLOCKED_RECHECK_SECONDS))
            elif wake is None or not await pause(min(last_work + linger_seconds, deadline) - now):
                break
            look = True
    except BaseException:
        # Shutting down (SIGTERM) or failing: stop posting, record what was sent, and hand
        # back what was not, for another dispatch now rather than after the lease.
        for task in in_flight:
            task.cancel()
        await asyncio.shield(_wind_up(db, scope, policy, running, in_flight, finished, unsettled))
        raise
    return claimed


async def _wind_up(
    db: Database,
    scope: Scope,
    policy: DeliveryPolicy,
    running: tuple[asyncio.Future, list[tuple[Claim, Outcome]]] | None,
    in_flight: set[asyncio.Task],
    finished: list[tuple[Claim, Outcome]],
    unsettled: dict[UUID, Claim],
) -> None:
    """Best effort, after the loop stopped on an error or a cancellation (which is what
    gets raised): whatever is left here is delivered again once its lease ends.

    `running` is the turn the loop was waiting for when it stopped, with the attempts it
    records: it runs to its end first, so that its transaction either took effect (its
    attempts are recorded, its claims are handed back below) or did not (its attempts are
    recorded here), never something in between that nobody knows of."""
    if running is not None:
        turn, outcomes = running
        await asyncio.wait({turn})
        if turn.cancelled() or turn.exception() is not None:
            finished[:0] = outcomes
        else:
            for claim, _ in outcomes:
                unsettled.pop(claim.delivery_id, None)
            _, claims, _ = turn.result()
            unsettled.update((claim.delivery_id, claim) for claim in claims)
    await asyncio.gather(*in_flight, return_exceptions=True)
    try:
        await record_many(db, finished, policy)
        for claim, _ in finished:
            unsettled.pop(claim.delivery_id, None)
    except Exception as exc:
        log.warning("webhook_attempts_not_recorded", error=str(exc), attempts=len(finished))
    try:
        await release(db, scope, list(unsettled.values()))
    except Exception as exc:
        log.warning("webhook_claims_not_released", error=str(exc), claims=len(unsettled))


async def _postpone(db: Database, claim: Claim, delay: dt.timedelta) -> None:
    async with db.transaction(Scope(tenant_ids=frozenset({claim.tenant_id}))) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.tenant_id == claim.tenant_id, WebhookDelivery.id == claim.delivery_id)
            .values(leased_until=None, next_attempt_at=dt.datetime.now(dt.UTC) + delay)
        )
