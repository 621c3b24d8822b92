"""The public tracking page: open an order by its signed link or look it up, then show it,
take a message from its customer, or take a return request.

Nobody signs in here, yet every read and write is tenant-scoped: the link (or the
lookup form's tenant) names exactly one tenant, and each transaction runs with a
scope of that one tenant, so row-level security limits the customer to it; the
queries name the tenant and the order besides.

Lookups by order number and email address (or postal code) answer a wrong number
and a wrong email identically: one statement looks for the pair, both misses run
the same statements, and both are counted against the client address and the
order number (see LOOKUP_LIMITS) in PostgreSQL, like failed sign-ins.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, bindparam, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.comms import services as comms
from orderdesk.comms.models import Conversation, Direction, Message, MessageChannel, Placement
from orderdesk.core.db import Database
from orderdesk.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    InvalidTransition,
    NotFound,
    Throttled,
    ValidationFailed,
)
from orderdesk.core.tenancy import Scope
from orderdesk.core.validation import has_control_characters
from orderdesk.fulfillment import returns as returns_service
from orderdesk.fulfillment.models import (
    Return,
    ReturnLine,
    ReturnReason,
    ReturnStatus,
    Shipment,
    ShipmentLine,
    TrackingEvent,
    TrackingStatus,
)
from orderdesk.fulfillment.policy import policy_of
from orderdesk.fulfillment.schemas import ReturnIn, ReturnLineIn
from orderdesk.fulfillment.services import order_delivered_at, shipped_quantities
from orderdesk.orders import states
from orderdesk.orders.models import Order, OrderEvent, OrderHold, OrderLine
from orderdesk.orders.states import Action, OrderStatus
from orderdesk.tenants.branding import Branding, branding_in_session
from orderdesk.tenants.models import Tenant
from orderdesk.tracking import links, wording
from orderdesk.tracking.models import TrackingLookupFailure
from orderdesk.tracking.schemas import (
    ItemLine,
    ParcelScan,
    ParcelView,
    ReturnableLine,
    ReturnOption,
    ReturnSummary,
    ThreadMessage,
    TimelineEntry,
    TrackingView,
)

# (subject kind, window, failed lookups allowed in the window). The per-order limit is
# what makes guessing an email or postal code for a known number hopeless; the
# per-address limit slows a sweep over many numbers. Signed links are never throttled,
# so a customer whose number is being attacked still reaches the order from their email.
LOOKUP_LIMITS = (
    ("order", dt.timedelta(minutes=15), 5),
    ("order", dt.timedelta(hours=24), 20),
    ("address", dt.timedelta(minutes=15), 20),
    ("address", dt.timedelta(hours=24), 100),
)
FAILURE_RETENTION = dt.timedelta(hours=25)  # a margin over the longest window
# One fixed sentence (the wait is in Retry-After): a throttled answer reads the same for
# every subject and every moment, so it tells nothing about earlier attempts.
THROTTLED = "Too many lookups. Please try again later, or use the link in your order email."
NO_MATCH = (
    "We could not find an order with these details. Check the order number and the email address "
    "or postal code you ordered with."
)
MESSAGE_MAX = 4000
_NUMBER = re.compile(r"#?\s*(\d{1,15})")
_POSTAL = re.compile(r"[A-Z0-9]{2,12}")
# A form's one-time value, so that the same form sent twice is one message.
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkExpired(DomainError):
    """A link we signed, past its expiry: the page offers a new lookup at the tenant's form."""

    def __init__(self, tenant_slug: str | None) -> None:
        super().__init__("This tracking link has expired")
        self.tenant_slug = tenant_slug


def customer_actor(tenant_id: UUID, order_id: UUID, name: str = "Customer") -> Actor:
    """The customer of one order, reaching exactly that order's tenant (and, in the
    services below, that order only). Shown on the agents' timeline as the customer."""
    return Actor(
        kind=ActorKind.CUSTOMER, id=order_id, display_name=name[:200], tenant_ids=frozenset({tenant_id})
    )


def _tenant_scope(tenant_id: UUID) -> Scope:
    return Scope(tenant_ids=frozenset({tenant_id}))


# ---------------------------------------------------------------- links


async def resolve_link(
    db: Database, secret_key: str, token: str, *, now: dt.datetime | None = None
) -> links.TrackingLink:
    """The order a token names. Raises NotFound (not ours, or no such order of that
    tenant: one answer for both) and LinkExpired (ours, but too old)."""
    now = now or utcnow()
    try:
        link = links.verify(secret_key, token)
    except links.BadLink:
        raise NotFound("Order") from None
    if link.expired(now):
        async with db.transaction(_tenant_scope(link.tenant_id)) as session:
            slug = await session.scalar(
                select(Tenant.slug).where(Tenant.id == link.tenant_id, Tenant.is_active)
            )
        raise LinkExpired(slug)
    return link


async def _load_order(session: AsyncSession, link: links.TrackingLink, *, lock: bool = False) -> Order:
    """The linked order within its tenant (and an active tenant). Raises NotFound."""
    query = (
        select(Order)
        .join(Tenant, Tenant.id == Order.tenant_id)
        .where(Order.tenant_id == link.tenant_id, Order.id == link.order_id, Tenant.is_active)
    )
    if lock:
        query = query.with_for_update(of=Order)
    order = await session.scalar(query)
    if order is None:
        raise NotFound("Order")
    return order


# ---------------------------------------------------------------- lookup


async def lookup_page(db: Database, tenant_slug: str) -> tuple[Tenant, Branding]:
    """The tenant and branding behind a lookup form. Raises NotFound for an unknown or
    inactive tenant (tenant slugs are public: they are in every lookup address)."""
    async with db.transaction(Scope()) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.slug == tenant_slug, Tenant.is_active))
    if tenant is None:
        raise NotFound("Tracking page")
    async with db.transaction(_tenant_scope(tenant.id)) as session:
        return tenant, await branding_in_session(session, tenant.id)


def parse_lookup(number: str, email_or_postal_code: str) -> tuple[int, str | None, str | None]:
    """(order number, email, postal code) from the form, exactly one of the last two set.

    Raises ValidationFailed naming each field that cannot be an answer at all; such
    input probes nothing, so it is neither counted nor throttled.
    """
    errors: list[FieldError] = []
    matched = _NUMBER.fullmatch(number.strip())
    if not matched:
        errors.append(FieldError("number", "Enter the order number from your confirmation, for example 1042"))
    proof = email_or_postal_code.strip()
    email = postal = None
    if "@" in proof:
        if len(proof) > 254 or proof.count("@") != 1 or has_control_characters(proof):
            errors.append(FieldError("email_or_postal_code", "Enter the email address you ordered with"))
        email = proof.lower()
    else:
        postal = "".join(ch for ch in proof.upper() if ch.isalnum())
        if not _POSTAL.fullmatch(postal):
            errors.append(
                FieldError(
                    "email_or_postal_code",
                    "Enter the email address you ordered with, or the postal code the order goes to",
                )
            )
    if errors:
        raise ValidationFailed(errors)
    return int(matched.group(1)), email, postal


def address_subject(address: str | None) -> str:
    """The throttling subject of a client address. IPv6 clients are counted per /64 (one
    customer line holds a whole /64); an address the server could not tell (a proxy that
    forwards none) falls into one shared bucket, so a misconfiguration fails closed."""
    if not address:
        return "address:unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "address:unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


async def _check_lookup_throttle(session: AsyncSession, subjects: dict[str, str], now: dt.datetime) -> None:
    # Lookups of one subject queue on a transaction-level advisory lock, so a burst of
    # parallel guesses cannot all pass the count before any of them is recorded.
    for subject in sorted(subjects.values()):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:subject, 7001))"), {"subject": subject}
        )
    for kind, window, allowed in LOOKUP_LIMITS:
        subject = subjects[kind]
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(TrackingLookupFailure.failed_at)).where(
                    TrackingLookupFailure.subject == subject, TrackingLookupFailure.failed_at > now - window
                )
            )
        ).one()
        if count >= allowed:
            retry_after = max(1, int((oldest + window - now).total_seconds()) + 1)
            raise Throttled(THROTTLED, retry_after=retry_after)


async def lookup_order(
    db: Database,
    secret_key: str,
    tenant_slug: str,
    number: str,
    email_or_postal_code: str,
    *,
    address: str | None,
    now: dt.datetime | None = None,
) -> str:
    """Find an order of the tenant by its number and the customer's email or postal code,
    and return the path of a fresh (24-hour) tracking link to it.

    Raises ValidationFailed (input that cannot be a number, email or postal code),
    Throttled (too many failed lookups for this address or order number), NotFound
    (one answer for an unknown tenant, an unknown number, and a wrong email or postal code).
    """
    now = now or utcnow()
    order_number, email, postal = parse_lookup(number, email_or_postal_code)
    async with db.transaction(Scope()) as session:
        tenant_id = await session.scalar(
            select(Tenant.id).where(Tenant.slug == tenant_slug, Tenant.is_active)
        )
    if tenant_id is None:
        raise NotFound("Order")
    subjects = {"address": address_subject(address), "order": f"order:{tenant_id}:{order_number}"}
    async with db.transaction(_tenant_scope(tenant_id)) as session:
        await _check_lookup_throttle(session, subjects, now)
        postal_of_order = func.upper(
            func.regexp_replace(Order.shipping_address["postal_code"].astext, "[^A-Za-z0-9]", "", "g")
        )
        # One statement for both proofs (the unused one is NULL and matches nothing), so a
        # wrong number and a wrong email cost the same and take the same path.
        order_id = await session.scalar(
            select(Order.id).where(
                Order.tenant_id == tenant_id,
                Order.number == order_number,
                or_(
                    func.lower(Order.customer_email) == bindparam("email", email, type_=String),
                    postal_of_order == bindparam("postal", postal, type_=String),
                ),
            )
        )
        if order_id is None:
            session.add_all(TrackingLookupFailure(subject=s, failed_at=now) for s in subjects.values())
        else:
            # The customer proved they know the order: earlier typos no longer count against it.
            await session.execute(
                delete(TrackingLookupFailure).where(TrackingLookupFailure.subject == subjects["order"])
            )
    if order_id is None:
        raise NotFound("Order")
    return links.tracking_path(secret_key, tenant_id, order_id, lifetime=links.LOOKUP_LINK_LIFETIME, now=now)


async def purge_lookup_failures(db: Database, now: dt.datetime | None = None) -> int:
    """Delete failures older than every throttling window; returns how many."""
    now = now or utcnow()
    async with db.transaction(Scope()) as session:
        result = await session.execute(
            delete(TrackingLookupFailure).where(TrackingLookupFailure.failed_at <= now - FAILURE_RETENTION)
        )
    return result.rowcount


# ---------------------------------------------------------------- the page


def _zone(tenant: Tenant) -> ZoneInfo:
    try:
        return ZoneInfo(tenant.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day(value: dt.datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y}"


def _moment(value: dt.datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}"


async def _returnable(session: AsyncSession, order: Order, lines: list[OrderLine]) -> dict[int, int]:
    """Units per line delivered and not yet in a return that is still standing."""
    shipped = await shipped_quantities(session, order)
    returned = dict(
        (
            await session.execute(
                select(ReturnLine.line_no, func.sum(ReturnLine.quantity))
                .join(
                    Return, (Return.tenant_id == ReturnLine.tenant_id) & (Return.id == ReturnLine.return_id)
                )
                .where(
                    ReturnLine.tenant_id == order.tenant_id,
                    ReturnLine.order_id == order.id,
                    Return.status != ReturnStatus.REJECTED,
                )
                .group_by(ReturnLine.line_no)
            )
        ).all()
    )
    # As in the returns service: orders moved by hand have no shipments; their lines count whole.
    return {
        line.line_no: (shipped.get(line.line_no, 0) if shipped else line.quantity)
        - int(returned.get(line.line_no, 0))
        for line in lines
    }


async def _return_option(
    session: AsyncSession,
    order: Order,
    lines: list[OrderLine],
    active_holds: list,
    zone: ZoneInfo,
    now: dt.datetime,
) -> ReturnOption:
    if Action.REQUEST_RETURN not in states.allowed_actions(order.status, active_holds):
        if order.status in (OrderStatus.RETURN_REQUESTED, OrderStatus.RETURN_RECEIVED, OrderStatus.REFUNDED):
            return ReturnOption(False, "Your return is in progress; its status is shown below.")
        if order.status in (OrderStatus.CANCELLED, OrderStatus.CLOSED, OrderStatus.RETURN_REJECTED):
            return ReturnOption(False, "Returns are no longer possible for this order.")
        return ReturnOption(False, "You can ask for a return once your order has been delivered.")
    policy = await policy_of(session, order.tenant_id)
    if policy.return_window_days == 0:
        return ReturnOption(False, "This shop does not take returns online. Send us a message instead.")
    delivered_at = await order_delivered_at(session, order)
    until = None
    if delivered_at is not None:
        ends = delivered_at + dt.timedelta(days=policy.return_window_days)
        if now > ends:
            return ReturnOption(False, f"The return period ended on {_day(ends, zone)}.")
        until = _day(ends, zone)
    left = await _returnable(session, order, lines)
    returnable = [
        ReturnableLine(line.line_no, line.description or line.sku, left[line.line_no])
        for line in lines
        if left[line.line_no] > 0
    ]
    if not returnable:
        return ReturnOption(False, "Everything in this order has already been returned.")
    explanation = f"You can ask for a return until {until}." if until else "You can ask for a return."
    return ReturnOption(True, explanation, returnable, until)


async def _build_view(session: AsyncSession, order: Order, now: dt.datetime) -> TrackingView:
    tenant = await session.get(Tenant, order.tenant_id)
    zone = _zone(tenant)
    branding = await branding_in_session(session, order.tenant_id)
    key = {"tenant_id": order.tenant_id, "order_id": order.id}
    lines = list(await session.scalars(select(OrderLine).filter_by(**key).order_by(OrderLine.line_no)))
    # Lines captured without a description are named by their SKU, as on the packing slip.
    described = {line.line_no: line.description or line.sku for line in lines}
    holds = [
        h.reason
        for h in await session.scalars(
            select(OrderHold).filter_by(**key).where(OrderHold.released_at.is_(None))
        )
    ]
    events = await session.execute(
        select(OrderEvent.kind, OrderEvent.changes, OrderEvent.created_at)
        .filter_by(**key)
        .order_by(OrderEvent.seq)
    )
    timeline: list[TimelineEntry] = []
    for kind, changes, created_at in events:
        said = wording.event_text(kind, changes or {})
        # Internal steps that read alike (allocated, then picking) are one step to a customer.
        if said and (not timeline or timeline[-1].text != said):
            timeline.append(TimelineEntry(_moment(created_at, zone), said))
    timeline.reverse()

    shipments = list(await session.scalars(select(Shipment).filter_by(**key).order_by(Shipment.number)))
    shipment_ids = [s.id for s in shipments]
    parcel_lines: dict[UUID, list[ItemLine]] = defaultdict(list)
    scans: dict[UUID, list[ParcelScan]] = defaultdict(list)
    if shipment_ids:
        for row in await session.scalars(
            select(ShipmentLine)
            .where(ShipmentLine.tenant_id == order.tenant_id, ShipmentLine.shipment_id.in_(shipment_ids))
            .order_by(ShipmentLine.line_no)
        ):
            parcel_lines[row.shipment_id].append(
                ItemLine(row.line_no, described.get(row.line_no, row.sku), row.quantity)
            )
        for scan in await session.scalars(
            select(TrackingEvent)
            .where(TrackingEvent.tenant_id == order.tenant_id, TrackingEvent.shipment_id.in_(shipment_ids))
            .order_by(TrackingEvent.occurred_at.desc(), TrackingEvent.received_at.desc())
        ):
            # The carrier's normalised status and place only: free-text descriptions come
            # from client systems and are not vetted for customers' eyes.
            scans[scan.shipment_id].append(
                ParcelScan(_moment(scan.occurred_at, zone), wording.tracking_text(scan.status), scan.location)
            )
    parcels = [
        ParcelView(
            number=s.number,
            carrier=s.carrier,
            service=s.service,
            tracking_number=s.tracking_number,
            link=wording.carrier_link(s.carrier, s.tracking_number, s.tracking_url),
            status_text=wording.tracking_text(s.status),
            delivered=s.status is TrackingStatus.DELIVERED,
            problem=s.status
            in (TrackingStatus.FAILED_ATTEMPT, TrackingStatus.EXCEPTION, TrackingStatus.RETURNED_TO_SENDER),
            shipped_on=_day(s.shipped_at, zone),
            delivered_on=_day(s.delivered_at, zone) if s.delivered_at else None,
            items=parcel_lines[s.id],
            scans=scans[s.id],
        )
        for s in shipments
    ]

    return_rows = list(await session.scalars(select(Return).filter_by(**key).order_by(Return.number)))
    return_items: dict[UUID, list[ItemLine]] = defaultdict(list)
    if return_rows:
        for row in await session.scalars(
            select(ReturnLine)
            .where(
                ReturnLine.tenant_id == order.tenant_id, ReturnLine.return_id.in_([r.id for r in return_rows])
            )
            .order_by(ReturnLine.line_no)
        ):
            return_items[row.return_id].append(
                ItemLine(row.line_no, described.get(row.line_no, row.sku), row.quantity)
            )
    returns = [
        ReturnSummary(r.rma, wording.return_text(r.status), _day(r.created_at, zone), return_items[r.id])
        for r in return_rows
    ]

    title, explanation = wording.headline(order.status, holds)
    delivered_at = max((s.delivered_at for s in shipments if s.delivered_at), default=None)
    promised = None
    late = False
    if order.deliver_by is not None and order.status not in (OrderStatus.CANCELLED,):
        if delivered_at is None and wording.progress_step(order.status) != 4:
            late = now > order.deliver_by
            promised = (
                f"We promised delivery by {_day(order.deliver_by, zone)}; we are sorry it is late."
                if late
                else f"Expected by {_day(order.deliver_by, zone)}"
            )
        else:
            promised = f"Promised by {_day(order.deliver_by, zone)}"
    address = order.shipping_address or {}
    # City and country only: a forwarded link must not hand out the street address.
    ship_to = ", ".join(part for part in (address.get("city"), address.get("country")) if part)
    return TrackingView(
        tenant_slug=tenant.slug,
        branding=branding,
        order_number=order.number,
        placed_on=_day(order.created_at, zone),
        headline=title,
        explanation=explanation,
        paused=bool(holds) and order.status is not OrderStatus.CANCELLED,
        cancelled=order.status is OrderStatus.CANCELLED,
        step=wording.progress_step(order.status),
        steps=wording.STEPS,
        promised=promised,
        late=late,
        ship_to=ship_to,
        items=[ItemLine(line.line_no, described[line.line_no], line.quantity) for line in lines],
        timeline=timeline,
        parcels=parcels,
        returns=returns,
        return_option=await _return_option(session, order, lines, holds, zone, now),
        can_message=True,
        messages=await _thread(session, order, branding.name, zone),
    )


THREAD_LIMIT = 50


async def _thread(session: AsyncSession, order: Order, shop_name: str, zone: ZoneInfo) -> list[ThreadMessage]:
    """What the customer and the shop said to each other about this order, oldest first.

    Only messages between the two: what the customer sent from this page or from their
    own address, and what we sent to that address. Internal notes, the client's staff
    writing about the order, and who of our agents wrote are never shown.
    """
    customer = (order.customer_email or "").lower()
    rows = await session.scalars(
        select(Message)
        .join(
            Conversation,
            (Conversation.tenant_id == Message.tenant_id) & (Conversation.id == Message.conversation_id),
        )
        .where(
            Conversation.tenant_id == order.tenant_id,
            Conversation.order_id == order.id,
            Message.channel.in_((MessageChannel.TRACKING, MessageChannel.EMAIL, MessageChannel.CHAT)),
        )
        .order_by(Message.created_at.desc())
        .limit(THREAD_LIMIT)
    )
    thread: list[ThreadMessage] = []
    for message in rows:
        text_body = (message.summary or message.text_body or "").strip()
        if not text_body:
            continue
        if message.direction is Direction.INBOUND:
            mine = message.channel is MessageChannel.TRACKING or (
                bool(customer) and (message.sender_address or "").lower() == customer
            )
            if mine:
                thread.append(ThreadMessage(_moment(message.created_at, zone), True, "You", text_body))
        elif customer and any(
            isinstance(r, dict) and str(r.get("address", "")).lower() == customer
            for r in message.recipients or []
        ):
            thread.append(ThreadMessage(_moment(message.created_at, zone), False, shop_name, text_body))
    thread.reverse()
    return thread


async def view_order(
    db: Database, link: links.TrackingLink, *, now: dt.datetime | None = None
) -> TrackingView:
    """Everything the page shows about the linked order, in customer words.

    Raises NotFound (no such order of the link's tenant, or the tenant is inactive).
    """
    now = now or utcnow()
    async with db.transaction(_tenant_scope(link.tenant_id)) as session:
        return await _build_view(session, await _load_order(session, link), now)


# ---------------------------------------------------------------- returns


@dataclass(frozen=True, slots=True)
class ReturnRequestForm:
    reason: str
    note: str
    quantities: dict[int, str]  # line number → the quantity as typed


def _clean_return(form: ReturnRequestForm) -> ReturnIn:
    errors: list[FieldError] = []
    try:
        reason = ReturnReason(form.reason)
    except ValueError:
        errors.append(FieldError("reason", "Choose why you are returning the items"))
        reason = ReturnReason.OTHER
    note = form.note.strip()
    if len(note) > 1000:
        errors.append(FieldError("note", "Keep the note under 1000 characters"))
    elif has_control_characters(note):
        errors.append(FieldError("note", "The note contains characters we cannot store"))
    lines: list[ReturnLineIn] = []
    for line_no, typed in sorted(form.quantities.items()):
        typed = typed.strip() or "0"
        if not typed.isdigit() or int(typed) > 1_000_000:
            errors.append(FieldError(f"quantity_{line_no}", "Enter a whole number of items"))
        elif int(typed) > 0:
            lines.append(ReturnLineIn(line_no=line_no, quantity=int(typed)))
    if not lines and not any(e.field.startswith("quantity_") for e in errors):
        errors.append(FieldError("lines", "Choose at least one item to return"))
    if errors:
        raise ValidationFailed(errors)
    return ReturnIn(reason=reason, note=note or None, lines=lines)


async def request_return(db: Database, link: links.TrackingLink, form: ReturnRequestForm) -> str:
    """Ask for a return of some delivered items through the returns service; returns the RMA.

    The order's state machine and the tenant's return window decide, exactly as for
    an agent. Raises NotFound, ValidationFailed (no item chosen, more than may be
    returned, bad reason) and Conflict (window over, not delivered, no returns taken),
    each with a message fit for the customer.
    """
    data = _clean_return(form)
    async with db.transaction(_tenant_scope(link.tenant_id)) as session:
        order = await _load_order(session, link)
        actor = customer_actor(order.tenant_id, order.id, order.customer_name)
    try:
        created = await returns_service.request_return(db, actor, order.id, data, channel="tracking")
    except InvalidTransition:
        raise Conflict(
            "A return can be requested once your order has been delivered, and only once."
        ) from None
    except ValidationFailed as exc:
        raise ValidationFailed([_customer_return_error(data, e) for e in exc.errors]) from None
    return created.rma


def _customer_return_error(data: ReturnIn, error: FieldError) -> FieldError:
    """The returns service speaks of `lines.<i>.quantity` and order line numbers; the
    customer chose quantities per item on the form."""
    matched = re.fullmatch(r"lines\.(\d+)\.\w+", error.field)
    if matched is None or int(matched.group(1)) >= len(data.lines):
        return FieldError("lines", "Choose the items to return again")
    field = f"quantity_{data.lines[int(matched.group(1))].line_no}"
    most = re.match(r"only (\d+) of", error.message)
    return FieldError(
        field, f"You can return at most {most.group(1)} of this item" if most else "Check this item"
    )


# ---------------------------------------------------------------- messages


def clean_message(body: str) -> str:
    """Raises ValidationFailed for an empty, too long or unreadable message."""
    cleaned = body.strip()
    if not cleaned:
        raise ValidationFailed([FieldError("body", "Write your message first")])
    if len(cleaned) > MESSAGE_MAX:
        raise ValidationFailed([FieldError("body", f"Keep your message under {MESSAGE_MAX} characters")])
    if has_control_characters(cleaned):
        raise ValidationFailed([FieldError("body", "Your message contains characters we cannot store")])
    return cleaned


async def _order_conversation(session: AsyncSession, order: Order) -> Conversation:
    """The order's newest conversation, or a new one started on the tracking channel, so
    that everything said about one order reads as one thread in the console. The caller
    holds the order's row lock, so two first messages cannot start two conversations."""
    conversation = await session.scalar(
        select(Conversation)
        .where(Conversation.tenant_id == order.tenant_id, Conversation.order_id == order.id)
        .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.created_at.desc())
        .limit(1)
    )
    if conversation is not None:
        return conversation
    return await comms.start_conversation_in(
        session,
        order.tenant_id,
        channel=MessageChannel.TRACKING,
        order=order,
        customer_email=order.customer_email,
        customer_name=order.customer_name,
        subject=f"Order #{order.number}",
    )


async def send_message(db: Database, link: links.TrackingLink, body: str, *, nonce: str = "") -> bool:
    """Append the customer's message to the order's conversation, which puts it on the
    order's timeline and opens (or brings back) the conversation's customer-message
    work item for the agents. `nonce` comes with the form: the same form sent twice
    (a double click, a resent request) is stored once. Returns False for such a repeat.

    Raises NotFound (no such order of the link's tenant), ValidationFailed (empty, too
    long or unreadable message).
    """
    text_body = clean_message(body)
    async with db.transaction(_tenant_scope(link.tenant_id)) as session:
        # The order first, as the communication service locks it: one lock order, no deadlock
        # with an email about the same order arriving at the same moment.
        order = await _load_order(session, link, lock=True)
        actor = customer_actor(order.tenant_id, order.id, order.customer_name)
        conversation = await _order_conversation(session, order)
        nonce = nonce.strip()
        result = await comms.append_message_in(
            session,
            actor,
            conversation,
            comms.MessageDraft(
                direction=Direction.INBOUND,
                channel=MessageChannel.TRACKING,
                created_by=actor.display_name,
                sender_address=order.customer_email,
                sender_name=order.customer_name,
                subject=conversation.subject or f"Order #{order.number}",
                text_body=text_body,
                summary=text_body,
                provider_message_id=(f"tracking:{order.id}:{nonce}" if _NONCE.fullmatch(nonce) else None),
                placement=Placement.TOKEN,
                placement_note="Sent from the order's tracking page (signed link)",
            ),
            work_note=comms.WorkNote(
                title=f"Customer message on the tracking page: order #{order.number}",
                detail=text_body[:500],
            ),
        )
    return not result.duplicate


async def tracking_url_for_number(
    db: Database,
    actor: Actor,
    secret_key: str,
    base_url: str,
    tenant_slug: str,
    number: int,
    *,
    lifetime: dt.timedelta = links.EMAIL_LINK_LIFETIME,
) -> str:
    """A fresh tracking link to the tenant's order `number`, for an email or a phone call.

    Raises NotFound (no such tenant or order within the actor's reach), ValidationFailed
    (base URL not http(s), lifetime not positive).
    """
    errors = []
    if not base_url.startswith(("https://", "http://")):
        errors.append(FieldError("base_url", "must start with https:// or http://"))
    if lifetime <= dt.timedelta(0):
        errors.append(FieldError("days", "must be at least 1"))
    if errors:
        raise ValidationFailed(errors)
    async with db.transaction(actor.scope) as session:
        order = await session.scalar(
            select(Order)
            .join(Tenant, Tenant.id == Order.tenant_id)
            .where(Tenant.slug == tenant_slug, Order.number == number, Order.tenant_id.in_(actor.tenant_ids))
        )
    if order is None:
        raise NotFound("Order")
    return links.tracking_url(base_url, secret_key, order.tenant_id, order.id, lifetime=lifetime)
