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
import hashlib
import hmac
import re
from dataclasses import dataclass
from uuid import UUID

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

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


async def _lookup_recipient(
    session: AsyncSession, address: str, parts: tuple[str, str | None]
) -> Recipient | None:
    local_part, token = parts
    await session.execute(
        text("SELECT set_config(:key, :value, true)"),
        {"key": INBOUND_LOCAL_PART_SETTING, "value": local_part},
    )
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
    async with db.transaction(Scope()) as session:
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
    order: Order | None = None


async def _order_by_id(session: AsyncSession, tenant_id: UUID, order_id: UUID | None) -> Order | None:
    if order_id is None:
        return None
    return await session.scalar(select(Order).where(Order.tenant_id == tenant_id, Order.id == order_id))


async def _check_conversation(
    session: AsyncSession,
    settings: CommsSettings | None,
    conversation: Conversation,
    parsed: ParsedEmail,
    how: Placement,
    what: str,
) -> _Placed:
    order = await _order_by_id(session, conversation.tenant_id, conversation.order_id)
    contacts = list(settings.known_contacts or []) if settings else []
    allowed = [conversation.customer_email, order.customer_email if order else None]
    if conversation.order_id is None or sender_is_trusted(parsed.sender_address, allowed, contacts):
        return _Placed(how, f"{what}; sender {parsed.sender_address} matches", conversation, order)
    return _Placed(
        Placement.TRIAGE,
        f"{what} of order #{order.number if order else '?'}, but sender {parsed.sender_address} is not "
        "its customer or a known contact",
    )


async def place_message(
    session: AsyncSession,
    tenant_id: UUID,
    settings: CommsSettings | None,
    recipient: Recipient,
    parsed: ParsedEmail,
) -> _Placed:
    """Decide where an inbound message belongs (pure reads; nothing is written)."""
    serious = [d for d in parsed.defects if d.startswith(SERIOUS_DEFECTS)]
    if serious:
        return _Placed(Placement.TRIAGE, "could not be read properly: " + "; ".join(serious))
    # 1. The reply token.
    if recipient.token:
        conversation = await session.scalar(
            select(Conversation).where(
                Conversation.tenant_id == tenant_id, Conversation.reply_token == recipient.token
            )
        )
        if conversation is not None:
            return await _check_conversation(
                session, settings, conversation, parsed, Placement.TOKEN, "reply address token"
            )
        log.info("inbound_unknown_token", tenant=str(tenant_id), token=recipient.token)
    # 2. Our own Message-IDs in In-Reply-To / References (newest first).
    referenced = [r for r in [parsed.in_reply_to, *reversed(parsed.references)] if r]
    if referenced:
        row = (
            await session.execute(
                select(Conversation)
                .join(
                    Message,
                    (Message.tenant_id == Conversation.tenant_id)
                    & (Message.conversation_id == Conversation.id),
                )
                .where(
                    Message.tenant_id == tenant_id,
                    Message.direction == Direction.OUTBOUND,
                    Message.provider_message_id.in_(referenced[:50]),
                )
                .order_by(Message.created_at.desc())
                .limit(1)
            )
        ).scalar()
        if row is not None:
            return await _check_conversation(
                session, settings, row, parsed, Placement.HEADERS, "In-Reply-To/References"
            )
    # 3. An order number in the subject or the new text.
    numbers = find_order_numbers(
        [parsed.subject, parsed.summary], settings.order_number_pattern if settings else None
    )
    if numbers:
        orders = (
            await session.scalars(
                select(Order).where(Order.tenant_id == tenant_id, Order.number.in_(numbers[:10]))
            )
        ).all()
        by_number = {o.number: o for o in orders}
        contacts = list(settings.known_contacts or []) if settings else []
        for number in numbers[:10]:
            order = by_number.get(number)
            if order is None:
                continue
            if not sender_is_trusted(parsed.sender_address, [order.customer_email], contacts):
                return _Placed(
                    Placement.TRIAGE,
                    f"names order #{number}, but sender {parsed.sender_address} is not its customer "
                    "or a known contact",
                )
            conversation = await session.scalar(
                select(Conversation)
                .where(
                    Conversation.tenant_id == tenant_id,
                    Conversation.order_id == order.id,
                    func.lower(Conversation.customer_email) == (parsed.sender_address or ""),
                )
                .order_by(Conversation.last_message_at.desc().nulls_last())
                .limit(1)
            )
            who = (
                "its customer"
                if sender_is_trusted(parsed.sender_address, [order.customer_email], [])
                else "a known contact"
            )
            return _Placed(
                Placement.ORDER_NUMBER,
                f"order #{number} named in the message; sender {parsed.sender_address} is {who}",
                conversation,
                order,
            )
        return _Placed(
            Placement.TRIAGE,
            "names order number(s) "
            + ", ".join(f"#{n}" for n in numbers[:5])
            + " that this client does not have",
        )
    return _Placed(Placement.NEW, "no reply token, no known reference, no order number: a new conversation")


async def _work_note(
    session: AsyncSession,
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
    # Active holds and the newest shipment's tracking, in one round trip.
    state = (
        await session.execute(
            text(
                """SELECT
                     (SELECT coalesce(array_agg(h.reason::text), '{}') FROM order_holds h
                       WHERE h.tenant_id = :tenant AND h.order_id = :order
                         AND h.released_at IS NULL) AS holds,
                     (SELECT concat_ws(' ', s.carrier, s.tracking_number, replace(s.status::text, '_', ' '))
                        FROM shipments s WHERE s.tenant_id = :tenant AND s.order_id = :order
                       ORDER BY s.number DESC LIMIT 1) AS tracking"""
            ),
            {"tenant": order.tenant_id, "order": order.id},
        )
    ).one()
    holds = tuple(HoldReason(h) for h in state.holds)
    tracking = state.tracking
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
    # One transaction from the address lookup (no tenant in scope yet) to the commit.
    async with db.transaction(Scope()) as session:
        target = resolved or await _lookup_recipient(session, recipient, parts)
        if target is None:
            raise NotFound("Inbound address")
        if require_secret and not (
            secret and target.secret_hash and hmac.compare_digest(hash_secret(secret), target.secret_hash)
        ):
            raise AuthenticationFailed("Missing or wrong inbound secret for this address")
        actor = inbound_actor(target.tenant_id)
        await apply_scope(session, actor.scope)
        started = dt.datetime.now(dt.UTC)
        parsed = parse_email(raw, envelope_sender=envelope_sender)
        if parsed.sender_address and parsed.sender_address.rpartition("@")[2] in domains:
            # Mail "from" one of our own inbound addresses is a loop or a spoof: never answer it.
            parsed.is_automated = True
            parsed.automated_reason = "sent from an inbound address (loop or spoof)"
        provider_id = parsed.message_id or fallback_message_id(raw)
        detected = intents.detect_intent(parsed.subject, parsed.summary)
        # Concurrent deliveries of one message wait here, then find it stored.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"inbound:{target.tenant_id}:{provider_id}"},
        )
        existing = (
            await session.execute(
                select(Message.id, Message.conversation_id, Message.placement).where(
                    Message.tenant_id == target.tenant_id, Message.provider_message_id == provider_id
                )
            )
        ).first()
        if existing is not None:
            log.info("inbound_email_duplicate", tenant=str(target.tenant_id), message_id=provider_id, via=via)
            return InboundResult(
                target.tenant_id,
                existing.id,
                existing.conversation_id,
                True,
                existing.placement.value,
                "already received",
            )
        settings = await session.get(CommsSettings, target.tenant_id)
        placed = await place_message(session, target.tenant_id, settings, target, parsed)
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
        note = await _work_note(session, placed, parsed, detected)
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
        result = await append_message_in(session, actor, conversation, draft, work_note=note)
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
