"""Shop connections, and Shopify's order webhooks turned into orders.

A connection says: webhooks for this tenant from this shop are signed with this
secret. The secret is kept as given, because checking a signature needs it; the
API never returns it. Deliveries are authenticated on their raw bytes before
anything is parsed, and captured through `orders.services.capture_order`, so
they pass exactly the rules every other channel passes.

Shopify delivers at least once and retries for hours: the X-Shopify-Webhook-Id is
the idempotency key and `shopify:<order id>` the external reference, so a
redelivery answers with the order it made the first time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core.db import Database
from orderdesk.core.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.core.validation import Collector
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel
from orderdesk.shops import shopify
from orderdesk.shops.models import ShopConnection, ShopPlatform
from orderdesk.shops.schemas import ShopConnectionView
from orderdesk.tenants.models import Tenant

log = structlog.get_logger("orderdesk.shops")

# One answer for an unknown tenant, an unknown or inactive shop and a bad signature.
WEBHOOK_REJECTED = "The webhook could not be authenticated"
# Signed against when nothing matches, so a miss costs the same HMAC work as a hit.
_NO_SECRET = "no-connection-matches-this-delivery"
SHOPIFY_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\.myshopify\.com")
SECRET_LENGTH = (16, 255)
WEBHOOK_KEY_PREFIX = "shopify-webhook:"


def webhook_path(platform: ShopPlatform, tenant_slug: str) -> str:
    return f"/hooks/{platform.value}/{tenant_slug}"


def normalise_shop_domain(raw: str) -> str:
    """`https://Acme.myshopify.com/` -> `acme.myshopify.com`."""
    domain = raw.strip().lower().removeprefix("https://").removeprefix("http://")
    return domain.rstrip("/")


def _view(connection: ShopConnection, tenant_slug: str) -> ShopConnectionView:
    return ShopConnectionView(
        id=connection.id,
        tenant_id=connection.tenant_id,
        platform=connection.platform,
        shop_domain=connection.shop_domain,
        active=connection.active,
        created_at=connection.created_at,
        webhook_path=webhook_path(connection.platform, tenant_slug),
    )


def _require_manager(actor: Actor) -> None:
    if actor.kind is ActorKind.SYSTEM or actor.is_admin:
        return
    if actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN:
        return
    raise PermissionDenied("Only administrators can manage shop connections")


# ---------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True)
class Connected:
    connection: ShopConnectionView
    created: bool  # False: the shop was connected already; its secret was replaced and it is active


async def connect_shop(
    db: Database,
    actor: Actor,
    *,
    tenant_id: UUID,
    shop_domain: str,
    webhook_secret: str,
    platform: ShopPlatform = ShopPlatform.SHOPIFY,
) -> Connected:
    """Connect a shop to a tenant, or give a connected (or deactivated) one a new secret.

    Raises NotFound for a tenant outside the actor's reach, PermissionDenied unless
    the actor is a staff admin, a client admin or the system, ValidationFailed for a
    domain that is not a myshopify.com domain or an unusable secret, Conflict when
    the same shop is being connected at the same moment.
    """
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    _require_manager(actor)
    check = Collector()
    domain = normalise_shop_domain(shop_domain)
    if not SHOPIFY_DOMAIN.fullmatch(domain):
        check.add("shop_domain", "must be the shop's myshopify.com domain, e.g. acme-outdoor.myshopify.com")
    secret = webhook_secret.strip()
    low, high = SECRET_LENGTH
    if not low <= len(secret) <= high or not secret.isprintable() or any(ch.isspace() for ch in secret):
        check.add("webhook_secret", f"must be {low}-{high} printable characters without spaces")
    check.raise_if_any()
    try:
        async with db.transaction(actor.scope) as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound("Tenant")
            connection = await session.scalar(
                select(ShopConnection)
                .where(
                    ShopConnection.tenant_id == tenant_id,
                    ShopConnection.platform == platform,
                    ShopConnection.shop_domain == domain,
                )
                .with_for_update()
            )
            created = connection is None
            if connection is None:
                connection = ShopConnection(
                    tenant_id=tenant_id, id=new_id(), platform=platform, shop_domain=domain, active=True
                )
                session.add(connection)
            connection.webhook_secret = secret
            connection.active = True
            await session.flush()
            await session.refresh(connection, ["created_at"])
            view = _view(connection, tenant.slug)
    except IntegrityError as exc:
        raise Conflict(f"{domain} is being connected by someone else right now; try again") from exc
    return Connected(connection=view, created=created)


async def list_shop_connections(
    db: Database, actor: Actor, tenant_id: UUID | None = None
) -> list[ShopConnectionView]:
    """Connections of one tenant, or of every tenant the actor reaches; active and inactive.

    Raises NotFound for a tenant outside the actor's reach, PermissionDenied for
    anyone but administrators.
    """
    tenant_ids = actor.tenant_ids
    if tenant_id is not None:
        if tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenant_ids = frozenset({tenant_id})
    _require_manager(actor)
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            select(ShopConnection, Tenant.slug)
            .join(Tenant, Tenant.id == ShopConnection.tenant_id)
            .where(ShopConnection.tenant_id.in_(tenant_ids))
            .order_by(Tenant.slug, ShopConnection.shop_domain)
        )
        return [_view(connection, slug) for connection, slug in rows]


async def _find_connection(session, actor: Actor, connection_id: UUID, *, lock: bool = False):
    query = (
        select(ShopConnection, Tenant.slug)
        .join(Tenant, Tenant.id == ShopConnection.tenant_id)
        .where(ShopConnection.id == connection_id, ShopConnection.tenant_id.in_(actor.tenant_ids))
    )
    if lock:
        query = query.with_for_update(of=ShopConnection)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound("Shop connection")
    _require_manager(actor)
    return row


async def get_shop_connection(db: Database, actor: Actor, connection_id: UUID) -> ShopConnectionView:
    """One connection within the actor's tenants. Raises NotFound (also for others'), PermissionDenied."""
    async with db.transaction(actor.scope) as session:
        connection, slug = await _find_connection(session, actor, connection_id)
        return _view(connection, slug)


async def deactivate_shop_connection(db: Database, actor: Actor, connection_id: UUID) -> ShopConnectionView:
    """Stop taking the shop's webhooks (they answer 401 from now on); harmless twice.

    Raises NotFound (also for other tenants' connections), PermissionDenied.
    """
    async with db.transaction(actor.scope) as session:
        connection, slug = await _find_connection(session, actor, connection_id, lock=True)
        connection.active = False
        return _view(connection, slug)


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True, slots=True)
class ShopifyDelivery:
    """One webhook request as Shopify sent it: the URL's tenant, the X-Shopify-* headers, the raw body."""

    tenant_slug: str
    shop_domain: str | None
    signature: str | None
    topic: str | None
    webhook_id: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    status_code: int  # 201 created, 200 the order existed already (redelivery), 202 topic ignored
    outcome: str
    order_id: UUID | None = None
    order_number: int | None = None


@dataclass(frozen=True, slots=True)
class _Sender:
    tenant_id: UUID
    connection_id: UUID
    shop_domain: str

    @property
    def actor(self) -> Actor:
        # The platform acting for one tenant; the timeline names the shop.
        return Actor(
            kind=ActorKind.SYSTEM,
            id=self.connection_id,
            display_name=f"Shopify {self.shop_domain}",
            tenant_ids=frozenset({self.tenant_id}),
        )


async def _authenticate(db: Database, delivery: ShopifyDelivery) -> _Sender:
    domain = normalise_shop_domain(delivery.shop_domain or "")
    async with db.transaction(Scope()) as session:  # the tenant registry is global
        tenant_id = await session.scalar(
            select(Tenant.id).where(Tenant.slug == delivery.tenant_slug, Tenant.is_active)
        )
    candidates: list[tuple[UUID | None, str]] = []
    if tenant_id is not None and domain:
        async with db.transaction(Scope.for_tenants(tenant_id)) as session:
            rows = await session.execute(
                select(ShopConnection.id, ShopConnection.webhook_secret).where(
                    ShopConnection.tenant_id == tenant_id,
                    ShopConnection.platform == ShopPlatform.SHOPIFY,
                    ShopConnection.shop_domain == domain,
                    ShopConnection.active,
                )
            )
            candidates = [(connection_id, secret) for connection_id, secret in rows]
    matched = None
    for connection_id, secret in candidates or [(None, _NO_SECRET)]:
        if shopify.signature_matches(secret, delivery.body, delivery.signature) and connection_id:
            matched = connection_id
    if matched is None or tenant_id is None:
        reason = (
            "unknown_tenant" if tenant_id is None else "no_connection" if not candidates else "bad_signature"
        )
        # The caller hears only WEBHOOK_REJECTED; the log says which, for whoever sets the shop up.
        log.warning(
            "shopify_webhook_rejected",
            tenant_slug=delivery.tenant_slug[:40],
            shop_domain=domain[:255],
            reason=reason,
        )
        raise AuthenticationFailed(WEBHOOK_REJECTED)
    return _Sender(tenant_id=tenant_id, connection_id=matched, shop_domain=domain)


async def receive_shopify_webhook(db: Database, delivery: ShopifyDelivery) -> WebhookOutcome:
    """Authenticate one Shopify delivery and, for orders/create, capture the order.

    The signature is checked on the raw body against the active connection of the
    URL's tenant for X-Shopify-Shop-Domain before the body is parsed. Other topics
    are acknowledged and ignored (202). Raises AuthenticationFailed (the same for
    every reason), ValidationFailed (naming Shopify's fields), Conflict (a webhook
    id seen before with a different order).
    """
    sender = await _authenticate(db, delivery)
    if delivery.topic != shopify.ORDERS_CREATE:
        return WebhookOutcome(202, "ignored")
    mapped = shopify.to_order_create(shopify.parse_order(delivery.body), sender.shop_domain)
    key = WEBHOOK_KEY_PREFIX + delivery.webhook_id if delivery.webhook_id else None
    try:
        result = await orders.capture_order(
            db, sender.actor, mapped.order, channel=Channel.SHOP, idempotency_key=key
        )
    except ValidationFailed as exc:
        raise mapped.in_shopify_terms(exc) from None
    return WebhookOutcome(
        status_code=201 if result.created else 200,
        outcome="created" if result.created else "existing",
        order_id=UUID(result.body["id"]),
        order_number=result.body["number"],
    )
