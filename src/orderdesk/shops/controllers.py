"""The shop-connection API, and the endpoint Shopify delivers order webhooks to."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, JSONBody

from orderdesk.core.errors import AuthenticationFailed, Conflict, DomainError, ValidationFailed
from orderdesk.orders.services import resolve_tenant
from orderdesk.shops import services
from orderdesk.shops.schemas import ShopConnectionCreate, ShopConnectionView, ShopifyWebhookReceipt
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.errors import PROBLEM_JSON, problem
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses

log = structlog.get_logger("orderdesk.shops")


class ShopConnectionApiController(Controller):
    path = "/api/v1/shop-connections"
    tags = ["Shop connections"]
    guards = [requires_actor]

    @post(
        "/",
        summary="Connect a shop (Shopify) to a tenant",
        description="Staff and client administrators only. Answers 201 for a new connection and 200 when "
        "the shop was connected already: its secret is replaced and it is active again. The secret is "
        "never returned; `webhook_path` is where the shop's orders/create webhook must point.",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def connect(
        self, db: DB, actor: CurrentActor, data: JSONBody[ShopConnectionCreate]
    ) -> Response[ShopConnectionView]:
        connected = await services.connect_shop(
            db,
            actor,
            tenant_id=resolve_tenant(actor, data.tenant_id),
            shop_domain=data.shop_domain,
            webhook_secret=data.webhook_secret,
            platform=data.platform,
        )
        return Response(connected.connection, status_code=201 if connected.created else 200)

    @get(
        "/",
        summary="List shop connections, active and inactive",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def list_connections(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[ShopConnectionView]:
        return await services.list_shop_connections(db, actor, tenant_id)

    @get(
        "/{connection_id:uuid}",
        summary="One shop connection",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def get_connection(
        self, db: DB, actor: CurrentActor, connection_id: FromPath[UUID]
    ) -> ShopConnectionView:
        return await services.get_shop_connection(db, actor, connection_id)

    @delete(
        "/{connection_id:uuid}",
        summary="Deactivate a shop connection (its webhooks are refused from then on)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def deactivate_connection(
        self, db: DB, actor: CurrentActor, connection_id: FromPath[UUID]
    ) -> ShopConnectionView:
        return await services.deactivate_shop_connection(db, actor, connection_id)


# ---------------------------------------------------------------- the webhook


# The domain errors the webhook raises, with the statuses the API gives them (web/errors.py).
_WEBHOOK_STATUS: dict[type[DomainError], int] = {
    AuthenticationFailed: 401,
    Conflict: 409,
    ValidationFailed: 422,
}


def _webhook_problem(request: Request, exc: Exception) -> Response:
    """Shopify is no browser: every failure of the webhook answers problem+json, whatever it accepts."""
    if isinstance(exc, DomainError):
        status = next((code for kind, code in _WEBHOOK_STATUS.items() if isinstance(exc, kind)), 400)
        extra: dict[str, Any] = {}
        if isinstance(exc, ValidationFailed):
            extra = {
                "type_": "/problems/validation",
                "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
            }
        body = problem(status, exc.detail, **extra)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        body = problem(status, exc.detail or HTTPStatus(status).phrase)
    else:
        log.exception("shopify_webhook_failed", path=request.url.path)
        status, body = 500, problem(500, "Something went wrong on our side; it has been logged")
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


class ShopifyWebhookController(Controller):
    path = "/hooks/shopify"
    tags = ["Webhooks"]
    # The same keys as the app's handlers: Litestar picks a handler by the exception's class first.
    exception_handlers = {
        DomainError: _webhook_problem,
        HTTPException: _webhook_problem,
        Exception: _webhook_problem,
    }

    @post(
        "/{tenant_slug:str}",
        summary="Receive a Shopify webhook (orders/create becomes an order)",
        description=(
            "Authenticated by `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body under the "
            "secret of the tenant's active connection for `X-Shopify-Shop-Domain`. No session or API key. "
            "`X-Shopify-Topic: orders/create` creates the order (201; 200 for a redelivery, keyed by "
            "`X-Shopify-Webhook-Id` and the Shopify order id); other topics are acknowledged with 202 and "
            "ignored. See docs/shopify.md for the field mapping."
        ),
        status_code=201,
        responses=problem_responses(401, 409, 422),
    )
    async def receive(
        self, request: Request, db: DB, tenant_slug: FromPath[str]
    ) -> Response[ShopifyWebhookReceipt]:
        headers = request.headers
        delivery = services.ShopifyDelivery(
            tenant_slug=tenant_slug,
            shop_domain=headers.get("x-shopify-shop-domain"),
            signature=headers.get("x-shopify-hmac-sha256"),
            topic=headers.get("x-shopify-topic"),
            webhook_id=headers.get("x-shopify-webhook-id"),
            body=await request.body(),
        )
        outcome = await services.receive_shopify_webhook(db, delivery)
        receipt = ShopifyWebhookReceipt(
            outcome=outcome.outcome,
            order_id=outcome.order_id,
            order_number=outcome.order_number,
            topic=delivery.topic,
        )
        return Response(receipt, status_code=outcome.status_code)
