"""Inbound email: from raw bytes at a tenant's address to a stored, threaded message and work item.

Both doors (the SMTP listener and the HTTP endpoint) call `receive_email`. The
tenant comes only from the *envelope* recipient, never from headers a sender can
write. Threading tries, in order:

1. the reply token in the recipient (`acme+c_<token>@…`),
2. `In-Reply-To` / `References` naming one of our own outbound Message-IDs,
3. an order number in the subject or the new text (the tenant's pattern, or the defaults).

A match joins an order's conversation only when the sender is that order's customer
(or the conversation's, or a known contact of the tenant). Anything else that points
at an order (a stranger naming it, a number the tenant does not have, a token of a
conversation the sender is not part of, an unreadable message) goes to *triage*: a
new conversation without an order and a work item that tells the agent why. Lookups
run under the tenant's scope only, so another tenant's order cannot be found at all.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import Select, bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.comms import intents
from orderdesk.comms.mime import ParsedEmail, parse_email
from orderdesk.comms.models import (
    MAX_MESSAGE_BYTES,
    CommsSettings,
    Conversation,
    Direction,
    Message,
    MessageChannel,
    Placement,
)
from orderdesk.comms.services import (
    MessageDraft,
    WorkNote,
    append_message_in,
    hash_secret,
    start_conversation_in,
)
from orderdesk.core.db import Database
from orderdesk.core.errors import AuthenticationFailed, NotFound, TooLarge
from orderdesk.core.tenancy import Scope, apply_scope
from orderdesk.orders.models import Order
from orderdesk.orders.states import HoldReason
from orderdesk.tenants.models import Tenant
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import SlaPolicyRow

log = structlog.get_logger("orderdesk.comms.inbound")

INBOUND_LOCAL_PART_SETTING = "orderdesk.inbound_local_part"
TOKEN_TAG = re.compile(r"^c_([a-z2-7]{16})$")
# "#1042", "order 1042", "Bestellung Nr. 1042", "pedido nº 1042", "order number: 1042".
DEFAULT_NUMBER_PATTERN = re.compile(
    r"(?:#\s?|\b(?:order|bestellung|auftrag|pedido|commande)\s*"
    r"(?:no\.?|nr\.?|number|nummer|n[º°o]\.?|n[úu]mero|#)?\s*[:#]?\s*)(\d{3,12})\b",
    re.I,
)
# Defects that make a message unplaceable without a person, whatever threading finds.
SERIOUS_DEFECTS = ("not parseable", "no usable From", "no text or HTML body", "empty message")


@dataclass(frozen=True, slots=True)
class Recipient:
    tenant_id: UUID
    local_part: str
    token: str | None
    secret_hash: str | None
    address: str


@dataclass(frozen=True, slots=True)
class InboundResult:
    tenant_id: UUID
    message_id: UUID
    conversation_id: UUID
    duplicate: bool
    placement: str
    note: str
    work_item_id: UUID | None = None


def split_address(address: str, domains: tuple[str, ...] = ()) -> tuple[str, str | None] | None:
    """(local part, conversation token) of an inbound address, or None if it cannot be ours."""
    address = (address or "").strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return None
    if domains and domain not in domains:
        return None
    base, _plus, tag = local.partition("+")
    token_match = TOKEN_TAG.match(tag) if tag else None
    return base, token_match.group(1) if token_match else None


def _lookup_settings(parts: tuple[str, str | None] | None) -> dict[str, str] | None:
    """The setting the lookup policy of `comms_settings` reads: set when the transaction opens."""
    return {INBOUND_LOCAL_PART_SETTING: parts[0]} if parts is not None else None


async def _lookup_recipient(
    session: AsyncSession, address: str, parts: tuple[str, str | None]
) -> Recipient | None:
    """The recipient's tenant, in a transaction opened with `_lookup_settings(parts)`."""
    local_part, token = parts
    row = (
        await session.execute(
            select(CommsSettings.tenant_id, CommsSettings.inbound_secret_hash)
            .join(Tenant, Tenant.id == CommsSettings.tenant_id)
            .where(CommsSettings.inbound_local_part == local_part, Tenant.is_active.is_(True))
        )
    ).first()
    if row is None:
        return None
    return Recipient(row.tenant_id, local_part, token, row.inbound_secret_hash, address.strip().strip("<>"))


async def resolve_recipient(db: Database, address: str, domains: tuple[str, ...] = ()) -> Recipient | None:
    """The tenant an address belongs to, or None (unknown address, inactive tenant).

    Runs with no tenant in scope: RLS lets exactly the settings row of that local part through.
    """
    parts = split_address(address, domains)
    if parts is None:
        return None
    async with db.transaction(Scope(), extra_settings=_lookup_settings(parts)) as session:
        return await _lookup_recipient(session, address, parts)


def inbound_actor(tenant_id: UUID) -> Actor:
    """Mail is taken in by the platform on the tenant's behalf."""
    return Actor(
        kind=ActorKind.SYSTEM, id=UUID(int=0), display_name="Inbound email", tenant_ids=frozenset({tenant_id})
    )


def fallback_message_id(raw: bytes) -> str:
    # Without a Message-ID the exact bytes are the identity: a redelivery is still one message.
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid>"


def find_order_numbers(texts: list[str], pattern: str | None) -> list[int]:
    """Order numbers named in `texts`, in order of appearance, without repeats."""
    compiled = re.compile(pattern, re.I) if pattern else DEFAULT_NUMBER_PATTERN
    numbers: list[int] = []
    for chunk in texts:
        for match in compiled.finditer(chunk or ""):
            digits = re.sub(r"\D", "", match.group(1) or "")
            if digits and len(digits) <= 15 and int(digits) not in numbers:
                numbers.append(int(digits))
    return numbers


def sender_is_trusted(sender: str | None, allowed: list[str | None], known_contacts: list[str]) -> bool:
    sender = (sender or "").lower()
    if not sender:
        return False
    if any(sender == (a or "").lower() for a in allowed):
        return True
    domain = "@" + sender.rpartition("@")[2]
    return any(sender == c or domain == c for c in known_contacts)


@dataclass(slots=True)
class _Placed:
    placement: Placement
    note: str
    conversation: Conversation | None = None
    # The order the message joins, locked for this transaction (its timeline grows).
    order: Order | None = None
    # The order's active holds and newest shipment's tracking, read with it.
    holds: tuple[HoldReason, ...] = ()
    tracking: str | None = None


@dataclass(slots=True)
class _Facts:
    """What one statement tells about a message before threading: is it stored already,
    the tenant's settings, and the conversations its reply token and headers name."""

    duplicate: Any | None
    settings: CommsSettings | None
    by_token: Conversation | None
    by_headers: Conversation | None


# The statements of the threading look-ups are built once per shape, with bind parameters:
# building an ORM statement with aliases costs more CPU than the database spends running it.


@functools.cache
def _facts_statement(with_token: bool, with_headers: bool) -> Select:
    duplicate = aliased(Message, name="duplicate")
    statement = (
        select(
            Tenant.time_zone,
            CommsSettings,
            SlaPolicyRow,
            duplicate.id.label("duplicate_id"),
            duplicate.conversation_id.label("duplicate_conversation_id"),
            duplicate.placement.label("duplicate_placement"),
        )
        .select_from(Tenant)
        .outerjoin(CommsSettings, CommsSettings.tenant_id == Tenant.id)
        .outerjoin(SlaPolicyRow, SlaPolicyRow.tenant_id == Tenant.id)
        .outerjoin(
            duplicate,
            (duplicate.tenant_id == Tenant.id) & (duplicate.provider_message_id == bindparam("provider_id")),
        )
        .where(Tenant.id == bindparam("tenant_id"))
    )
    if with_token:
        by_token = aliased(Conversation, name="by_token")
        statement = statement.add_columns(by_token).outerjoin(
            by_token, (by_token.tenant_id == Tenant.id) & (by_token.reply_token == bindparam("token"))
        )
    if with_headers:
        # Our own Message-IDs among In-Reply-To / References: the newest such message's conversation.
        by_headers = aliased(Conversation, name="by_headers")
        newest = (
            select(Message.conversation_id)
            .where(
                Message.tenant_id == bindparam("tenant_id"),
                Message.direction == Direction.OUTBOUND,
                Message.provider_message_id.in_(bindparam("referenced", expanding=True)),
            )
            .order_by(Message.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        statement = statement.add_columns(by_headers).outerjoin(
            by_headers, (by_headers.tenant_id == Tenant.id) & (by_headers.id == newest)
        )
    return statement


async def _read_facts(
    session: AsyncSession, tenant_id: UUID, provider_id: str, token: str | None, referenced: list[str]
) -> _Facts:
    """One round trip for the duplicate check, the settings (comms and SLA) and the
    conversations named by the reply token and by `In-Reply-To`/`References`."""
    parameters: dict[str, Any] = {"tenant_id": tenant_id, "provider_id": provider_id}
    if token:
        parameters["token"] = token
    if referenced:
        parameters["referenced"] = referenced[:50]
    row = (await session.execute(_facts_statement(bool(token), bool(referenced)), parameters)).one()
    work.remember_policy_in_session(session, tenant_id, row.SlaPolicyRow, row.time_zone)
    return _Facts(
        duplicate=row if row.duplicate_id is not None else None,
        settings=row.CommsSettings,
        by_token=row.by_token if token else None,
        by_headers=row.by_headers if referenced else None,
    )


def _orders_with_state() -> Select:
    """Orders with their active holds and newest tracking, locked (FOR UPDATE OF orders):
    a message that joins an order appends to its timeline, which needs the lock anyway."""
    holds = literal_column(
        """(SELECT coalesce(array_agg(h.reason::text), '{}') FROM order_holds h
             WHERE h.tenant_id = orders.tenant_id AND h.order_id = orders.id
               AND h.released_at IS NULL)"""
    )
    tracking = literal_column(
        """(SELECT concat_ws(' ', s.carrier, s.tracking_number, replace(s.status::text, '_', ' '))
              FROM shipments s WHERE s.tenant_id = orders.tenant_id AND s.order_id = orders.id
             ORDER BY s.number DESC LIMIT 1)"""
    )
    return (
        select(Order, holds.label("holds"), tracking.label("tracking"))
        .where(Order.tenant_id == bindparam("tenant_id"))
        .with_for_update(of=Order)
    )


@functools.cache
def _order_of_conversation_statement() -> Select:
    return _orders_with_state().where(Order.id == bindparam("order_id"))


@functools.cache
def _orders_by_number_statement() -> Select:
    """The named orders, each with the sender's latest conversation about it."""
    conversation = aliased(Conversation, name="sender_conversation")
    latest = (
        select(Conversation.id)
        .where(
            Conversation.tenant_id == Order.tenant_id,
            Conversation.order_id == Order.id,
            func.lower(Conversation.customer_email) == bindparam("sender"),
        )
        .order_by(Conversation.last_message_at.desc().nulls_last())
        .limit(1)
        .scalar_subquery()
    )
    return (
        _orders_with_state()
        .add_columns(conversation)
        .outerjoin(conversation, (conversation.tenant_id == Order.tenant_id) & (conversation.id == latest))
        .where(Order.number.in_(bindparam("numbers", expanding=True)))
        # Locks are taken in id order, whatever order the message names them in: every
        # transaction that locks several orders does so (allocation batches too), so two
        # never wait for each other in a circle.
        .order_by(Order.id)
    )


async def _check_conversation(
    session: AsyncSession,
    settings: CommsSettings | None,
    conversation: Conversation,
    parsed: ParsedEmail,
    how: Placement,
    what: str,
) -> _Placed:
    row = None
    if conversation.order_id is not None:
        row = (
            await session.execute(
                _order_of_conversation_statement(),
                {"tenant_id": conversation.tenant_id, "order_id": conversation.order_id},
            )
        ).first()
    order = row.Order if row is not None else None
    contacts = list(settings.known_contacts or []) if settings else []
    allowed = [conversation.customer_email, order.customer_email if order else None]
    if conversation.order_id is None or sender_is_trusted(parsed.sender_address, allowed, contacts):
        return _Placed(
            how,
            f"{what}; sender {parsed.sender_address} matches",
            conversation,
            order,
            _holds(row),
            row.tracking if row is not None else None,
        )
    return _Placed(
        Placement.TRIAGE,
        f"{what} of order #{order.number if order else '?'}, but sender {parsed.sender_address} is not "
        "its customer or a known contact",
    )


def _holds(row) -> tuple[HoldReason, ...]:
    return tuple(HoldReason(h) for h in row.holds) if row is not None and row.holds else ()


async def place_message(
    session: AsyncSession,
    tenant_id: UUID,
    facts: _Facts,
    recipient: Recipient,
    parsed: ParsedEmail,
) -> _Placed:
    """Decide where an inbound message belongs (reads, and locks the order it joins)."""
    settings = facts.settings
    serious = [d for d in parsed.defects if d.startswith(SERIOUS_DEFECTS)]
    if serious:
        return _Placed(Placement.TRIAGE, "could not be read properly: " + "; ".join(serious))
    # 1. The reply token.
    if recipient.token:
        if facts.by_token is not None:
            return await _check_conversation(
                session, settings, facts.by_token, parsed, Placement.TOKEN, "reply address token"
            )
        log.info("inbound_unknown_token", tenant=str(tenant_id), token=recipient.token)
    # 2. Our own Message-IDs in In-Reply-To / References (newest first).
    if facts.by_headers is not None:
        return await _check_conversation(
            session, settings, facts.by_headers, parsed, Placement.HEADERS, "In-Reply-To/References"
        )
    # 3. An order number in the subject or the new text.
    numbers = find_order_numbers(
        [parsed.subject, parsed.summary], settings.order_number_pattern if settings else None
    )
    if numbers:
        rows = (
            await session.execute(
                _orders_by_number_statement(),
                {"tenant_id": tenant_id, "numbers": numbers[:10], "sender": parsed.sender_address or ""},
            )
        ).all()
        by_number = {row.Order.number: row for row in rows}
        contacts = list(settings.known_contacts or []) if settings else []
        for number in numbers[:10]:
            row = by_number.get(number)
            if row is None:
                continue
            order = row.Order
            if not sender_is_trusted(parsed.sender_address, [order.customer_email], contacts):
                return _Placed(
                    Placement.TRIAGE,
                    f"names order #{number}, but sender {parsed.sender_address} is not its customer "
                    "or a known contact",
                )
            who = (
                "its customer"
                if sender_is_trusted(parsed.sender_address, [order.customer_email], [])
                else "a known contact"
            )
            return _Placed(
                Placement.ORDER_NUMBER,
                f"order #{number} named in the message; sender {parsed.sender_address} is {who}",
                row.sender_conversation,
                order,
                _holds(row),
                row.tracking,
            )
        return _Placed(
            Placement.TRIAGE,
            "names order number(s) "
            + ", ".join(f"#{n}" for n in numbers[:5])
            + " that this client does not have",
        )
    return _Placed(Placement.NEW, "no reply token, no known reference, no order number: a new conversation")


def _work_note(
    placed: _Placed,
    parsed: ParsedEmail,
    detected: intents.DetectedIntent,
) -> WorkNote:
    order = placed.order
    subject = parsed.subject or "(no subject)"
    if parsed.is_automated:
        title = f"Automatic mail ({parsed.automated_reason}): {subject}"
        return WorkNote(
            title=title, detail=f"{placed.note}. Never answered automatically.", triage=order is None
        )
    if placed.placement in (Placement.TRIAGE, Placement.NEW) or order is None:
        prefix = "Triage" if placed.placement is Placement.TRIAGE else "New customer message"
        detail = f"{placed.note}."
        if parsed.defects:
            detail += " Problems reading it: " + "; ".join(parsed.defects[:8]) + "."
        detail += " Suggested: " + intents.suggest_action(detected.intent, order_label=None, status=None).text
        return WorkNote(title=f"{prefix}: {subject}", detail=detail, triage=True)
    holds, tracking = placed.holds, placed.tracking
    suggestion = intents.suggest_action(
        detected.intent, order_label=f"#{order.number}", status=order.status, holds=holds, tracking=tracking
    )
    intent_words = detected.intent.value.replace("_", " ")
    return WorkNote(
        title=f"Order #{order.number} · {intent_words} ({detected.confidence:.0%}): {subject}",
        detail=f"Suggested: {suggestion.text}. Threaded by {placed.note}.",
    )


async def receive_email(
    db: Database,
    raw: bytes,
    *,
    recipient: str,
    domains: tuple[str, ...] = (),
    envelope_sender: str | None = None,
    secret: str | None = None,
    require_secret: bool = False,
    resolved: Recipient | None = None,
    via: str = "smtp",
) -> InboundResult:
    """Take in one raw email addressed to `recipient`; store it, thread it, open work.

    Redelivery of a message already stored (same Message-ID, or same bytes when it has
    none) stores nothing new and answers `duplicate=True`.
    Raises TooLarge (over the size limit), NotFound (not a tenant's inbound address),
    AuthenticationFailed (HTTP: missing or wrong inbound secret for that address).
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise TooLarge(f"message of {len(raw)} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")
    parts = None
    if resolved is None:
        parts = split_address(recipient, domains)
        if parts is None:
            raise NotFound("Inbound address")
    started = dt.datetime.now(dt.UTC)
    # Reading the message is all CPU: done before a pooled connection is taken, so a large
    # message being decoded holds no connection (and no transaction) meanwhile.
    parsed = parse_email(raw, envelope_sender=envelope_sender)
    if parsed.sender_address and parsed.sender_address.rpartition("@")[2] in domains:
        # Mail "from" one of our own inbound addresses is a loop or a spoof: never answer it.
        parsed.is_automated = True
        parsed.automated_reason = "sent from an inbound address (loop or spoof)"
    provider_id = parsed.message_id or fallback_message_id(raw)
    detected = intents.detect_intent(parsed.subject, parsed.summary)
    referenced = [r for r in [parsed.in_reply_to, *reversed(parsed.references)] if r]
    # One transaction from the address lookup (no tenant in scope yet) to the commit.
    async with db.transaction(Scope(), extra_settings=_lookup_settings(parts)) as session:
        target = resolved or await _lookup_recipient(session, recipient, parts)
        if target is None:
            raise NotFound("Inbound address")
        if require_secret and not (
            secret and target.secret_hash and hmac.compare_digest(hash_secret(secret), target.secret_hash)
        ):
            raise AuthenticationFailed("Missing or wrong inbound secret for this address")
        actor = inbound_actor(target.tenant_id)
        # Concurrent deliveries of one message wait at this lock, then find it stored.
        await apply_scope(session, actor.scope, advisory_lock=f"inbound:{target.tenant_id}:{provider_id}")
        facts = await _read_facts(session, target.tenant_id, provider_id, target.token, referenced)
        existing = facts.duplicate
        if existing is not None:
            log.info("inbound_email_duplicate", tenant=str(target.tenant_id), message_id=provider_id, via=via)
            return InboundResult(
                target.tenant_id,
                existing.duplicate_id,
                existing.duplicate_conversation_id,
                True,
                existing.duplicate_placement.value,
                "already received",
            )
        placed = await place_message(session, target.tenant_id, facts, target, parsed)
        conversation = placed.conversation
        if conversation is None:
            conversation = await start_conversation_in(
                session,
                target.tenant_id,
                channel=MessageChannel.EMAIL,
                order=placed.order,
                customer_email=parsed.sender_address,
                customer_name=parsed.sender_name,
                subject=parsed.subject,
            )
        note = _work_note(placed, parsed, detected)
        draft = MessageDraft(
            direction=Direction.INBOUND,
            channel=MessageChannel.EMAIL,
            created_by=f"inbound {via}",
            sender_address=parsed.sender_address,
            sender_name=parsed.sender_name,
            recipients=parsed.recipients or [{"kind": "to", "address": target.address, "name": ""}],
            subject=parsed.subject,
            text_body=parsed.text_body,
            html_body=parsed.html_body,
            summary=parsed.summary,
            provider_message_id=provider_id,
            in_reply_to=parsed.in_reply_to,
            references=parsed.references,
            language=detected.language,
            intent=detected.intent,
            intent_confidence=detected.confidence,
            is_automated=parsed.is_automated,
            automated_reason=parsed.automated_reason,
            placement=placed.placement,
            placement_note=placed.note,
            raw_mime=raw,
            attachments=parsed.attachments,
        )
        result = await append_message_in(
            session, actor, conversation, draft, work_note=note, locked_order=placed.order
        )
    elapsed_ms = (dt.datetime.now(dt.UTC) - started).total_seconds() * 1000
    log.info(
        "inbound_email_stored",
        tenant=str(target.tenant_id),
        message_id=provider_id,
        via=via,
        placement=placed.placement.value,
        note=placed.note,
        intent=detected.intent.value,
        confidence=detected.confidence,
        automated=parsed.automated_reason,
        defects=parsed.defects[:8],
        conversation=str(conversation.id),
        duplicate=result.duplicate,
        ms=round(elapsed_ms, 1),
    )
    return InboundResult(
        target.tenant_id,
        result.message.id,
        conversation.id,
        result.duplicate,
        placed.placement.value,
        placed.note,
        result.work_item.id if result.work_item else None,
    )
