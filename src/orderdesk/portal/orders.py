"""The portal's view of orders: filtered lists, the CSV export and the full order timeline.

Lists and the export go through `orders.services.list_orders` (the same keyset
query as the API), scoped to the client's one tenant. The timeline gathers what
other features already expose per order (events, shipments, returns, webhook
deliveries, client decisions) into one chronological story.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import select

from orderdesk.accounts.actors import Actor
from orderdesk.accounts.models import User
from orderdesk.comms import services as comms
from orderdesk.core import csv_safety
from orderdesk.core.db import Database
from orderdesk.core.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.money import format_minor
from orderdesk.fulfillment import returns as returns_service
from orderdesk.fulfillment import services as fulfillment
from orderdesk.integrations import endpoints as webhooks
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel, OrderEvent
from orderdesk.orders.schemas import OrderPage, OrderView
from orderdesk.orders.states import OrderStatus
from orderdesk.portal import decisions
from orderdesk.tenants.models import Tenant

EXPORT_PAGE = 200
EXPORT_COLUMNS = (
    "number",
    "external_ref",
    "created_at",
    "status",
    "payment_status",
    "priority",
    "channel",
    "customer_name",
    "customer_email",
    "currency",
    "total",
    "tags",
    "on_hold",
)

# Timeline kinds the portal leaves out: internal notes are the operations team's own, and
# messages are shown from the conversations themselves (with their text), not twice.
CLIENT_HIDDEN_EVENTS = frozenset({"note_added", "message_received", "message_sent"})

# How agents appear to the client when the tenant prefers roles to names.
ROLE_LABELS = {"agent": "Agent", "lead": "Team lead", "admin": "Operations team"}
AGENT_DISPLAY_CHOICES = ("name", "role")


@dataclass(frozen=True, slots=True)
class PortalOrderQuery:
    """What a person typed into the order list's filter bar, still as text."""

    status: str = ""
    channel: str = ""
    tag: str = ""
    date_from: str = ""
    date_to: str = ""
    q: str = ""
    cursor: str = ""

    def as_params(self, **override: str) -> dict[str, str]:
        values = {
            "status": self.status,
            "channel": self.channel,
            "tag": self.tag,
            "from": self.date_from,
            "to": self.date_to,
            "q": self.q,
            "cursor": self.cursor,
        }
        values.update(override)
        return {k: v for k, v in values.items() if v}


def _parse_date(field_name: str, value: str, errors: list[FieldError]) -> dt.date | None:
    if not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        errors.append(FieldError(field_name, "must be a date as YYYY-MM-DD"))
        return None


def to_filters(actor: Actor, query: PortalOrderQuery, *, limit: int = 50) -> orders.OrderFilters:
    """The list filters for the client's tenant. Raises ValidationFailed naming each bad field."""
    errors: list[FieldError] = []
    statuses: tuple[OrderStatus, ...] = ()
    if query.status:
        try:
            statuses = (OrderStatus(query.status),)
        except ValueError:
            errors.append(FieldError("status", f"is not an order status: {query.status!r}"))
    channels: tuple[Channel, ...] = ()
    if query.channel:
        try:
            channels = (Channel(query.channel),)
        except ValueError:
            errors.append(FieldError("channel", f"is not a channel: {query.channel!r}"))
    date_from = _parse_date("from", query.date_from, errors)
    date_to = _parse_date("to", query.date_to, errors)
    if date_from and date_to and date_to < date_from:
        errors.append(FieldError("to", "is before the start date"))
    if len(query.q) > 200:
        errors.append(FieldError("q", "is longer than 200 characters"))
    if errors:
        raise ValidationFailed(errors)

    def start_of(day: dt.date | None) -> dt.datetime | None:
        return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) if day else None

    return orders.OrderFilters(
        tenant_id=actor.single_tenant_id,
        statuses=statuses,
        channels=channels,
        tag=query.tag.strip() or None,
        created_from=start_of(date_from),
        # The end date is inclusive for a person: up to the start of the next day.
        created_to=start_of(date_to + dt.timedelta(days=1)) if date_to else None,
        text=query.q or None,
        cursor=query.cursor or None,
        limit=limit,
    )


async def list_portal_orders(db: Database, actor: Actor, query: PortalOrderQuery) -> OrderPage:
    """A page of the client's orders. Raises ValidationFailed for a bad filter or cursor."""
    return await orders.list_orders(db, actor, to_filters(actor, query))


async def export_orders_csv(db: Database, actor: Actor, query: PortalOrderQuery) -> AsyncIterator[str]:
    """Every order matching the filters as CSV, page by page (memory stays flat), formula-safe.

    Filters are checked before the first byte is sent: raises ValidationFailed.
    """
    filters = to_filters(actor, dataclasses.replace(query, cursor=""), limit=EXPORT_PAGE)

    async def rows() -> AsyncIterator[str]:
        yield "\ufeff" + csv_safety.csv_line(EXPORT_COLUMNS)
        cursor: str | None = None
        while True:
            page = await orders.list_orders(db, actor, dataclasses.replace(filters, cursor=cursor))
            yield "".join(
                csv_safety.csv_line(
                    (
                        o.number,
                        o.external_ref or "",
                        o.created_at.isoformat(),
                        o.status,
                        o.payment_status,
                        o.priority,
                        o.channel,
                        o.customer_name,
                        o.customer_email or "",
                        o.currency,
                        format_minor(o.total_minor, o.currency),
                        " ".join(o.tags),
                        "yes" if o.on_hold else "no",
                    )
                )
                for o in page.items
            )
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    return rows()


# ---------------------------------------------------------------- who did it: names or roles


async def agent_display(db: Database, actor: Actor) -> str:
    """'name' or 'role': how the client's tenant wants agents shown on timelines."""
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, actor.single_tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    return _agent_display_of(tenant)


def _agent_display_of(tenant: Tenant) -> str:
    value = (tenant.settings or {}).get("portal", {}).get("agent_display", "name")
    return value if value in AGENT_DISPLAY_CHOICES else "name"


async def set_agent_display(db: Database, actor: Actor, tenant_id: UUID, choice: str) -> str:
    """Show agents to the client by name or by role. The client's admins and staff admins decide.

    Raises NotFound (tenant out of reach), PermissionDenied, ValidationFailed (unknown choice).
    """
    from orderdesk.accounts.actors import ActorKind
    from orderdesk.accounts.models import ClientRole

    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    if not (actor.is_admin or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)):
        raise PermissionDenied("Only administrators can change how agents are shown")
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("Tenant")
        if choice not in AGENT_DISPLAY_CHOICES:
            raise ValidationFailed([FieldError("agent_display", "must be name or role")])
        settings = dict(tenant.settings or {})
        settings["portal"] = {**settings.get("portal", {}), "agent_display": choice}
        tenant.settings = settings
    return choice


# ---------------------------------------------------------------- the timeline


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "event", "shipment", "tracking", "return", "webhook", "decision", "message"
    title: str
    who: str = ""
    detail: str = ""
    link: str | None = None


@dataclass(slots=True)
class OrderStory:
    order: OrderView
    entries: list[TimelineEntry]
    shipments: list = field(default_factory=list)
    returns: list = field(default_factory=list)
    deliveries: list = field(default_factory=list)
    decisions: list = field(default_factory=list)


def _who(kind: str, name: str, role: str | None, display: str) -> str:
    if kind != "staff":
        return {"system": "OrderDesk", "api_key": f"{name} (API)", "client": name}.get(kind, name)
    label = ROLE_LABELS.get(role or "agent", "Agent")
    return label if display == "role" else f"{name} ({label.lower()})"


def _message_entry(message, display: str) -> TimelineEntry:
    channel = message.channel.title()
    subject = f": {message.subject}" if message.subject else ""
    if message.direction == "in":
        sender = message.sender_name or message.sender_address or "the customer"
        title, who = f"{channel} from {sender}{subject}", ""
    else:
        # Outbound messages name the agent who wrote them only where the tenant wants names.
        title = f"{channel} to the customer{subject}"
        who = "Operations team" if display == "role" else message.created_by
    return TimelineEntry(
        at=message.created_at,
        kind="message",
        title=title,
        who=who,
        detail=(message.summary or message.text_body or "")[:500],
    )


async def _events_with_roles(
    db: Database, actor: Actor, order: OrderView
) -> list[tuple[OrderEvent, str | None]]:
    async with db.transaction(actor.scope) as session:
        events = list(
            await session.scalars(
                select(OrderEvent)
                .where(OrderEvent.tenant_id == order.tenant_id, OrderEvent.order_id == order.id)
                .order_by(OrderEvent.seq)
            )
        )
        staff_ids = {UUID(e.actor_id) for e in events if e.actor_kind == "staff"}
        roles: dict[str, str | None] = {}
        if staff_ids:
            rows = await session.execute(select(User.id, User.staff_role).where(User.id.in_(staff_ids)))
            roles = {str(i): (r.value if r else None) for i, r in rows}
    return [(e, roles.get(e.actor_id)) for e in events]


async def order_story(db: Database, actor: Actor, order_id: UUID) -> OrderStory:
    """The order and everything that happened to it, oldest first. Raises NotFound."""
    order = await orders.get_order(db, actor, order_id)
    display = await agent_display(db, actor)
    entries: list[TimelineEntry] = []
    for event, role in await _events_with_roles(db, actor, order):
        if event.kind in CLIENT_HIDDEN_EVENTS:
            continue
        entries.append(
            TimelineEntry(
                at=event.created_at,
                kind="event",
                title=event.summary,
                who=_who(event.actor_kind, event.actor_name, role, display),
                detail=f"via {event.channel}",
            )
        )
    shipments = await fulfillment.list_shipments(db, actor, order_id)
    for shipment in shipments:
        entries.append(
            TimelineEntry(
                at=shipment.shipped_at,
                kind="shipment",
                title=f"Shipment {shipment.number} left {shipment.warehouse_code} with {shipment.carrier}",
                detail=shipment.tracking_number or "",
                link=shipment.tracking_url,
            )
        )
        for scan in shipment.events:
            entries.append(
                TimelineEntry(
                    at=scan.occurred_at,
                    kind="tracking",
                    title=f"Shipment {shipment.number}: {scan.status.replace('_', ' ')}",
                    detail=", ".join(x for x in (scan.location, scan.description) if x),
                )
            )
    returns = await returns_service.list_returns(db, actor, order_id)
    for rma in returns:
        entries.append(
            TimelineEntry(
                at=rma.created_at,
                kind="return",
                title=f"Return {rma.rma} requested ({rma.reason.replace('_', ' ')})",
                detail=rma.status,
            )
        )
    deliveries = await webhooks.list_deliveries(db, actor, order_id=order_id, limit=100)
    for delivery, event_type in deliveries:
        entries.append(
            TimelineEntry(
                at=delivery.created_at,
                kind="webhook",
                title=f"Webhook {event_type}: {delivery.status.value}",
                detail=f"{delivery.attempts} attempt(s)"
                + (f", last answer {delivery.last_status_code}" if delivery.last_status_code else ""),
            )
        )
    conversations = await comms.list_order_conversations(db, actor, order_id)
    for conversation in conversations:
        for message in conversation.messages:
            if message.channel == "note":
                continue  # internal; the service leaves notes out for clients already
            entries.append(_message_entry(message, display))
    # Questions and answers are on the order's own events; the list shows what still waits.
    order_decisions = await decisions.list_for_order(db, actor, order_id)
    entries.sort(key=lambda e: e.at)
    return OrderStory(
        order=order,
        entries=entries,
        shipments=shipments,
        returns=returns,
        deliveries=deliveries,
        decisions=order_decisions,
    )
