"""The work queue's JSON API: what the console's queue pages do, for staff tools and scripts.

Who may call it: operations staff only, signed in with their console session (the
cookie, plus the session's `X-CSRF-Token` on unsafe requests). API keys are a client
company's keys for its own systems, and client users belong to the portal: both are
refused with 403, since the queue is the operations company's internal work (who
holds what, SLA risk, agents' names). Each caller sees the tenants they are assigned
to; leads and administrators may also reassign, withdraw and change SLA policies.

Thin handlers: parse, call one service of `workqueue.services`, answer.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_staff
from orderdesk.web.openapi import problem_responses
from orderdesk.workqueue import services
from orderdesk.workqueue.schemas import (
    CompleteIn,
    QueueCount,
    ReassignIn,
    SlaPolicyIn,
    SlaPolicyView,
    SnoozeIn,
    WaitIn,
    WorkItemCreate,
    WorkItemPage,
    WorkItemView,
    WorkNotificationView,
)
from orderdesk.workqueue.states import WorkItemKind, WorkItemStatus, WorkOutcome

WHO = " Operations staff only (console session and CSRF token); API keys and client users get 403."


def _enums(raw: list[str] | None, kind, field: str) -> tuple:
    try:
        return tuple(kind(value) for value in raw or [])
    except ValueError:
        allowed = ", ".join(k.value for k in kind)
        raise ValidationFailed([FieldError(field, f"must be one of: {allowed}")]) from None


def _outcome(raw: str) -> WorkOutcome:
    try:
        return WorkOutcome(raw)
    except ValueError:
        allowed = ", ".join(o.value for o in WorkOutcome)
        raise ValidationFailed([FieldError("outcome", f"must be one of: {allowed}")]) from None


class WorkItemApiController(Controller):
    path = "/api/v1/work-items"
    tags = ["Work queue"]
    guards = [requires_staff]

    @get(
        "/",
        summary="List work items, newest first (keyset pagination)",
        description="Items of the caller's tenants, narrowed by the filters." + WHO,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def list_items(
        self,
        db: DB,
        actor: CurrentActor,
        tenant_id: FromQuery[UUID | None] = None,
        status: FromQuery[list[str] | None] = None,
        kind: FromQuery[list[str] | None] = None,
        mine: Annotated[bool, QueryParameter(description="Only the items the caller holds now")] = False,
        order_id: FromQuery[UUID | None] = None,
        at_risk: FromQuery[bool | None] = None,
        breached: FromQuery[bool | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> WorkItemPage:
        filters = services.WorkItemFilters(
            tenant_id=tenant_id,
            statuses=_enums(status, WorkItemStatus, "status"),
            kinds=_enums(kind, WorkItemKind, "kind"),
            claimed_by=actor.id if mine else None,
            order_id=order_id,
            at_risk=at_risk,
            breached=breached,
            limit=limit,
            cursor=cursor,
        )
        return await services.list_work_items(db, actor, filters)

    @post(
        "/",
        summary="Open a work item by hand",
        description="Optionally linked to an order of the same tenant by its number." + WHO,
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def create_item(self, db: DB, actor: CurrentActor, data: JSONBody[WorkItemCreate]) -> WorkItemView:
        return await services.create_work_item(db, actor, data)

    @get(
        "/counts",
        summary="What Get next can give the caller, per tenant and kind",
        description="Ready items with the caller's tenants and skills, with at-risk and breached counts."
        + WHO,
        responses=problem_responses(401, 403),
    )
    async def counts(self, db: DB, actor: CurrentActor) -> list[QueueCount]:
        return await services.queue_counts(db, actor)

    @post(
        "/next",
        summary="Get next: claim the most urgent item the caller may take",
        description=(
            "Claims with a 10-minute lease the most urgent open item of the caller's tenants and skills "
            "(documented priority: due time, order priority, value, client tier, age). One item at a "
            "time: a caller who still holds one gets it back with its lease renewed. Answers 204 when "
            "nothing is ready. Each item goes to exactly one agent, however many call at once." + WHO
        ),
        status_code=200,
        responses={
            204: ResponseSpec(data_container=None, description="Nothing is ready for the caller"),
            **problem_responses(401, 403, 409, 422),
        },
    )
    async def get_next(self, db: DB, actor: CurrentActor) -> Response[WorkItemView | None]:
        item = await services.claim_next_work_item(db, actor)
        if item is None:
            return Response(None, status_code=204)
        return Response(item)

    @get(
        "/{item_id:uuid}",
        summary="One work item",
        description="With its SLA state (due, at risk, breached) and who holds it." + WHO,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def get_item(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> WorkItemView:
        return await services.get_work_item(db, actor, item_id)

    @post(
        "/{item_id:uuid}/lease",
        summary="Renew the caller's lease on an item they hold",
        description="Another 10 minutes; 409 when the caller no longer holds it." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def renew_lease(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> WorkItemView:
        return await services.renew_lease(db, actor, item_id)

    @post(
        "/{item_id:uuid}/hand-back",
        summary="Hand a held item back to the queue",
        description="Anyone may take it next. 409 when the caller does not hold it." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def hand_back(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> WorkItemView:
        return await services.hand_back_work_item(db, actor, item_id)

    @post(
        "/{item_id:uuid}/snooze",
        summary="Snooze a held item until a time",
        description="Set aside (the SLA clock keeps running); it returns to the queue at `until`." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def snooze(
        self, db: DB, actor: CurrentActor, item_id: FromPath[UUID], data: JSONBody[SnoozeIn]
    ) -> WorkItemView:
        return await services.snooze_work_item(db, actor, item_id, data.until)

    @post(
        "/{item_id:uuid}/wait",
        summary="Park a held item waiting on the customer or the client",
        description="The SLA clock pauses until `resume`." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def wait(
        self, db: DB, actor: CurrentActor, item_id: FromPath[UUID], data: JSONBody[WaitIn]
    ) -> WorkItemView:
        return await services.wait_on(db, actor, item_id, data.party)

    @post(
        "/{item_id:uuid}/resume",
        summary="The awaited answer came: back to the queue",
        description="The SLA clock runs again." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def resume(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> WorkItemView:
        return await services.resume_work_item(db, actor, item_id)

    @post(
        "/{item_id:uuid}/complete",
        summary="Mark an item done with an outcome",
        description="By the agent holding it; leads may also withdraw an item (`withdrawn`)." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def complete(
        self, db: DB, actor: CurrentActor, item_id: FromPath[UUID], data: JSONBody[CompleteIn]
    ) -> WorkItemView:
        return await services.complete_work_item(db, actor, item_id, _outcome(data.outcome), data.note)

    @post(
        "/{item_id:uuid}/reassign",
        summary="Put an agent on an item (leads)",
        description="Open, claimed or snoozed items; the agent gets a one-hour lease." + WHO,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def reassign(
        self, db: DB, actor: CurrentActor, item_id: FromPath[UUID], data: JSONBody[ReassignIn]
    ) -> WorkItemView:
        return await services.reassign_work_item(db, actor, item_id, data.agent_id)


class WorkNotificationApiController(Controller):
    path = "/api/v1/work-notifications"
    tags = ["Work queue"]
    guards = [requires_staff]

    @get(
        "/",
        summary="The caller's SLA notices, newest first",
        description=(
            "At risk (an item the caller holds has less than the policy's share of its SLA left) and "
            "breached (an item the caller holds, or, for leads, any item of their clients)." + WHO
        ),
        responses=problem_responses(400, 401, 403),
    )
    async def list_notifications(
        self,
        db: DB,
        actor: CurrentActor,
        unread: Annotated[bool, QueryParameter(description="Only those not yet read")] = True,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[WorkNotificationView]:
        return await services.list_my_notifications(db, actor, unread_only=unread, limit=limit)

    @post(
        "/{notification_id:uuid}/read",
        summary="Mark one of the caller's notices read",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def mark_read(
        self, db: DB, actor: CurrentActor, notification_id: FromPath[UUID]
    ) -> WorkNotificationView:
        return await services.mark_notification_read(db, actor, notification_id)


def _policy_view(tenant_id: UUID, policy, recomputed: int | None = None) -> SlaPolicyView:
    return SlaPolicyView(tenant_id=tenant_id, recomputed_items=recomputed, **policy.document())


class SlaPolicyApiController(Controller):
    path = "/api/v1/tenants/{tenant_id:uuid}/sla-policy"
    tags = ["Work queue"]
    guards = [requires_staff]

    @get(
        "/",
        summary="A tenant's SLA policy (the defaults when none was set)",
        description=WHO.strip(),
        responses=problem_responses(400, 401, 403, 404),
    )
    async def get_policy(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> SlaPolicyView:
        return _policy_view(tenant_id, await services.get_sla_policy(db, actor, tenant_id))

    @put(
        "/",
        summary="Replace a tenant's SLA policy (leads and administrators)",
        description="Every active item's due time is recomputed in the same transaction." + WHO,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def put_policy(
        self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID], data: JSONBody[SlaPolicyIn]
    ) -> SlaPolicyView:
        policy, changed = await services.set_sla_policy(
            db, actor, tenant_id, data.model_dump(exclude_none=True)
        )
        return _policy_view(tenant_id, policy, changed)


ROUTE_HANDLERS = [WorkItemApiController, WorkNotificationApiController, SlaPolicyApiController]
