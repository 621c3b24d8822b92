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
from sqlalchemy import select, text, update

from orderdesk.core.db import Database
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.integrations import signing
from orderdesk.integrations.endpoints import signing_secrets
from orderdesk.integrations.models import (
    DeliveryStatus,
    OutboxEvent,
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


async def fan_out(db: Database, scope: Scope, limit: int = 500) -> int:
    """Create a delivery for every enabled endpoint whose filter matches each new event."""
    async with db.transaction(scope) as session:
        events = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.fanned_out_at.is_(None), OutboxEvent.tenant_id.in_(scope.tenant_ids))
                .order_by(OutboxEvent.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not events:
            return 0
        tenant_ids = {e.tenant_id for e in events}
        endpoints = (
            await session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.enabled
                )
            )
        ).all()
        now = dt.datetime.now(dt.UTC)
        created = 0
        for event in events:
            for endpoint in endpoints:
                if endpoint.tenant_id != event.tenant_id:
                    continue
                if endpoint.event_types and event.event_type not in endpoint.event_types:
                    continue
                session.add(
                    WebhookDelivery(
                        tenant_id=event.tenant_id,
                        id=new_id(),
                        endpoint_id=endpoint.id,
                        event_id=event.id,
                        order_id=event.order_id,
                        order_seq=event.order_seq,
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
                created += 1
            event.fanned_out_at = now
    return created


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
    FROM due
    WHERE w.tenant_id = due.tenant_id AND w.id = due.id
    RETURNING w.tenant_id, w.id, w.event_id, w.endpoint_id, w.order_id, w.attempts
    """
)


async def claim_due(db: Database, scope: Scope, limit: int, lease: dt.timedelta = LEASE) -> list[Claim]:
    """Lease up to `limit` due deliveries for this worker."""
    async with db.transaction(scope) as session:
        rows = (
            await session.execute(
                CLAIM_SQL,
                {"tenants": list(scope.tenant_ids), "limit": limit, "lease": lease.total_seconds()},
            )
        ).all()
        if not rows:
            return []
        event_ids = {r.event_id for r in rows}
        endpoint_ids = {r.endpoint_id for r in rows}
        payloads = {
            e.id: e.payload
            for e in await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(event_ids)))
        }
        endpoints = {
            e.id: e
            for e in await session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
            )
        }
    return [
        Claim(
            tenant_id=r.tenant_id,
            delivery_id=r.id,
            event_id=r.event_id,
            order_id=r.order_id,
            attempts=r.attempts,
            endpoint=endpoints[r.endpoint_id],
            body=json.dumps(payloads[r.event_id], separators=(",", ":"), sort_keys=True).encode(),
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


async def record(db: Database, claim: Claim, outcome: Outcome, policy: DeliveryPolicy) -> DeliveryStatus:
    """Store the attempt and move the delivery (and maybe the endpoint) on."""
    now = dt.datetime.now(dt.UTC)
    attempts = claim.attempts + 1
    scope = Scope(tenant_ids=frozenset({claim.tenant_id}))
    async with db.transaction(scope) as session:
        session.add(
            WebhookAttempt(
                tenant_id=claim.tenant_id,
                delivery_id=claim.delivery_id,
                endpoint_id=claim.endpoint.id,
                event_id=claim.event_id,
                order_id=claim.order_id,
                attempted_at=now,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
            )
        )
        values: dict = {
            "attempts": attempts,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "leased_until": None,
        }
        endpoint_changes: dict = {}
        if outcome.succeeded:
            status = DeliveryStatus.SUCCEEDED
            values.update(status=status, finished_at=now)
            if claim.endpoint.failing_since is not None:
                endpoint_changes["failing_since"] = None
        elif outcome.status_code == 410:
            status = DeliveryStatus.DEAD
            values.update(status=status, finished_at=now)
            endpoint_changes.update(enabled=False, disabled_reason="the receiver answered 410 Gone")
        else:
            delay = next_delay(attempts, policy, outcome)
            if delay is None:
                status = DeliveryStatus.DEAD
                values.update(status=status, finished_at=now)
            else:
                status = DeliveryStatus.PENDING
                values.update(next_attempt_at=now + delay)
            failing_since = claim.endpoint.failing_since or now
            endpoint_changes["failing_since"] = failing_since
            if now - failing_since >= policy.disable_after:
                endpoint_changes.update(
                    enabled=False,
                    disabled_reason=f"failing without a success since {failing_since:%Y-%m-%d %H:%M} UTC",
                )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.tenant_id == claim.tenant_id, WebhookDelivery.id == claim.delivery_id)
            .values(**values)
        )
        if endpoint_changes:
            # Only the first failure sets failing_since; later ones must not move it forward.
            query = update(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id == claim.tenant_id, WebhookEndpoint.id == claim.endpoint.id
            )
            if endpoint_changes.get("failing_since") is not None and "enabled" not in endpoint_changes:
                query = query.where(WebhookEndpoint.failing_since.is_(None))
            await session.execute(query.values(**endpoint_changes, updated_at=now))
        if endpoint_changes.get("enabled") is False:
            log.warning(
                "webhook_endpoint_disabled",
                tenant=str(claim.tenant_id),
                endpoint=str(claim.endpoint.id),
                reason=endpoint_changes["disabled_reason"],
            )
            # The tenant's client admins are told by email, committed with the change.
            from orderdesk.comms import notices

            await notices.webhook_endpoint_disabled_in(
                session,
                claim.tenant_id,
                endpoint_id=claim.endpoint.id,
                url=claim.endpoint.url,
                reason=endpoint_changes["disabled_reason"],
            )
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
    """Seconds until the earliest pending delivery is due (None when there is none)."""
    async with db.transaction(scope) as session:
        earliest = await session.scalar(
            text(
                "SELECT min(d.next_attempt_at) FROM webhook_deliveries d "
                "JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id "
                "WHERE d.status = 'pending' AND e.enabled AND d.tenant_id = ANY (:tenants)"
            ),
            {"tenants": list(scope.tenant_ids)},
        )
    if earliest is None:
        return None
    return max(0.0, (earliest - dt.datetime.now(dt.UTC)).total_seconds())


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
) -> int:
    """Fan out and deliver until nothing is due (waiting briefly for soon-due retries)
    or the budget is spent. Returns how many attempts were made."""
    deadline = time.monotonic() + budget_seconds
    attempts = 0
    semaphore = asyncio.Semaphore(concurrency)

    unsettled: dict[UUID, Claim] = {}

    async def deliver(claim: Claim) -> None:
        async with semaphore:
            if gate is not None and not await gate.admit(claim.endpoint):
                await _postpone(db, claim, dt.timedelta(seconds=1))
            else:
                outcome = await post(http, claim, policy)
                await record(db, claim, outcome, policy)
            unsettled.pop(claim.delivery_id, None)

    while time.monotonic() < deadline:
        await fan_out(db, scope)
        claims = await claim_due(db, scope, limit=concurrency * 2, lease=policy.lease)
        if not claims:
            wait = await next_due_in(db, scope)
            if wait is None or wait > idle_wait_seconds or time.monotonic() + wait > deadline:
                break
            # Due but not claimable (leased elsewhere, or waiting behind an earlier event of its
            # order): look again shortly rather than spinning.
            await asyncio.sleep(max(wait, BLOCKED_RECHECK_SECONDS))
            continue
        unsettled.update((c.delivery_id, c) for c in claims)
        try:
            await asyncio.gather(*(deliver(c) for c in claims))
        except asyncio.CancelledError:
            # Shutting down (SIGTERM): hand back what was not attempted, for another worker now
            # rather than after the lease.
            await asyncio.shield(release(db, scope, list(unsettled.values())))
            raise
        attempts += len(claims)
    return attempts


async def _postpone(db: Database, claim: Claim, delay: dt.timedelta) -> None:
    async with db.transaction(Scope(tenant_ids=frozenset({claim.tenant_id}))) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.tenant_id == claim.tenant_id, WebhookDelivery.id == claim.delivery_id)
            .values(leased_until=None, next_attempt_at=dt.datetime.now(dt.UTC) + delay)
        )
