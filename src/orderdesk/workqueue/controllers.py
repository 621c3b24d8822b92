"""Console pages of the work queue: my queue, Get next, the item page, the team board, SLA policies.

Thin: each handler parses its form, calls one service and renders. Errors are
domain errors mapped by `web/errors.py` (htmx requests get a fragment that the
console script shows in the page's alert area).
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from orderdesk.console.controllers import ORDER_PANEL_CONTEXT, order_panel_data
from orderdesk.console.pages import field_id, form_text, go_to, is_htmx, is_lead, page
from orderdesk.core.errors import FieldError, NotFound, ValidationFailed
from orderdesk.portal import decisions as client_decisions
from orderdesk.tenants import services as tenants
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_staff
from orderdesk.workqueue import operations, services
from orderdesk.workqueue.policies import DEFAULT_STUCK_AFTER_HOURS, DEFAULT_TARGETS, PRIORITIES, WEEKDAYS
from orderdesk.workqueue.schemas import WorkItemCreate
from orderdesk.workqueue.states import (
    AGENT_OUTCOMES,
    WorkItemKind,
    WorkItemStatus,
    WorkOutcome,
    work_actions_for,
    work_role,
)

SNOOZE_CHOICES = ((15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day"))


def _uuid(value: str, field: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed([FieldError(field, "choose one from the list")]) from None


class WorkQueueConsoleController(Controller):
    path = "/console"
    guards = [requires_staff]
    include_in_schema = False

    # ------------------------------------------------------------ my queue

    async def _queue_page(
        self, db, actor, *, notice: str | None = None, errors=None, status_code=200
    ) -> Template:
        return page(
            "workqueue/queue.html",
            actor,
            status_code=status_code,
            mine=await services.list_my_work_items(db, actor),
            counts=await services.queue_counts(db, actor),
            tenants=await tenants.list_tenants(db, actor),
            kinds=list(WorkItemKind),
            notices=await services.list_my_notifications(db, actor),
            notice=notice,
            errors=errors or [],
        )

    @get("/queue")
    async def queue(
        self, db: DB, actor: CurrentActor, done: FromQuery[int] = 0, moved: FromQuery[str] = ""
    ) -> Template:
        notice = None
        if done:
            notice = "Item done. Press Get next (g) for the next one."
        elif moved in ("snoozed", "handed_back", "waiting", "asked_client"):
            notice = {
                "snoozed": "Item snoozed; it comes back to the queue when the time is up.",
                "handed_back": "Item handed back to the queue.",
                "waiting": "Item parked; its SLA clock is paused until the answer comes.",
                "asked_client": "Question sent to the client portal; the item comes back with the answer.",
            }[moved]
        return await self._queue_page(db, actor, notice=notice)

    @post("/queue/next")
    async def get_next(self, request: Request, db: DB, actor: CurrentActor) -> Response | Template:
        return await self._next(request, db, actor)

    async def _next(self, request: Request, db, actor) -> Response | Template:
        item = await services.claim_next_work_item(db, actor)
        if item is None:
            if is_htmx(request):
                return page("workqueue/_nothing.html", actor)
            return await self._queue_page(db, actor, notice="Nothing is waiting for you right now.")
        return go_to(request, f"/console/work/{item.id}")

    @post("/queue/items")
    async def create_item(self, request: Request, db: DB, actor: CurrentActor) -> Response | Template:
        form = await request.form()
        number = form_text(form, "order_number")
        try:
            data = WorkItemCreate(
                tenant_id=_uuid(form_text(form, "tenant_id"), "tenant_id"),
                kind=WorkItemKind(form_text(form, "kind") or "order_entry"),
                title=form_text(form, "title") or "Untitled",
                detail=form_text(form, "detail") or None,
                order_number=int(number.lstrip("#")) if number.lstrip("#").isdigit() else None,
                priority=form_text(form, "priority") or None,
            )
        except ValueError as exc:
            errors = [FieldError("item", str(exc).splitlines()[0])]
            return await self._queue_page(db, actor, errors=errors, status_code=422)
        item = await services.create_work_item(db, actor, data)
        return go_to(request, f"/console/work/{item.id}")

    # ------------------------------------------------------------ the item page

    async def _item_context(self, db, actor, item_id: UUID) -> dict:
        item = await services.get_work_item(db, actor, item_id)
        panel: dict = {"order": None, "events": [], "shipments": [], **ORDER_PANEL_CONTEXT}
        related = []
        if item.order_id:
            panel = await order_panel_data(db, actor, item.order_id)
            related = [
                i for i in await services.list_order_work_items(db, actor, item.order_id) if i.id != item.id
            ]
        agents = await services.assignable_agents(db, actor, item.tenant_id) if is_lead(actor) else []
        holds_item = item.status == WorkItemStatus.CLAIMED and item.claimed_by == actor.id
        role = work_role(is_lead=is_lead(actor), holds_item=holds_item)
        return {
            "item": item,
            # The buttons come from the state table, so the page offers exactly what would be accepted.
            "work_actions": [a.value for a in work_actions_for(WorkItemStatus(item.status), role)],
            **panel,
            "related": related,
            "agents": agents,
            "outcomes": list(AGENT_OUTCOMES),
            "snooze_choices": SNOOZE_CHOICES,
            "client_decisions": await client_decisions.list_for_item(db, actor, item_id),
        }

    @get("/work/{item_id:uuid}")
    async def item_page(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> Template:
        return page("workqueue/item.html", actor, **await self._item_context(db, actor, item_id))

    @get("/work/{item_id:uuid}/status")
    async def item_status(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> Template:
        return page("workqueue/_item_status.html", actor, **await self._item_context(db, actor, item_id))

    @post("/work/{item_id:uuid}/lease")
    async def renew(self, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> Template:
        item = await services.renew_lease(db, actor, item_id)
        return page("workqueue/_lease.html", actor, item=item)

    async def _after_change(
        self, request: Request, db, actor, item_id: UUID, notice: str
    ) -> Response | Template:
        if is_htmx(request):
            context = await self._item_context(db, actor, item_id)
            return page("workqueue/_item_status.html", actor, notice=notice, **context)
        return go_to(request, f"/console/work/{item_id}")

    @post("/work/{item_id:uuid}/done")
    async def done(self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> Response:
        form = await request.form()
        try:
            outcome = WorkOutcome(form_text(form, "outcome") or "resolved")
        except ValueError:
            raise ValidationFailed([FieldError("outcome", "choose an outcome from the list")]) from None
        await services.complete_work_item(db, actor, item_id, outcome, form_text(form, "note") or None)
        if form_text(form, "then") == "next":
            return await self._next(request, db, actor)
        return go_to(request, "/console/queue?done=1")

    @post("/work/{item_id:uuid}/snooze")
    async def snooze(
        self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]
    ) -> Response:
        form = await request.form()
        minutes = form_text(form, "minutes") or "60"
        if not minutes.isdigit():
            raise ValidationFailed([FieldError("minutes", "choose how long to snooze")])
        until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=int(minutes))
        await services.snooze_work_item(db, actor, item_id, until)
        return go_to(request, "/console/queue?moved=snoozed")

    @post("/work/{item_id:uuid}/hand-back")
    async def hand_back(
        self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]
    ) -> Response:
        await services.hand_back_work_item(db, actor, item_id)
        return go_to(request, "/console/queue?moved=handed_back")

    @post("/work/{item_id:uuid}/wait")
    async def wait(self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]) -> Response:
        form = await request.form()
        await services.wait_on(db, actor, item_id, form_text(form, "party"))
        return go_to(request, "/console/queue?moved=waiting")

    @post("/work/{item_id:uuid}/ask-client")
    async def ask_client(
        self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]
    ) -> Response:
        """Put a question to the client in the portal; the item waits on their answer."""
        form = await request.form()
        await client_decisions.ask_client(db, actor, item_id, form_text(form, "question"))
        return go_to(request, "/console/queue?moved=asked_client")

    @post("/work/{item_id:uuid}/resume")
    async def resume(
        self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]
    ) -> Response | Template:
        await services.resume_work_item(db, actor, item_id)
        return await self._after_change(
            request, db, actor, item_id, "Back in the queue; the SLA clock runs again."
        )

    @post("/work/{item_id:uuid}/reassign")
    async def reassign(
        self, request: Request, db: DB, actor: CurrentActor, item_id: FromPath[UUID]
    ) -> Response | Template:
        form = await request.form()
        raw = form_text(form, "agent_id")
        agent_id = _uuid(raw, "agent_id") if raw else None
        item = await services.reassign_work_item(db, actor, item_id, agent_id)
        return await self._after_change(request, db, actor, item_id, f"Now with {item.claimed_by_name}.")

    # ------------------------------------------------------------ the team board

    @get("/lead")
    async def lead(self, db: DB, actor: CurrentActor) -> Template:
        board = await services.lead_board(db, actor)
        return page(
            "workqueue/lead.html", actor, board=board, notices=await services.list_my_notifications(db, actor)
        )

    @get("/lead/board")
    async def lead_board(self, db: DB, actor: CurrentActor) -> Template:
        board = await services.lead_board(db, actor)
        return page(
            "workqueue/_board.html",
            actor,
            board=board,
            notices=await services.list_my_notifications(db, actor),
        )

    # ------------------------------------------------------------ SLA notices

    @post("/notifications/{notification_id:uuid}/read")
    async def notification_read(
        self, request: Request, db: DB, actor: CurrentActor, notification_id: FromPath[UUID]
    ) -> Response:
        form = await request.form()
        await services.mark_notification_read(db, actor, notification_id)
        back = form_text(form, "back")
        return go_to(request, back if back in ("/console/queue", "/console/lead") else "/console/queue")

    # ------------------------------------------------------------ the operations view

    @get("/operations")
    async def operations(self, db: DB, actor: CurrentActor) -> Template:
        return page("workqueue/operations.html", actor, ops=await operations.operations_view(db, actor))

    @get("/operations/board")
    async def operations_board(self, db: DB, actor: CurrentActor) -> Template:
        return page("workqueue/_operations.html", actor, ops=await operations.operations_view(db, actor))

    # ------------------------------------------------------------ SLA policy editor

    async def _sla_page(
        self, db, actor, tenant_id: UUID, *, document=None, errors=None, notice=None, status_code=200
    ):
        tenant = await tenants.get_tenant(db, actor, tenant_id)
        if document is None:
            document = (await services.get_sla_policy_to_edit(db, actor, tenant_id)).document()
        return page(
            "workqueue/sla.html",
            actor,
            status_code=status_code,
            tenant=tenant,
            doc=document,
            errors={e.field: e.message for e in errors or []},
            error_list=errors or [],
            notice=notice,
            weekdays=WEEKDAYS,
            priorities=PRIORITIES,
            stuck_statuses=list(DEFAULT_STUCK_AFTER_HOURS),
            kinds=[k.value for k in DEFAULT_TARGETS],
            field_id=field_id,
        )

    @get("/sla/{tenant_id:uuid}")
    async def sla(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> Template:
        return await self._sla_page(db, actor, tenant_id)

    @post("/sla/{tenant_id:uuid}")
    async def save_sla(
        self, request: Request, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        document = _policy_document(form)
        if tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        try:
            _, changed = await services.set_sla_policy(db, actor, tenant_id, document)
        except ValidationFailed as exc:
            return await self._sla_page(
                db, actor, tenant_id, document=document, errors=exc.errors, status_code=422
            )
        return await self._sla_page(
            db, actor, tenant_id, notice=f"Saved. Due times of {changed} active item(s) were recomputed."
        )


def _policy_document(form) -> dict:
    """The editor's fields as a policy document; numbers that are not numbers stay text to be refused."""

    def number(name: str):
        raw = form_text(form, name)
        return int(raw) if raw.isdigit() else raw

    return {
        "time_zone": form_text(form, "time_zone"),
        "business_hours": {
            day: [w.strip() for w in form_text(form, f"hours.{day}").split(",") if w.strip()]
            for day in WEEKDAYS
        },
        "holidays": [
            h.strip() for h in form_text(form, "holidays").replace(",", "\n").splitlines() if h.strip()
        ],
        # An empty target keeps the default for that kind and priority.
        "targets": {
            kind.value: {
                p: number(f"targets.{kind.value}.{p}")
                for p in PRIORITIES
                if form_text(form, f"targets.{kind.value}.{p}")
            }
            for kind in WorkItemKind
        },
        "stuck_after_hours": {
            status: number(f"stuck.{status}")
            for status in DEFAULT_STUCK_AFTER_HOURS
            if form_text(form, f"stuck.{status}")
        },
        **({"at_risk_percent": number("at_risk_percent")} if form_text(form, "at_risk_percent") else {}),
        **({"client_tier": number("client_tier")} if form_text(form, "client_tier") else {}),
    }
