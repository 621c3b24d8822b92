"""Console pages around orders for agents: the order page and its actions, manual entry, search.

Order changes go through `orders.services` exactly as the API's do; these
handlers only turn form fields into calls and answers into page fragments.
"""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from orderdesk.console import orders_form
from orderdesk.console.pages import field_id, form_text, go_to, page
from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.fulfillment import services as fulfillment
from orderdesk.orders import intake
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel, CheckResolution, PaymentStatus, Priority
from orderdesk.orders.states import Action, HoldReason
from orderdesk.tenants import services as tenants
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_staff
from orderdesk.workqueue import services as work

# Actions with a button of their own on the order panel (holds have their own controls).
BUTTON_ACTIONS = tuple(a.value for a in Action if a not in (Action.PLACE_HOLD, Action.RELEASE_HOLD))
# The buttons an agent needs most are drawn as primary.
PRIMARY_ACTIONS = {"verify", "release_hold"}
ACTION_NOTICES = {
    **orders.EVENT_SUMMARIES,
    Action.PLACE_HOLD: "on hold",
    Action.RELEASE_HOLD: "hold released",
}
# What `console/_order_panel.html` needs besides the order, wherever it is included.
ORDER_PANEL_CONTEXT = {
    "hold_reasons": list(HoldReason),
    "button_actions": BUTTON_ACTIONS,
    "primary_actions": PRIMARY_ACTIONS,
}


async def order_panel_data(db, actor, order_id: UUID) -> dict:
    """Everything `console/_order_panel.html` shows: the order, its timeline and shipments.

    Raises NotFound (also for other tenants' orders).
    """
    return {
        "order": await orders.get_order(db, actor, order_id),
        "events": await orders.list_events(db, actor, order_id),
        "shipments": await fulfillment.list_shipments(db, actor, order_id),
        **ORDER_PANEL_CONTEXT,
    }


async def _order_panel(db, actor, order_id: UUID, *, notice: str | None = None) -> Template:
    return page(
        "console/_order_panel.html", actor, notice=notice, **await order_panel_data(db, actor, order_id)
    )


class ConsoleOrderController(Controller):
    path = "/console"
    guards = [requires_staff]
    include_in_schema = False

    # ------------------------------------------------------------ one order

    @get("/orders/{order_id:uuid}")
    async def order_page(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> Template:
        data = await order_panel_data(db, actor, order_id)
        return page(
            "console/order.html",
            actor,
            items=await work.list_order_work_items(db, actor, order_id),
            tenant=await tenants.get_tenant(db, actor, data["order"].tenant_id),
            **data,
        )

    @get("/orders/{order_id:uuid}/panel")
    async def order_panel(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> Template:
        return await _order_panel(db, actor, order_id)

    @post("/orders/{order_id:uuid}/actions/{action:str}")
    async def order_action(
        self, request: Request, db: DB, actor: CurrentActor, order_id: FromPath[UUID], action: FromPath[str]
    ) -> Template:
        try:
            chosen = Action(action.replace("-", "_"))
        except ValueError:
            await orders.get_order(db, actor, order_id)  # a foreign order answers 404 first
            raise ValidationFailed([FieldError("action", f"{action!r} is not an order action")]) from None
        form = await request.form()
        reason = form_text(form, "reason")
        hold_reason = None
        if chosen in (Action.PLACE_HOLD, Action.RELEASE_HOLD):
            try:
                hold_reason = HoldReason(reason)
            except ValueError:
                await orders.get_order(db, actor, order_id)
                raise ValidationFailed([FieldError("reason", "choose a hold reason")]) from None
        view = await orders.perform_action(
            db, actor, order_id, chosen, note=form_text(form, "note") or None, hold_reason=hold_reason
        )
        response = await _order_panel(
            db,
            actor,
            order_id,
            notice=f"Order #{view.number}: {ACTION_NOTICES.get(chosen, chosen.value.replace('_', ' '))}.",
        )
        # The item page refreshes its own status box (the cause may be settled now).
        response.headers["HX-Trigger"] = "order-changed"
        return response

    @post("/orders/{order_id:uuid}/checks/{check:str}")
    async def decide_check(
        self, request: Request, db: DB, actor: CurrentActor, order_id: FromPath[UUID], check: FromPath[str]
    ) -> Template:
        form = await request.form()
        try:
            resolution = CheckResolution(form_text(form, "resolution"))
        except ValueError:
            await orders.get_order(db, actor, order_id)
            raise ValidationFailed([FieldError("resolution", "must be confirmed or overridden")]) from None
        await orders.decide_check(db, actor, order_id, check, resolution, form_text(form, "note") or None)
        verb = "overridden" if resolution is CheckResolution.OVERRIDDEN else "confirmed as a problem"
        response = await _order_panel(db, actor, order_id, notice=f"Check {check.replace('_', ' ')} {verb}.")
        response.headers["HX-Trigger"] = "order-changed"
        return response

    # ------------------------------------------------------------ manual entry

    async def _entry_page(self, db, actor, *, values=None, errors=None, status_code=200) -> Template:
        values = values or {}
        lines = max(orders_form.DEFAULT_LINES, len(orders_form.line_indexes(values)) if values else 0)
        indexes = orders_form.line_indexes(values) if values else []
        return page(
            "console/order_new.html",
            actor,
            status_code=status_code,
            tenants=await tenants.list_tenants(db, actor),
            values=values,
            errors={e.field: e.message for e in errors or []},
            error_list=errors or [],
            line_indexes=indexes if len(indexes) >= lines else list(range(lines)),
            payment_statuses=list(PaymentStatus),
            priorities=list(Priority),
            field_id=field_id,
        )

    @get("/orders/new")
    async def new_order(self, db: DB, actor: CurrentActor) -> Template:
        return await self._entry_page(db, actor, values={"currency": "EUR"})

    @get("/orders/new/line")
    async def new_line(self, actor: CurrentActor, index: FromQuery[int] = 0) -> Template:
        return page(
            "console/_order_line.html",
            actor,
            index=min(max(index, 0), orders_form.MAX_FORM_LINES - 1),
            values={},
            errors={},
            field_id=field_id,
        )

    @post("/orders/new/validate")
    async def validate_order(self, request: Request, actor: CurrentActor) -> Template:
        """Inline validation as the agent types: intake's rules, errors for the fields they touched."""
        form = await request.form()
        touched = {t for t in form_text(form, "_touched").split(",") if t}
        order, errors = orders_form.build_order(form, lenient=True)
        if order is not None:
            try:
                intake.clean_order(order)
            except ValidationFailed as exc:
                found = {e.field for e in errors}
                remapped = orders_form.remap(exc.errors, orders_form.non_empty_line_indexes(form))
                errors += [e for e in remapped if e.field not in found]
        if form_text(form, "_all") != "1":
            errors = [e for e in errors if e.field in touched]
        names = set(orders_form.values(form)) | {"lines[0].sku", "tenant_id"}
        return page(
            "console/_order_errors.html",
            actor,
            errors={e.field: e.message for e in errors},
            names=sorted(names),
            field_id=field_id,
        )

    @post("/orders/new")
    async def create_order(self, request: Request, db: DB, actor: CurrentActor) -> Response | Template:
        form = await request.form()
        values = orders_form.values(form)
        order, errors = orders_form.build_order(form)
        if order is None:
            return await self._entry_page(db, actor, values=values, errors=errors, status_code=422)
        try:
            result = await orders.capture_order(db, actor, order, channel=Channel.AGENT)
        except ValidationFailed as exc:
            errors = orders_form.remap(exc.errors, orders_form.non_empty_line_indexes(form))
            return await self._entry_page(db, actor, values=values, errors=errors, status_code=422)
        return go_to(request, f"/console/orders/{result.body['id']}?created=1")

    # ------------------------------------------------------------ search

    @get("/search")
    async def search(self, db: DB, actor: CurrentActor, q: FromQuery[str] = "") -> Template:
        results = None
        if q.strip():
            results = (
                await orders.list_orders(db, actor, orders.OrderFilters(text=q.strip()[:100], limit=50))
            ).items
        names = {t.id: t.name for t in await tenants.list_tenants(db, actor)}
        return page("console/search.html", actor, q=q, results=results, tenant_names=names)
