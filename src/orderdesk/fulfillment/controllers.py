"""The fulfillment API: shipments, tracking events, returns, the tenant's fulfillment policy."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, get, patch, post, put
from litestar.params import FromPath, JSONBody

from orderdesk.fulfillment import policy as policies
from orderdesk.fulfillment import returns, services
from orderdesk.fulfillment.schemas import (
    DecisionIn,
    FulfillmentPolicyIn,
    FulfillmentPolicyView,
    ReceiveIn,
    RefundIn,
    RejectionIn,
    ReturnIn,
    ReturnView,
    ShipmentIn,
    ShipmentPatch,
    ShipmentView,
    TrackingEventIn,
    TrackingResult,
)
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses


class OrderFulfillmentController(Controller):
    path = "/api/v1/orders/{order_id:uuid}"
    tags = ["Fulfillment"]
    guards = [requires_actor]

    @get(
        "/shipments",
        summary="The order's shipments, with tracking and exceptions",
        responses=problem_responses(400, 401, 404),
    )
    async def list_shipments(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]
    ) -> list[ShipmentView]:
        return await services.list_shipments(db, actor, order_id)

    @post(
        "/shipments",
        summary="Record a shipment leaving one warehouse",
        description="Consumes the units reserved there. 201 when recorded, 200 when a shipment with the "
        "same `external_ref` already exists (returned as it is).",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def create_shipment(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[ShipmentIn]
    ) -> Response[ShipmentView]:
        result = await services.create_shipment(db, actor, order_id, data)
        return Response(result.shipment, status_code=201 if result.created else 200)

    @get("/returns", summary="The order's returns", responses=problem_responses(400, 401, 404))
    async def list_returns(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> list[ReturnView]:
        return await returns.list_returns(db, actor, order_id)

    @post(
        "/returns",
        summary="Request a return (within the tenant's return window)",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def request_return(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[ReturnIn]
    ) -> ReturnView:
        return await returns.request_return(db, actor, order_id, data)


class ShipmentController(Controller):
    path = "/api/v1/shipments/{shipment_id:uuid}"
    tags = ["Fulfillment"]
    guards = [requires_actor]

    @get("/", summary="One shipment with its tracking events", responses=problem_responses(400, 401, 404))
    async def get_shipment(self, db: DB, actor: CurrentActor, shipment_id: FromPath[UUID]) -> ShipmentView:
        return await services.get_shipment(db, actor, shipment_id)

    @patch(
        "/",
        summary="Correct carrier, service, tracking number or URL",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def update_shipment(
        self, db: DB, actor: CurrentActor, shipment_id: FromPath[UUID], data: JSONBody[ShipmentPatch]
    ) -> ShipmentView:
        return await services.update_shipment(db, actor, shipment_id, data)

    @post(
        "/tracking-events",
        summary="Report a tracking event (idempotent by event_id)",
        description="201 when recorded; 200 with `duplicate: true` when this event id was already recorded.",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def record_tracking_event(
        self, db: DB, actor: CurrentActor, shipment_id: FromPath[UUID], data: JSONBody[TrackingEventIn]
    ) -> Response[TrackingResult]:
        result = await services.record_tracking_event(db, actor, shipment_id, data)
        return Response(result, status_code=200 if result.duplicate else 201)

    @post(
        "/attention/clear",
        summary="Mark a flagged shipment as dealt with (staff)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def clear_attention(
        self,
        db: DB,
        actor: CurrentActor,
        shipment_id: FromPath[UUID],
        data: JSONBody[DecisionIn | None] = None,
    ) -> ShipmentView:
        return await services.clear_attention(db, actor, shipment_id, data.note if data else None)


class ReturnController(Controller):
    path = "/api/v1/returns/{return_id:uuid}"
    tags = ["Fulfillment"]
    guards = [requires_actor]

    @get("/", summary="One return", responses=problem_responses(400, 401, 404))
    async def get_return(self, db: DB, actor: CurrentActor, return_id: FromPath[UUID]) -> ReturnView:
        return await returns.get_return(db, actor, return_id)

    @post(
        "/approve",
        summary="Approve a requested return",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def approve(
        self, db: DB, actor: CurrentActor, return_id: FromPath[UUID], data: JSONBody[DecisionIn | None] = None
    ) -> ReturnView:
        return await returns.approve_return(db, actor, return_id, data.note if data else None)

    @post(
        "/reject",
        summary="Reject a return, with a reason",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def reject(
        self, db: DB, actor: CurrentActor, return_id: FromPath[UUID], data: JSONBody[RejectionIn]
    ) -> ReturnView:
        return await returns.reject_return(db, actor, return_id, data.reason)

    @post(
        "/receive",
        summary="The goods are back: inspected, restocked or not",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def receive(
        self, db: DB, actor: CurrentActor, return_id: FromPath[UUID], data: JSONBody[ReceiveIn]
    ) -> ReturnView:
        return await returns.receive_return(db, actor, return_id, data)

    @post(
        "/refund",
        summary="Record the refund (never more than was paid)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def refund(
        self, db: DB, actor: CurrentActor, return_id: FromPath[UUID], data: JSONBody[RefundIn]
    ) -> ReturnView:
        return await returns.refund_return(db, actor, return_id, data.amount_minor, data.note)


class FulfillmentPolicyController(Controller):
    path = "/api/v1/tenants/{tenant_id:uuid}/fulfillment-policy"
    tags = ["Tenants"]
    guards = [requires_actor]

    @get(
        "/",
        summary="Stuck-shipment threshold, return window, when invoices are issued",
        responses=problem_responses(400, 401, 404),
    )
    async def get_policy(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> FulfillmentPolicyView:
        policy = await policies.get_policy(db, actor, tenant_id)
        return FulfillmentPolicyView(**policies.asdict(policy))

    @put(
        "/",
        summary="Change the fulfillment policy (administrators)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def put_policy(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], data: JSONBody[FulfillmentPolicyIn]
    ) -> FulfillmentPolicyView:
        policy = await policies.set_policy(
            db, actor, tenant_id, policies.FulfillmentPolicy(**data.model_dump())
        )
        return FulfillmentPolicyView(**policies.asdict(policy))
