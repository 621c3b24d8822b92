"""Webhook endpoints API (tenant API keys, client admins, staff admins) and delivery logs."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Template
from pydantic import ValidationError as PydanticValidationError

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.integrations import endpoints as service
from orderdesk.integrations.models import DeliveryStatus
from orderdesk.integrations.outbox import EVENT_TYPES
from orderdesk.integrations.schemas import (
    AttemptView,
    DeliveryView,
    EndpointCreate,
    EndpointUpdate,
    EndpointView,
    EndpointWithSecret,
    ReplayResult,
    RotateSecretIn,
)
from orderdesk.orders.services import resolve_tenant
from orderdesk.tenants.services import get_tenant
from orderdesk.web.deps import DB, AppSettings, CurrentActor
from orderdesk.web.guards import requires_actor, requires_staff
from orderdesk.web.openapi import problem_responses


def _with_secret(endpoint) -> EndpointWithSecret:
    return EndpointWithSecret.model_validate(endpoint)


def _delivery_view(pair) -> DeliveryView:
    delivery, event_type = pair
    return DeliveryView(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=event_type,
        order_id=delivery.order_id,
        status=delivery.status.value,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
    )


class WebhookEndpointController(Controller):
    path = "/api/v1/webhook-endpoints"
    tags = ["Webhooks"]
    guards = [requires_actor]

    @post(
        "/",
        summary="Register a webhook endpoint (the signing secret is in the answer)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def create(
        self, db: DB, actor: CurrentActor, settings: AppSettings, data: JSONBody[EndpointCreate]
    ) -> EndpointWithSecret:
        tenant_id = resolve_tenant(actor, data.tenant_id)
        endpoint = await service.create_endpoint(
            db, actor, tenant_id, data, allow_private=settings.webhooks_allow_private
        )
        return _with_secret(endpoint)

    @get("/", summary="The tenant's webhook endpoints", responses=problem_responses(400, 401, 403, 404, 422))
    async def list_endpoints(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[EndpointView]:
        rows = await service.list_endpoints(db, actor, resolve_tenant(actor, tenant_id))
        return [EndpointView.model_validate(e) for e in rows]

    @get("/{endpoint_id:uuid}", summary="One endpoint", responses=problem_responses(400, 401, 403, 404))
    async def get_endpoint(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> EndpointView:
        return EndpointView.model_validate(await service.get_endpoint(db, actor, endpoint_id))

    @get(
        "/{endpoint_id:uuid}/secret",
        summary="The endpoint's current signing secret",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def get_secret(
        self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]
    ) -> EndpointWithSecret:
        return _with_secret(await service.get_endpoint(db, actor, endpoint_id))

    @patch(
        "/{endpoint_id:uuid}",
        summary="Change an endpoint (URL, filter, ordering, rate limit, enabled)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def update(
        self,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        endpoint_id: FromPath[UUID],
        data: JSONBody[EndpointUpdate],
    ) -> EndpointView:
        endpoint = await service.update_endpoint(
            db, actor, endpoint_id, data, allow_private=settings.webhooks_allow_private
        )
        return EndpointView.model_validate(endpoint)

    @delete(
        "/{endpoint_id:uuid}",
        summary="Remove an endpoint and its delivery log",
        status_code=204,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def remove(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> None:
        await service.delete_endpoint(db, actor, endpoint_id)

    @post(
        "/{endpoint_id:uuid}/rotate-secret",
        summary="Rotate the signing secret; both sign during the overlap",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def rotate(
        self,
        db: DB,
        actor: CurrentActor,
        endpoint_id: FromPath[UUID],
        data: JSONBody[RotateSecretIn | None] = None,
    ) -> EndpointWithSecret:
        overlap = dt.timedelta(hours=data.overlap_hours if data else 24)
        return _with_secret(await service.rotate_secret(db, actor, endpoint_id, overlap))

    @post(
        "/{endpoint_id:uuid}/test",
        summary="Send a test event to this endpoint",
        status_code=202,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def send_test(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> DeliveryView:
        delivery = await service.send_test_event(db, actor, endpoint_id)
        return _delivery_view((delivery, "endpoint.test"))

    @get(
        "/{endpoint_id:uuid}/deliveries",
        summary="Deliveries to this endpoint, newest first",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def deliveries(
        self,
        db: DB,
        actor: CurrentActor,
        endpoint_id: FromPath[UUID],
        status: FromQuery[DeliveryStatus | None] = None,
    ) -> list[DeliveryView]:
        rows = await service.list_deliveries(db, actor, endpoint_id=endpoint_id, status=status)
        return [_delivery_view(r) for r in rows]

    @get(
        "/{endpoint_id:uuid}/attempts",
        summary="The delivery log: every attempt, newest first",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def attempts(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> list[AttemptView]:
        rows = await service.list_attempts(db, actor, endpoint_id=endpoint_id)
        return [AttemptView.model_validate(a) for a in rows]

    @post(
        "/{endpoint_id:uuid}/replay-failed",
        summary="Send again everything that died since a time",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def replay_failed(
        self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID], since: FromQuery[dt.datetime]
    ) -> ReplayResult:
        return ReplayResult(replayed=await service.replay_failed(db, actor, endpoint_id, since))


class WebhookDeliveryController(Controller):
    path = "/api/v1"
    tags = ["Webhooks"]
    guards = [requires_actor]

    @post(
        "/webhook-deliveries/{delivery_id:uuid}/replay",
        summary="Send one message again (same webhook-id)",
        status_code=202,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def replay(self, db: DB, actor: CurrentActor, delivery_id: FromPath[UUID]) -> DeliveryView:
        delivery = await service.replay_delivery(db, actor, delivery_id)
        rows = await service.list_deliveries(db, actor, endpoint_id=delivery.endpoint_id)
        return _delivery_view(next(r for r in rows if r[0].id == delivery.id))

    @get(
        "/orders/{order_id:uuid}/webhook-deliveries",
        summary="Webhook deliveries of one order",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def order_deliveries(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]
    ) -> list[DeliveryView]:
        from orderdesk.orders.services import get_order

        await get_order(db, actor, order_id)  # NotFound for foreign or missing orders
        rows = await service.list_deliveries(db, actor, order_id=order_id)
        return [_delivery_view(r) for r in rows]


class ConsoleWebhookController(Controller):
    """Staff admins manage a tenant's endpoints from the console (client admins use the portal)."""

    path = "/console/tenants/{tenant_id:uuid}/webhooks"
    guards = [requires_staff]
    include_in_schema = False

    async def _page(
        self,
        db,
        actor,
        tenant_id: UUID,
        *,
        notice: str | None = None,
        secret: str | None = None,
        errors: list | None = None,
        form: dict | None = None,
        status_code: int = 200,
    ) -> Template:
        tenant = await get_tenant(db, actor, tenant_id)
        endpoints = await service.list_endpoints(db, actor, tenant_id)
        return Template(
            "integrations/console_webhooks.html",
            context={
                "actor": actor,
                "tenant": tenant,
                "endpoints": endpoints,
                "event_types": sorted(EVENT_TYPES),
                "notice": notice,
                "secret": secret,
                "errors": errors or [],
                "form": form or {},
            },
            status_code=status_code,
        )

    @get("/")
    async def page(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> Template:
        return await self._page(db, actor, tenant_id)

    @post("/")
    async def create(
        self, request: Request, db: DB, actor: CurrentActor, settings: AppSettings, tenant_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        data = {
            "url": str(form.get("url", "")),
            "description": str(form.get("description", "")),
            "event_types": [str(v) for v in form.getall("event_types", [])],
            "ordered": form.get("ordered") == "on",
        }
        try:
            endpoint = await service.create_endpoint(
                db, actor, tenant_id, EndpointCreate(**data), allow_private=settings.webhooks_allow_private
            )
        except ValidationFailed as exc:
            return await self._page(db, actor, tenant_id, errors=exc.errors, form=data, status_code=422)
        except PydanticValidationError as exc:
            errors = [FieldError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
            return await self._page(db, actor, tenant_id, errors=errors, form=data, status_code=422)
        return await self._page(
            db,
            actor,
            tenant_id,
            notice=f"Endpoint {endpoint.url} added. Its signing secret "
            "is below: copy it into the receiving system now.",
            secret=endpoint.secret,
        )

    @post("/{endpoint_id:uuid}/rotate")
    async def rotate(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], endpoint_id: FromPath[UUID]
    ) -> Template:
        endpoint = await service.rotate_secret(db, actor, endpoint_id, dt.timedelta(hours=24))
        return await self._page(
            db,
            actor,
            tenant_id,
            secret=endpoint.secret,
            notice="Secret rotated. The previous one keeps signing for 24 hours.",
        )

    @post("/{endpoint_id:uuid}/test")
    async def test(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], endpoint_id: FromPath[UUID]
    ) -> Template:
        await service.send_test_event(db, actor, endpoint_id)
        return await self._page(
            db, actor, tenant_id, notice="Test event queued; it appears in the log below."
        )

    @post("/{endpoint_id:uuid}/toggle")
    async def toggle(
        self,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        tenant_id: FromPath[UUID],
        endpoint_id: FromPath[UUID],
    ) -> Template:
        endpoint = await service.get_endpoint(db, actor, endpoint_id)
        await service.update_endpoint(
            db,
            actor,
            endpoint_id,
            EndpointUpdate(enabled=not endpoint.enabled),
            allow_private=settings.webhooks_allow_private,
        )
        return await self._page(
            db, actor, tenant_id, notice="Endpoint disabled." if endpoint.enabled else "Endpoint enabled."
        )

    @get("/{endpoint_id:uuid}/log")
    async def log(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], endpoint_id: FromPath[UUID]
    ) -> Template:
        deliveries = await service.list_deliveries(db, actor, endpoint_id=endpoint_id, limit=50)
        attempts = await service.list_attempts(db, actor, endpoint_id=endpoint_id, limit=50)
        return Template(
            "integrations/_endpoint_log.html",
            context={
                "deliveries": [_delivery_view(d) for d in deliveries],
                "attempts": attempts,
                "tenant_id": tenant_id,
                "endpoint_id": endpoint_id,
                "actor": actor,
            },
        )

    @post("/deliveries/{delivery_id:uuid}/replay")
    async def replay(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], delivery_id: FromPath[UUID]
    ) -> Template:
        await service.replay_delivery(db, actor, delivery_id)
        return await self._page(db, actor, tenant_id, notice="Delivery queued again (same webhook-id).")
