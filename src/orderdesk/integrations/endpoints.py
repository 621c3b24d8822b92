"""Webhook endpoints: registration, secrets and rotation, test events, the delivery log, replay.

Managed by staff admins, a tenant's client admins, and the tenant's API keys.
Raises NotFound for other tenants' endpoints, PermissionDenied for viewers and
agents, ValidationFailed for bad URLs or event types.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import select, update

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core.db import Database
from orderdesk.core.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.integrations import outbox, signing
from orderdesk.integrations.models import (
    DeliveryStatus,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from orderdesk.integrations.schemas import EndpointCreate, EndpointUpdate
from orderdesk.integrations.urls import UnsafeUrl, check_target

MAX_ENDPOINTS_PER_TENANT = 20


def _require_manager(actor: Actor) -> None:
    if actor.kind in (ActorKind.SYSTEM, ActorKind.API_KEY) or actor.is_admin:
        return
    if actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN:
        return
    raise PermissionDenied("Only administrators can manage webhook endpoints")


def _check_event_types(types: list[str]) -> list[str]:
    unknown = sorted(set(types) - outbox.EVENT_TYPES)
    if unknown:
        raise ValidationFailed(
            [
                FieldError(
                    "event_types",
                    f"unknown event type(s): {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(outbox.EVENT_TYPES))}",
                )
            ]
        )
    return sorted(set(types))


async def _check_url(url: str, allow_private: bool) -> str:
    try:
        await check_target(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise ValidationFailed([FieldError("url", str(exc))]) from None
    return url.strip()


async def create_endpoint(
    db: Database, actor: Actor, tenant_id: UUID, data: EndpointCreate, *, allow_private: bool
) -> WebhookEndpoint:
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_manager(actor)
    url = await _check_url(data.url, allow_private)
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        id=new_id(),
        url=url,
        description=data.description,
        event_types=_check_event_types(data.event_types),
        enabled=data.enabled,
        ordered=data.ordered,
        rate_limit_per_second=data.rate_limit_per_second,
        secret=signing.new_secret(),
    )
    async with db.transaction(actor.scope) as session:
        count = len(
            (
                await session.scalars(
                    select(WebhookEndpoint.id).where(WebhookEndpoint.tenant_id == tenant_id)
                )
            ).all()
        )
        if count >= MAX_ENDPOINTS_PER_TENANT:
            raise ValidationFailed(
                [FieldError("url", f"a tenant can have at most {MAX_ENDPOINTS_PER_TENANT} endpoints")]
            )
        session.add(endpoint)
    return endpoint


async def list_endpoints(db: Database, actor: Actor, tenant_id: UUID) -> list[WebhookEndpoint]:
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_manager(actor)
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == tenant_id)
            .order_by(WebhookEndpoint.created_at)
        )
        return list(rows)


async def _find(session, actor: Actor, endpoint_id: UUID, *, lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id.in_(actor.tenant_ids)
    )
    endpoint = await session.scalar(query.with_for_update() if lock else query)
    if endpoint is None:
        raise NotFound("Webhook endpoint")
    return endpoint


async def get_endpoint(db: Database, actor: Actor, endpoint_id: UUID) -> WebhookEndpoint:
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id)
    _require_manager(actor)
    return endpoint


async def update_endpoint(
    db: Database, actor: Actor, endpoint_id: UUID, data: EndpointUpdate, *, allow_private: bool
) -> WebhookEndpoint:
    changes = data.model_dump(exclude_unset=True)
    if "url" in changes and changes["url"] is not None:
        changes["url"] = await _check_url(changes["url"], allow_private)
    if "event_types" in changes and changes["event_types"] is not None:
        changes["event_types"] = _check_event_types(changes["event_types"])
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id, lock=True)
        _require_manager(actor)
        for name, value in changes.items():
            if value is not None or name == "rate_limit_per_second":
                setattr(endpoint, name, value)
        if changes.get("enabled"):
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        endpoint.updated_at = dt.datetime.now(dt.UTC)
    return endpoint


async def delete_endpoint(db: Database, actor: Actor, endpoint_id: UUID) -> None:
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id, lock=True)
        _require_manager(actor)
        await session.delete(endpoint)


async def rotate_secret(
    db: Database, actor: Actor, endpoint_id: UUID, overlap: dt.timedelta
) -> WebhookEndpoint:
    """A new secret signs from now on; the previous one also signs until the overlap ends."""
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id, lock=True)
        _require_manager(actor)
        now = dt.datetime.now(dt.UTC)
        endpoint.previous_secret = endpoint.secret if overlap.total_seconds() > 0 else None
        endpoint.previous_secret_expires_at = now + overlap if overlap.total_seconds() > 0 else None
        endpoint.secret = signing.new_secret()
        endpoint.updated_at = now
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, now: dt.datetime) -> list[str]:
    secrets_in_use = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        secrets_in_use.append(endpoint.previous_secret)
    return secrets_in_use


async def send_test_event(db: Database, actor: Actor, endpoint_id: UUID) -> WebhookDelivery:
    """Queue an `endpoint.test` event for this endpoint only."""
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id)
        _require_manager(actor)
        now = dt.datetime.now(dt.UTC)
        event = await outbox.write_event(
            session,
            endpoint.tenant_id,
            "endpoint.test",
            {"message": "This is a test event from OrderDesk", "endpoint_id": str(endpoint.id)},
        )
        # Fanned out here, to this endpoint alone.
        event.fanned_out_at = now
        delivery = WebhookDelivery(
            tenant_id=endpoint.tenant_id,
            id=new_id(),
            endpoint_id=endpoint.id,
            event_id=event.id,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
    return delivery


async def list_attempts(
    db: Database,
    actor: Actor,
    *,
    endpoint_id: UUID | None = None,
    order_id: UUID | None = None,
    limit: int = 100,
) -> list[WebhookAttempt]:
    """The delivery log of one endpoint or one order, newest first. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        query = select(WebhookAttempt).where(WebhookAttempt.tenant_id.in_(actor.tenant_ids))
        if endpoint_id is not None:
            await _find(session, actor, endpoint_id)
            query = query.where(WebhookAttempt.endpoint_id == endpoint_id)
        if order_id is not None:
            query = query.where(WebhookAttempt.order_id == order_id)
        rows = await session.scalars(query.order_by(WebhookAttempt.attempted_at.desc()).limit(limit))
        return list(rows)


async def list_deliveries(
    db: Database,
    actor: Actor,
    *,
    endpoint_id: UUID | None = None,
    order_id: UUID | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 100,
) -> list[tuple[WebhookDelivery, str]]:
    async with db.transaction(actor.scope) as session:
        query = (
            select(WebhookDelivery, OutboxEvent.event_type)
            .join(
                OutboxEvent,
                (OutboxEvent.tenant_id == WebhookDelivery.tenant_id)
                & (OutboxEvent.id == WebhookDelivery.event_id),
            )
            .where(WebhookDelivery.tenant_id.in_(actor.tenant_ids))
        )
        if endpoint_id is not None:
            await _find(session, actor, endpoint_id)
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        if order_id is not None:
            query = query.where(WebhookDelivery.order_id == order_id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        rows = await session.execute(query.order_by(WebhookDelivery.created_at.desc()).limit(limit))
        return [(d, t) for d, t in rows]


async def replay_delivery(db: Database, actor: Actor, delivery_id: UUID) -> WebhookDelivery:
    """Send one message again, with the same webhook-id. Raises NotFound, PermissionDenied."""
    async with db.transaction(actor.scope) as session:
        delivery = await session.scalar(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id.in_(actor.tenant_ids))
            .with_for_update()
        )
        if delivery is None:
            raise NotFound("Webhook delivery")
        _require_manager(actor)
        _reset(delivery, dt.datetime.now(dt.UTC))
    return delivery


async def replay_failed(db: Database, actor: Actor, endpoint_id: UUID, since: dt.datetime) -> int:
    """Send again everything to this endpoint that died since `since`. Raises NotFound, PermissionDenied."""
    async with db.transaction(actor.scope) as session:
        endpoint = await _find(session, actor, endpoint_id)
        _require_manager(actor)
        now = dt.datetime.now(dt.UTC)
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.tenant_id == endpoint.tenant_id,
                WebhookDelivery.endpoint_id == endpoint.id,
                WebhookDelivery.status == DeliveryStatus.DEAD,
                WebhookDelivery.created_at >= since,
            )
            .values(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                leased_until=None,
                finished_at=None,
            )
        )
        return result.rowcount


def _reset(delivery: WebhookDelivery, now: dt.datetime) -> None:
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.leased_until = None
    delivery.finished_at = None
