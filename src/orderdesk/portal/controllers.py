"""The client portal: client users see their own tenant, and only it.

Handlers parse the request, call one service and render. Every page carries the
tenant's branding (`_render`). Forms post with the session's CSRF token like the
console; htmx swaps the order list, the decision cards and the delivery log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template
from pydantic import ValidationError as PydanticValidationError

from orderdesk.accounts import services as accounts
from orderdesk.accounts.actors import Actor
from orderdesk.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from orderdesk.integrations import endpoints as webhooks
from orderdesk.integrations.controllers import _delivery_view
from orderdesk.integrations.outbox import EVENT_TYPES
from orderdesk.integrations.schemas import EndpointCreate, EndpointUpdate
from orderdesk.orders.models import Channel
from orderdesk.orders.states import OrderStatus
from orderdesk.portal import charts, decisions, inbound, reports
from orderdesk.portal import orders as portal_orders
from orderdesk.portal import users as portal_users
from orderdesk.tenants import branding as brand
from orderdesk.tenants import services as tenants
from orderdesk.web.deps import DB, AppSettings, CurrentActor
from orderdesk.web.guards import requires_client, requires_client_admin, requires_staff_admin

ROTATION_OVERLAP = dt.timedelta(hours=24)


async def _render(
    db, actor: Actor, template: str, section: str, *, status_code: int = 200, **context: Any
) -> Template:
    look = await brand.get_branding(db, actor.single_tenant_id)
    return Template(
        template,
        context={
            "actor": actor,
            "brand": look,
            "section": section,
            "is_client_admin": actor.client_role is not None and actor.client_role.value == "admin",
            **context,
        },
        status_code=status_code,
    )


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _order_query(request: Request) -> portal_orders.PortalOrderQuery:
    q = request.query_params
    return portal_orders.PortalOrderQuery(
        status=q.get("status", ""),
        channel=q.get("channel", ""),
        tag=q.get("tag", ""),
        date_from=q.get("from", ""),
        date_to=q.get("to", ""),
        q=q.get("q", ""),
        cursor=q.get("cursor", ""),
    )


def _pydantic_errors(exc: PydanticValidationError) -> list[FieldError]:
    return [FieldError(".".join(str(p) for p in e["loc"]) or "form", e["msg"]) for e in exc.errors()]


class PortalController(Controller):
    """Pages every client user may see: home, orders, decisions, reports."""

    path = "/portal"
    guards = [requires_client]
    include_in_schema = False

    @get("/")
    async def home(self, db: DB, actor: CurrentActor) -> Template:
        waiting = await decisions.list_waiting(db, actor)
        status = await reports.build_report(db, actor, "status", 4)
        recent = await portal_orders.list_portal_orders(db, actor, portal_orders.PortalOrderQuery())
        return await _render(
            db,
            actor,
            "portal/home.html",
            "home",
            waiting=waiting,
            status_rows=status.rows,
            recent=recent.items[:8],
        )

    # ------------------------------------------------------------ orders

    @get("/orders")
    async def orders(self, request: Request, db: DB, actor: CurrentActor) -> Template:
        query = _order_query(request)
        errors: list[FieldError] = []
        try:
            page = await portal_orders.list_portal_orders(db, actor, query)
        except ValidationFailed as exc:
            errors, page = exc.errors, None
        partial = _is_htmx(request) and request.headers.get("hx-target") == "order-results"
        return await _render(
            db,
            actor,
            "portal/_order_results.html" if partial else "portal/orders.html",
            "orders",
            status_code=422 if errors else 200,
            query=query,
            page=page,
            errors=errors,
            statuses=[s.value for s in OrderStatus],
            channels=[c.value for c in Channel],
            export_href="/portal/orders.csv?" + urlencode(query.as_params(cursor="")),
            next_href=(
                "/portal/orders?" + urlencode(query.as_params(cursor=page.next_cursor))
                if page and page.next_cursor
                else None
            ),
        )

    @get("/orders.csv")
    async def export(self, request: Request, db: DB, actor: CurrentActor) -> Stream:
        rows = await portal_orders.export_orders_csv(db, actor, _order_query(request))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
        return Stream(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="orders-{stamp}.csv"'},
        )

    @get("/orders/{order_id:uuid}")
    async def order(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> Template:
        story = await portal_orders.order_story(db, actor, order_id)
        return await _render(db, actor, "portal/order.html", "orders", story=story, order=story.order)

    # ------------------------------------------------------------ decisions

    @get("/decisions")
    async def decisions_page(self, db: DB, actor: CurrentActor) -> Template:
        return await _render(
            db,
            actor,
            "portal/decisions.html",
            "decisions",
            waiting=await decisions.list_waiting(db, actor),
            decided=await decisions.list_decided(db, actor),
        )

    @post("/decisions/{decision_id:uuid}", guards=[requires_client_admin])
    async def decide(
        self, request: Request, db: DB, actor: CurrentActor, decision_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        errors: list[FieldError] = []
        try:
            decision = await decisions.decide(
                db, actor, decision_id, str(form.get("verdict", "")), str(form.get("comment", ""))
            )
        except (ValidationFailed, Conflict) as exc:
            errors = exc.errors if isinstance(exc, ValidationFailed) else [FieldError("decision", exc.detail)]
            decision = await decisions.get_decision(db, actor, decision_id)
        status_code = 422 if errors else 200
        if not _is_htmx(request):
            # Without script the form posted the whole page: answer with the whole page.
            return await _render(
                db,
                actor,
                "portal/decisions.html",
                "decisions",
                status_code=status_code,
                waiting=await decisions.list_waiting(db, actor),
                decided=await decisions.list_decided(db, actor),
                errors=errors,
                notice=None
                if errors
                else f"You {decision.verdict} it; the agents have it back in their queue.",
            )
        return await _render(
            db,
            actor,
            "portal/_decision.html",
            "decisions",
            status_code=status_code,
            d=decision,
            errors=errors,
            comment=str(form.get("comment", "")),
        )

    # ------------------------------------------------------------ reports

    @get("/reports")
    async def reports_page(self, request: Request, db: DB, actor: CurrentActor) -> Template:
        weeks = reports.check_weeks(request.query_params.get("weeks"))
        built = {name: await reports.build_report(db, actor, name, weeks) for name in reports.REPORTS}
        return await _render(
            db, actor, "portal/reports.html", "reports", weeks=weeks, reports=built, charts=_charts(built)
        )

    @get("/reports/{name:str}/data.csv")
    async def report_csv(
        self, request: Request, db: DB, actor: CurrentActor, name: FromPath[str]
    ) -> Response:
        weeks = reports.check_weeks(request.query_params.get("weeks"))
        report = await reports.build_report(db, actor, name, weeks)
        return Response(
            content=report.csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.name}-{weeks}w.csv"'},
        )

    # ------------------------------------------------------------ users (everyone sees, admins act)

    @get("/users")
    async def users(self, db: DB, actor: CurrentActor) -> Template:
        return await self._users_page(db, actor)

    async def _users_page(self, db, actor: Actor, *, status_code: int = 200, **extra: Any) -> Template:
        pending = await portal_users.list_pending_invitations(db, actor) if _admin(actor) else []
        return await _render(
            db,
            actor,
            "portal/users.html",
            "users",
            status_code=status_code,
            people=await portal_users.list_users(db, actor),
            pending=pending,
            **extra,
        )

    @post("/users/invitations", guards=[requires_client_admin])
    async def invite(self, request: Request, db: DB, actor: CurrentActor) -> Template:
        form = await request.form()
        email, role = str(form.get("email", "")), str(form.get("role", "viewer"))
        try:
            issued = await portal_users.invite(db, actor, email, role)
        except (ValidationFailed, Conflict) as exc:
            errors = exc.errors if isinstance(exc, ValidationFailed) else [FieldError("email", exc.detail)]
            return await self._users_page(db, actor, status_code=422, errors=errors, form={"email": email})
        link = str(request.base_url).rstrip("/") + f"/portal/invitations/{issued.token}"
        return await self._users_page(
            db,
            actor,
            notice=f"Invitation for {issued.invitation.email} created. Send them this link; "
            "it works once and expires in 7 days. It is shown only now.",
            invitation_link=link,
        )

    @post("/users/invitations/{invitation_id:uuid}/revoke", guards=[requires_client_admin])
    async def revoke_invitation(self, db: DB, actor: CurrentActor, invitation_id: FromPath[UUID]) -> Template:
        await portal_users.revoke_invitation(db, actor, invitation_id)
        return await self._users_page(db, actor, notice="Invitation revoked: its link no longer works.")

    @post("/users/{user_id:uuid}/role", guards=[requires_client_admin])
    async def change_role(
        self, request: Request, db: DB, actor: CurrentActor, user_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        person = await portal_users.change_role(db, actor, user_id, str(form.get("role", "")))
        return await self._users_page(db, actor, notice=f"{person.display_name} is now {person.role}.")

    @post("/users/{user_id:uuid}/disable", guards=[requires_client_admin])
    async def disable(self, db: DB, actor: CurrentActor, user_id: FromPath[UUID]) -> Template:
        person = await portal_users.set_user_active(db, actor, user_id, False)
        return await self._users_page(db, actor, notice=f"{person.display_name} is disabled and signed out.")

    @post("/users/{user_id:uuid}/enable", guards=[requires_client_admin])
    async def enable(self, db: DB, actor: CurrentActor, user_id: FromPath[UUID]) -> Template:
        person = await portal_users.set_user_active(db, actor, user_id, True)
        return await self._users_page(db, actor, notice=f"{person.display_name} can sign in again.")


def _admin(actor: Actor) -> bool:
    return actor.client_role is not None and actor.client_role.value == "admin"


def _charts(built: dict[str, reports.Report]) -> dict[str, dict[str, str]]:
    """SVG and legend per report, from the same rows as the tables and CSV files."""
    out: dict[str, dict[str, str]] = {}
    sla = built["sla"].rows
    weeks = sorted({r[0] for r in sla})
    kinds = sorted({r[1] for r in sla})
    series = [
        charts.Series(
            kind.replace("_", " "),
            [next((r[4] for r in sla if r[0] == w and r[1] == kind), 0.0) for w in weeks],
        )
        for kind in kinds
    ]
    out["sla"] = {
        "svg": charts.bar_chart(
            "sla", "SLA attainment per week", [w[5:] for w in weeks], series, unit="%", max_value=100
        ),
        "legend": charts.legend(series),
    }
    handling = built["handling"].rows
    # Minutes read badly beyond two hours: then the chart speaks hours.
    in_hours = bool(handling) and max(float(r[3]) for r in handling) > 120
    scale, unit = (1 / 60, "h") if in_hours else (1.0, "min")
    series = [
        charts.Series("median", [float(r[2]) * scale for r in handling]),
        charts.Series("90th percentile", [float(r[3]) * scale for r in handling]),
    ]
    out["handling"] = {
        "svg": charts.bar_chart(
            "handling",
            "Handling time per kind",
            [r[0].replace("_", " ") for r in handling],
            series,
            unit=unit,
        ),
        "legend": charts.legend(series),
    }
    status = built["status"].rows
    series = [charts.Series("orders", [float(r[1]) for r in status])]
    out["status"] = {
        "svg": charts.bar_chart(
            "status", "Orders by status", [r[0].replace("_", " ") for r in status], series, whole=True
        ),
        "legend": "",
    }
    delivery = built["delivery"].rows
    series = [
        charts.Series("on time", [float(r[1]) for r in delivery]),
        charts.Series("late", [float(r[2]) for r in delivery]),
    ]
    out["delivery"] = {
        "svg": charts.bar_chart(
            "delivery",
            "Deliveries on time and late per week",
            [r[0][5:] for r in delivery],
            series,
            stacked=True,
            whole=True,
        ),
        "legend": charts.legend(series),
    }
    returns = built["returns"].rows
    series = [charts.Series("returns rate", [float(r[3]) for r in returns])]
    out["returns"] = {
        "svg": charts.bar_chart(
            "returns", "Returns rate per week", [r[0][5:] for r in returns], series, unit="%"
        ),
        "legend": "",
    }
    return out


class PortalSettingsController(Controller):
    """Client admins only: webhook endpoints, API keys, branding."""

    path = "/portal/settings"
    guards = [requires_client, requires_client_admin]
    include_in_schema = False

    async def _integrations(
        self, db, actor: Actor, settings, *, status_code: int = 200, **extra: Any
    ) -> Template:
        tenant_id = actor.single_tenant_id
        return await _render(
            db,
            actor,
            "portal/integrations.html",
            "integrations",
            status_code=status_code,
            endpoints=await webhooks.list_endpoints(db, actor, tenant_id),
            keys=await accounts.list_api_keys(db, actor, tenant_id),
            event_types=sorted(EVENT_TYPES),
            inbound=await inbound.inbound_details(db, actor, settings.inbound_email_domains),
            **{"form": {}, "errors": [], **extra},
        )

    @get("/integrations")
    async def integrations(self, db: DB, actor: CurrentActor, settings: AppSettings) -> Template:
        return await self._integrations(db, actor, settings)

    @post("/webhooks")
    async def create_endpoint(
        self, request: Request, db: DB, actor: CurrentActor, settings: AppSettings
    ) -> Template:
        data = _endpoint_form(await request.form())
        try:
            endpoint = await webhooks.create_endpoint(
                db,
                actor,
                actor.single_tenant_id,
                EndpointCreate(**data),
                allow_private=settings.webhooks_allow_private,
            )
        except ValidationFailed as exc:
            return await self._integrations(
                db, actor, settings, status_code=422, errors=exc.errors, form=data
            )
        except PydanticValidationError as exc:
            return await self._integrations(
                db, actor, settings, status_code=422, errors=_pydantic_errors(exc), form=data
            )
        return await self._integrations(
            db,
            actor,
            settings,
            notice=f"Endpoint {endpoint.url} added. Copy its signing secret into the receiving system now.",
            secret=endpoint.secret,
        )

    async def _endpoint_page(
        self, db, actor: Actor, endpoint_id: UUID, *, status_code: int = 200, **extra: Any
    ) -> Template:
        endpoint = await webhooks.get_endpoint(db, actor, endpoint_id)
        deliveries = await webhooks.list_deliveries(db, actor, endpoint_id=endpoint_id, limit=50)
        attempts = await webhooks.list_attempts(db, actor, endpoint_id=endpoint_id, limit=50)
        return await _render(
            db,
            actor,
            "portal/endpoint.html",
            "integrations",
            status_code=status_code,
            endpoint=endpoint,
            deliveries=[_delivery_view(d) for d in deliveries],
            attempts=attempts,
            event_types=sorted(EVENT_TYPES),
            **{"errors": [], "form": None, **extra},
        )

    @get("/webhooks/{endpoint_id:uuid}")
    async def endpoint(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> Template:
        return await self._endpoint_page(db, actor, endpoint_id)

    @get("/webhooks/{endpoint_id:uuid}/log")
    async def endpoint_log(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> Template:
        await webhooks.get_endpoint(db, actor, endpoint_id)
        deliveries = await webhooks.list_deliveries(db, actor, endpoint_id=endpoint_id, limit=50)
        attempts = await webhooks.list_attempts(db, actor, endpoint_id=endpoint_id, limit=50)
        return await _render(
            db,
            actor,
            "portal/_endpoint_log.html",
            "integrations",
            endpoint_id=endpoint_id,
            deliveries=[_delivery_view(d) for d in deliveries],
            attempts=attempts,
        )

    @post("/webhooks/{endpoint_id:uuid}")
    async def update_endpoint(
        self,
        request: Request,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        endpoint_id: FromPath[UUID],
    ) -> Template:
        form = await request.form()
        data = _endpoint_form(form)
        data["enabled"] = form.get("enabled") == "on"
        # Another tenant's endpoint is simply not there, whatever the form says.
        await webhooks.get_endpoint(db, actor, endpoint_id)
        try:
            await webhooks.update_endpoint(
                db, actor, endpoint_id, EndpointUpdate(**data), allow_private=settings.webhooks_allow_private
            )
        except ValidationFailed as exc:
            return await self._endpoint_page(
                db, actor, endpoint_id, status_code=422, errors=exc.errors, form=data
            )
        except PydanticValidationError as exc:
            errors = _pydantic_errors(exc)
            return await self._endpoint_page(
                db, actor, endpoint_id, status_code=422, errors=errors, form=data
            )
        return await self._endpoint_page(db, actor, endpoint_id, notice="Endpoint saved.")

    @post("/webhooks/{endpoint_id:uuid}/rotate")
    async def rotate(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> Template:
        endpoint = await webhooks.rotate_secret(db, actor, endpoint_id, ROTATION_OVERLAP)
        return await self._endpoint_page(
            db,
            actor,
            endpoint_id,
            notice="Secret rotated. The previous secret keeps signing for 24 hours, "
            "so update the receiving system within a day.",
            secret=endpoint.secret,
        )

    @post("/webhooks/{endpoint_id:uuid}/test")
    async def send_test(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> Template:
        await webhooks.send_test_event(db, actor, endpoint_id)
        return await self._endpoint_page(
            db, actor, endpoint_id, notice="Test event queued; it appears in the delivery log below."
        )

    @post("/webhooks/{endpoint_id:uuid}/replay-failed")
    async def replay_failed(
        self, request: Request, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]
    ) -> Template:
        given = str((await request.form()).get("since", "")).strip()
        tenant = await tenants.get_tenant(db, actor, actor.single_tenant_id)
        try:
            since = _moment_in(given, tenant.time_zone)
        except ValueError:
            error = FieldError("since", f"give a date and time such as 2026-11-26T09:00, not {given!r}")
            return await self._endpoint_page(db, actor, endpoint_id, status_code=422, errors=[error])
        count = await webhooks.replay_failed(db, actor, endpoint_id, since)
        return await self._endpoint_page(
            db,
            actor,
            endpoint_id,
            notice=f"{count} failed deliveries since {given.replace('T', ' ')} ({tenant.time_zone})"
            " queued again, each with its original webhook-id.",
        )

    @post("/webhooks/{endpoint_id:uuid}/delete")
    async def delete_endpoint(self, db: DB, actor: CurrentActor, endpoint_id: FromPath[UUID]) -> Redirect:
        await webhooks.delete_endpoint(db, actor, endpoint_id)
        return Redirect(path="/portal/settings/integrations", status_code=303)

    @post("/webhooks/deliveries/{delivery_id:uuid}/replay")
    async def replay(self, db: DB, actor: CurrentActor, delivery_id: FromPath[UUID]) -> Template:
        delivery = await webhooks.replay_delivery(db, actor, delivery_id)
        return await self._endpoint_page(
            db, actor, delivery.endpoint_id, notice="Delivery queued again, with the same webhook-id."
        )

    @post("/api-keys")
    async def create_key(
        self, request: Request, db: DB, actor: CurrentActor, settings: AppSettings
    ) -> Template:
        form = await request.form()
        name = str(form.get("name", ""))
        try:
            issued = await accounts.issue_api_key(db, actor, actor.single_tenant_id, name)
        except ValidationFailed as exc:
            return await self._integrations(
                db, actor, settings, status_code=422, errors=exc.errors, form={"key_name": name}
            )
        return await self._integrations(
            db,
            actor,
            settings,
            notice=f"API key “{issued.key.name}” created. Copy it now: it is shown only once.",
            new_key=issued.secret,
        )

    @post("/api-keys/{key_id:uuid}/revoke")
    async def revoke_key(
        self, db: DB, actor: CurrentActor, settings: AppSettings, key_id: FromPath[UUID]
    ) -> Template:
        key = await accounts.revoke_api_key(db, actor, key_id)
        return await self._integrations(db, actor, settings, notice=f"API key “{key.name}” revoked.")

    # ------------------------------------------------------------ branding

    async def _branding(self, db, actor: Actor, *, status_code: int = 200, **extra: Any) -> Template:
        return await _render(
            db,
            actor,
            "portal/branding.html",
            "branding",
            status_code=status_code,
            agent_display=await portal_orders.agent_display(db, actor),
            max_logo_kib=brand.MAX_LOGO_BYTES // 1024,
            **{"errors": [], **extra},
        )

    @get("/branding")
    async def branding(self, db: DB, actor: CurrentActor) -> Template:
        return await self._branding(db, actor)

    @post("/branding")
    async def save_branding(self, request: Request, db: DB, actor: CurrentActor) -> Template:
        form = await request.form()
        colour = str(form.get("accent_colour", ""))
        try:
            await brand.set_accent_colour(db, actor, actor.single_tenant_id, colour)
            await portal_orders.set_agent_display(
                db, actor, actor.single_tenant_id, str(form.get("agent_display", "name"))
            )
        except ValidationFailed as exc:
            return await self._branding(db, actor, status_code=422, errors=exc.errors, colour_input=colour)
        return await self._branding(db, actor, notice="Branding saved.")

    @post("/branding/logo")
    async def upload_logo(self, request: Request, db: DB, actor: CurrentActor) -> Template:
        form = await request.form()
        upload = form.get("logo")
        content = await upload.read() if hasattr(upload, "read") else b""
        declared = getattr(upload, "content_type", None)
        try:
            await brand.set_logo(db, actor, actor.single_tenant_id, content, declared)
        except ValidationFailed as exc:
            return await self._branding(db, actor, status_code=422, errors=exc.errors)
        return await self._branding(db, actor, notice="Logo uploaded.")

    @post("/branding/logo/remove")
    async def remove_logo(self, db: DB, actor: CurrentActor) -> Template:
        await brand.remove_logo(db, actor, actor.single_tenant_id)
        return await self._branding(db, actor, notice="Logo removed.")


def _endpoint_form(form) -> dict[str, Any]:
    return {
        "url": str(form.get("url", "")).strip(),
        "description": str(form.get("description", "")),
        "event_types": [str(v) for v in form.getall("event_types", [])],
        "ordered": form.get("ordered") == "on",
    }


class PortalInvitationController(Controller):
    """The invitation link's page: no session needed, the token is the credential."""

    path = "/portal/invitations"
    include_in_schema = False

    @get("/{token:str}")
    async def show(self, request: Request, db: DB, token: FromPath[str]) -> Template:
        return await self._page(request, db, token)

    async def _page(
        self, request: Request, db, token: str, *, status_code: int = 200, **extra: Any
    ) -> Template:
        try:
            preview = await portal_users.preview_invitation(db, token)
            problem = None
        except (Conflict, NotFound) as exc:
            preview, problem = None, exc.detail
            status_code = 404 if isinstance(exc, NotFound) else 410
        return Template(
            "portal/invitation.html",
            context={
                "actor": request.scope.get("user"),
                "preview": preview,
                "problem": problem,
                "token": token,
                **{"errors": [], "form": {}, **extra},
            },
            status_code=status_code,
        )

    @post("/{token:str}")
    async def accept(self, request: Request, db: DB, token: FromPath[str]) -> Template | Redirect:
        form = await request.form()
        name = str(form.get("display_name", ""))
        try:
            await portal_users.accept_invitation(db, token, name, str(form.get("password", "")))
        except ValidationFailed as exc:
            return await self._page(
                request, db, token, status_code=422, errors=exc.errors, form={"display_name": name}
            )
        except (Conflict, NotFound):
            # Spent, expired or unknown meanwhile: the page says which, as it would on a reload.
            return await self._page(request, db, token)
        return Redirect(path="/sign-in?reason=invited")


class ConsolePortalPreferencesController(Controller):
    """Operations admins choose, per client, whether the portal names agents or shows roles."""

    path = "/console/tenants"
    guards = [requires_staff_admin]
    include_in_schema = False

    @post("/{tenant_id:uuid}/portal-agent-display")
    async def agent_display(
        self, request: Request, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        await portal_orders.set_agent_display(db, actor, tenant_id, str(form.get("agent_display", "")))
        tenant = await tenants.get_tenant(db, actor, tenant_id)
        return Template(
            "tenants/console_tenant.html", context={"actor": actor, "tenant": tenant, "saved": True}
        )


class PortalBrandingAssetController(Controller):
    """The tenant's logo, public: the tracking page and emails show it to people without a session."""

    path = "/portal/branding"
    include_in_schema = False

    @get("/{tenant_id:uuid}/logo/{version:str}")
    async def logo(self, db: DB, tenant_id: FromPath[UUID], version: FromPath[str]) -> Response[bytes]:
        logo = await brand.get_logo(db, tenant_id)
        # The URL names the logo's hash: the current one may be cached for good, an old one not.
        current = logo.sha256.startswith(version) and len(version) >= 16
        return Response(
            content=logo.content,
            media_type=logo.content_type,
            headers={
                "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )


def _moment_in(given: str, time_zone: str) -> dt.datetime:
    """A form's date and time (`datetime-local`), read in the tenant's time zone. Raises ValueError."""
    moment = dt.datetime.fromisoformat(given)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment
