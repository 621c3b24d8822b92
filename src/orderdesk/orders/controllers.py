"""The orders API: create (idempotent), read, list, timeline, and one endpoint per action."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.orders import catalog, services
from orderdesk.orders.models import Channel, PaymentStatus, Priority
from orderdesk.orders.schemas import (
    ActionIn,
    CatalogItemIn,
    CatalogItemView,
    CheckDecisionIn,
    EventView,
    HoldIn,
    HoldReleaseIn,
    OrderCreate,
    OrderPage,
    OrderView,
    PaymentUpdateIn,
    VerificationPolicyIn,
    VerificationPolicyView,
)
from orderdesk.orders.states import PLATFORM_ACTIONS, Action, OrderStatus
from orderdesk.orders.verification import VerificationPolicy
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Retry-safe creation: the same key and body replay the first answer for at least 24 h",
    ),
]


def _channel_for(request: Request) -> Channel:
    actor = request.user
    return {"api_key": Channel.API, "client": Channel.PORTAL}.get(actor.kind.value, Channel.AGENT)


def _statuses(raw: list[str] | None) -> tuple[OrderStatus, ...]:
    try:
        return tuple(OrderStatus(s) for s in raw or [])
    except ValueError as exc:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise ValidationFailed([FieldError("status", f"must be one of: {allowed}")]) from exc


class OrderApiController(Controller):
    path = "/api/v1/orders"
    tags = ["Orders"]
    guards = [requires_actor]

    @post(
        "/",
        summary="Create an order",
        description=(
            "Validates, numbers and verifies a new order in one transaction. An order whose "
            "`external_ref` already exists is returned with 200 instead of being duplicated."
        ),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def create_order(
        self,
        request: Request,
        db: DB,
        actor: CurrentActor,
        data: JSONBody[OrderCreate],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[OrderView]:
        result = await services.capture_order(
            db, actor, data, channel=_channel_for(request), idempotency_key=idempotency_key
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.body, status_code=result.status_code, headers=headers)

    @get(
        "/",
        summary="List orders, newest first (keyset pagination)",
        responses=problem_responses(400, 401, 404, 422),
    )
    async def list_orders(
        self,
        db: DB,
        actor: CurrentActor,
        tenant_id: FromQuery[UUID | None] = None,
        status: FromQuery[list[str] | None] = None,
        priority: FromQuery[Priority | None] = None,
        payment_status: FromQuery[PaymentStatus | None] = None,
        tag: FromQuery[str | None] = None,
        created_from: FromQuery[dt.datetime | None] = None,
        created_to: FromQuery[dt.datetime | None] = None,
        on_hold: FromQuery[bool | None] = None,
        q: Annotated[
            str | None, QueryParameter(max_length=200, description="Number, reference, name or email")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> OrderPage:
        filters = services.OrderFilters(
            tenant_id=tenant_id,
            statuses=_statuses(status),
            priority=priority,
            tag=tag,
            created_from=created_from,
            created_to=created_to,
            text=q,
            limit=limit,
            cursor=cursor,
            on_hold=on_hold,
            payment_status=payment_status,
        )
        return await services.list_orders(db, actor, filters)

    @get(
        "/{order_id:uuid}",
        summary="One order, with lines, holds, checks and allowed actions",
        responses=problem_responses(400, 401, 404),
    )
    async def get_order(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> OrderView:
        return await services.get_order(db, actor, order_id)

    @get(
        "/{order_id:uuid}/events",
        summary="The order's timeline, oldest first",
        responses=problem_responses(400, 401, 404),
    )
    async def list_events(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> list[EventView]:
        return await services.list_events(db, actor, order_id)

    @post(
        "/{order_id:uuid}/holds",
        summary="Place a hold",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def place_hold(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[HoldIn]
    ) -> OrderView:
        return await services.perform_action(
            db, actor, order_id, Action.PLACE_HOLD, note=data.note, hold_reason=data.reason
        )

    @post(
        "/{order_id:uuid}/holds/release",
        summary="Release one hold",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def release_hold(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[HoldReleaseIn]
    ) -> OrderView:
        return await services.perform_action(
            db, actor, order_id, Action.RELEASE_HOLD, note=data.note, hold_reason=data.reason
        )

    @post(
        "/{order_id:uuid}/checks/{check:str}",
        summary="Confirm or override a failed check",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def decide_check(
        self,
        db: DB,
        actor: CurrentActor,
        order_id: FromPath[UUID],
        check: FromPath[str],
        data: JSONBody[CheckDecisionIn],
    ) -> OrderView:
        return await services.decide_check(db, actor, order_id, check, data.resolution, data.note)

    @post(
        "/{order_id:uuid}/payment",
        summary="Record a payment status change",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def update_payment(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[PaymentUpdateIn]
    ) -> OrderView:
        return await services.update_payment_status(db, actor, order_id, data.payment_status)


def _action_handler(action: Action):
    async def handler(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[ActionIn | None] = None
    ) -> OrderView:
        return await services.perform_action(db, actor, order_id, action, note=data.note if data else None)

    slug = action.value.replace("_", "-")
    return post(
        f"/{{order_id:uuid}}/{slug}",
        summary=services.EVENT_SUMMARIES[action].split(":")[0].replace("Order", "").strip() or action.value,
        description=f"Lifecycle action `{action.value}`. Refused with 409 and the allowed actions "
        "when the order's state does not allow it.",
        status_code=200,
        name=f"order-{slug}",
        operation_id=f"order_{action.value}",
        responses=problem_responses(400, 401, 403, 404, 409),
    )(handler)


# One endpoint per lifecycle action (holds have their own, above; the platform's own
# steps have none).
for _action in Action:
    if _action in (Action.PLACE_HOLD, Action.RELEASE_HOLD) or _action in PLATFORM_ACTIONS:
        continue
    setattr(OrderApiController, f"action_{_action.value}", _action_handler(_action))


class CatalogApiController(Controller):
    path = "/api/v1/catalog"
    tags = ["Catalog"]
    guards = [requires_actor]

    @get("/", summary="The tenant's SKUs", responses=problem_responses(400, 401, 404, 422))
    async def list_catalog(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[CatalogItemView]:
        tenant = services.resolve_tenant(actor, tenant_id)
        return [CatalogItemView.model_validate(i) for i in await catalog.list_catalog(db, actor, tenant)]

    @put(
        "/{sku:str}",
        summary="Create or update a SKU (set active=false to stop selling it)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def put_item(
        self,
        db: DB,
        actor: CurrentActor,
        sku: FromPath[str],
        data: JSONBody[CatalogItemIn],
        tenant_id: FromQuery[UUID | None] = None,
    ) -> CatalogItemView:
        tenant = services.resolve_tenant(actor, tenant_id)
        item = await catalog.upsert_catalog_item(db, actor, tenant, sku, data.name, data.active)
        return CatalogItemView.model_validate(item)


class VerificationPolicyController(Controller):
    path = "/api/v1/tenants/{tenant_id:uuid}/verification-policy"
    tags = ["Tenants"]
    guards = [requires_actor]

    @get("/", summary="How the tenant's orders are verified", responses=problem_responses(400, 401, 404))
    async def get_policy(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> VerificationPolicyView:
        policy = await catalog.get_verification_policy(db, actor, tenant_id)
        return VerificationPolicyView(
            auto_verify=policy.auto_verify,
            high_value_minor=policy.high_value_minor or {},
            duplicate_window_minutes=policy.duplicate_window_minutes,
        )

    @put(
        "/",
        summary="Change how the tenant's orders are verified",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def put_policy(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], data: JSONBody[VerificationPolicyIn]
    ) -> VerificationPolicyView:
        policy = VerificationPolicy(
            auto_verify=data.auto_verify,
            high_value_minor={k.upper(): v for k, v in data.high_value_minor.items()},
            duplicate_window_minutes=data.duplicate_window_minutes,
        )
        await catalog.set_verification_policy(db, actor, tenant_id, policy)
        return VerificationPolicyView(**data.model_dump())
