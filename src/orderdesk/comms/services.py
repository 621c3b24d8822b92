"""Conversations and messages: storing them, threading them to orders, opening work for agents.

Every public function takes the acting `Actor` and raises domain errors: NotFound
(also for another tenant's objects), PermissionDenied, ValidationFailed. The
`*_in(session, …)` functions run inside a caller's transaction (the inbound email
pipeline, the outbound sender, a chat webhook) so a message, its timeline entry and
its work item commit together or not at all.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import bindparam, exists, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from orderdesk.accounts.actors import Actor
from orderdesk.comms.models import (
    MAX_ATTACHMENT_BYTES,
    Attachment,
    CommsSettings,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    Intent,
    Message,
    MessageChannel,
    Placement,
)
from orderdesk.comms.schemas import AttachmentView, ConversationView, MessageView
from orderdesk.core.db import Database
from orderdesk.core.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.orders.models import Order
from orderdesk.orders.timeline import append_event
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem

# Timeline event kinds written for messages (documented in docs/comms.md).
TIMELINE_KIND = {
    (Direction.INBOUND, False): "message_received",
    (Direction.OUTBOUND, False): "message_sent",
    (Direction.OUTBOUND, True): "note_added",
    (Direction.INBOUND, True): "note_added",
}
LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# Called after a new inbound message (not a note, not a redelivery) is stored, inside its
# transaction: (session, actor, conversation, message, order or None). wiring.py registers
# the automatic answers here, so whichever channel stored the message, the same rules apply.
INBOUND_HOOKS: list = []
TOKEN_ALPHABET = re.compile(r"^[a-z2-7]{16}$")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_reply_token() -> str:
    """80 random bits in lower-case base32: survives mail servers that fold case."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def reply_address(local_part: str, reply_token: str, domain: str) -> str:
    """The address a customer's answer threads back through (`acme+c_<token>@domain`);
    outbound mail puts it in Reply-To."""
    return f"{local_part}+c_{reply_token}@{domain}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ---------------------------------------------------------------- drafts


@dataclass(slots=True)
class AttachmentDraft:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    is_inline: bool = False


@dataclass(slots=True)
class MessageDraft:
    """A message to store: what the inbound parser, the outbound sender or an agent produced."""

    direction: Direction
    channel: MessageChannel
    created_by: str
    sender_address: str | None = None
    sender_name: str | None = None
    recipients: list[dict] = field(default_factory=list)
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    summary: str | None = None
    provider_message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    language: str | None = None
    intent: Intent | None = None
    intent_confidence: float | None = None
    is_automated: bool = False
    automated_reason: str | None = None
    placement: Placement = Placement.NEW
    placement_note: str | None = None
    raw_mime: bytes | None = None
    delivery_status: DeliveryStatus | None = None
    attachments: list[AttachmentDraft] = field(default_factory=list)


@dataclass(slots=True)
class WorkNote:
    """What the customer-message work item should say (title and the suggested action)."""

    title: str
    detail: str | None = None
    # "triage" for messages an agent must place by hand; otherwise one item per conversation.
    triage: bool = False


@dataclass(slots=True)
class AppendResult:
    message: Message
    # The same provider message id was stored before: nothing new was written.
    duplicate: bool
    work_item: WorkItem | None = None


# ---------------------------------------------------------------- settings


async def settings_in(session: AsyncSession, tenant_id: UUID) -> CommsSettings | None:
    return await session.get(CommsSettings, tenant_id)


async def configure_comms(
    db: Database,
    actor: Actor,
    tenant_id: UUID,
    *,
    inbound_local_part: str | None = None,
    from_name: str | None = None,
    from_address: str | None = None,
    auto_answer_enabled: bool | None = None,
    order_number_pattern: str | None = None,
    known_contacts: Sequence[str] | None = None,
    rotate_inbound_secret: bool = False,
) -> tuple[CommsSettings, str | None]:
    """Create or change a tenant's comms settings; returns them and a new inbound secret if rotated.

    The secret is shown once and stored only as its SHA-256. Raises PermissionDenied
    (not staff admin or system), NotFound (tenant outside reach), ValidationFailed
    (local part, pattern or contact malformed, local part taken by another tenant).
    """
    if not (actor.is_admin or actor.kind.value == "system"):
        raise PermissionDenied("Only operations admins change communication settings")
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    errors: list[FieldError] = []
    if inbound_local_part is not None:
        inbound_local_part = inbound_local_part.strip().lower()
        if not LOCAL_PART.match(inbound_local_part) or "+" in inbound_local_part:
            errors.append(
                FieldError("inbound_local_part", "use 1-63 letters, digits, dots, dashes or underscores")
            )
    if order_number_pattern is not None and order_number_pattern != "":
        try:
            compiled = re.compile(order_number_pattern)
        except re.error as exc:
            errors.append(FieldError("order_number_pattern", f"not a valid regular expression: {exc}"))
        else:
            if compiled.groups != 1:
                errors.append(
                    FieldError("order_number_pattern", "needs exactly one group capturing the number")
                )
    for contact in known_contacts or ():
        if "@" not in contact or " " in contact:
            errors.append(FieldError("known_contacts", f"{contact!r} is not an address or @domain"))
    if errors:
        raise ValidationFailed(errors)
    secret = None
    async with db.transaction(actor.scope) as session:
        if inbound_local_part is not None:
            taken = await session.scalar(
                text(
                    "SELECT count(*) FROM comms_settings"
                    " WHERE inbound_local_part = :lp AND tenant_id <> :tenant"
                ),
                {"lp": inbound_local_part, "tenant": tenant_id},
            )
            # RLS hides other tenants' rows; the unique index is the final word.
            if taken:
                raise ValidationFailed([FieldError("inbound_local_part", "already in use")])
        row = await session.get(CommsSettings, tenant_id, with_for_update=True)
        if row is None:
            row = CommsSettings(tenant_id=tenant_id, known_contacts=[])
            session.add(row)
        if inbound_local_part is not None:
            row.inbound_local_part = inbound_local_part
        if from_name is not None:
            row.from_name = from_name or None
        if from_address is not None:
            row.from_address = from_address or None
        if auto_answer_enabled is not None:
            row.auto_answer_enabled = auto_answer_enabled
        if order_number_pattern is not None:
            row.order_number_pattern = order_number_pattern or None
        if known_contacts is not None:
            row.known_contacts = [c.strip().lower() for c in known_contacts]
        if rotate_inbound_secret:
            secret = "odin_" + secrets.token_urlsafe(32)
            row.inbound_secret_hash = hash_secret(secret)
        row.updated_at = utcnow()
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as exc:  # the unique index on the local part, across tenants
            if "uq_comms_settings_inbound_local_part" in str(exc):
                raise ValidationFailed([FieldError("inbound_local_part", "already in use")]) from None
            raise
        return row, secret


# ---------------------------------------------------------------- conversations


async def start_conversation_in(
    session: AsyncSession,
    tenant_id: UUID,
    *,
    channel: MessageChannel,
    order: Order | None = None,
    customer_email: str | None = None,
    customer_name: str | None = None,
    subject: str | None = None,
) -> Conversation:
    """A new, open conversation of `tenant_id` (the order, if given, must be that tenant's)."""
    if order is not None and order.tenant_id != tenant_id:
        raise NotFound("Order")
    now = utcnow()
    conversation = Conversation(
        tenant_id=tenant_id,
        id=new_id(),
        order_id=order.id if order else None,
        customer_email=(customer_email or None) and customer_email.lower()[:254],
        customer_name=(customer_name or None) and customer_name[:200],
        reply_token=new_reply_token(),
        subject=(subject or None) and subject[:300],
        status=ConversationStatus.OPEN,
        channel=channel,
        message_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def _lock_order(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> Order | None:
    return await session.scalar(
        select(Order).where(Order.tenant_id == tenant_id, Order.id == order_id).with_for_update()
    )


def _timeline_summary(message: Message) -> str:
    if message.channel is MessageChannel.NOTE:
        return f"Note: {(message.summary or message.text_body or '')[:200]}"
    who = message.sender_name or message.sender_address or "customer"
    about = message.subject or (message.summary or "")[:80] or "(no subject)"
    if message.direction is Direction.INBOUND:
        text_ = f"{message.channel.value.title()} from {who}: {about}"
        if message.intent and message.intent is not Intent.OTHER:
            text_ += f" [{message.intent.value.replace('_', ' ')}]"
        return text_[:500]
    return f"{message.channel.value.title()} sent: {about}"[:500]


def _append_statement(*, once: bool):
    """INSERT the message and, only if it was inserted, UPDATE its conversation's status,
    count, times and subject: one round trip. With `once`, a redelivery (the same provider
    message id for the tenant) inserts nothing, updates nothing and returns no row."""
    messages, conversations = Message.__table__, Conversation.__table__
    insert_message = pg_insert(messages).values(
        {column.name: bindparam(f"m_{column.name}", type_=column.type) for column in _MESSAGE_COLUMNS}
    )
    if once:
        insert_message = insert_message.on_conflict_do_nothing(
            index_elements=["tenant_id", "provider_message_id"],
            index_where=text("provider_message_id IS NOT NULL"),
        )
    inserted = insert_message.returning(messages.c.id).cte("inserted")
    return (
        update(conversations)
        .add_cte(inserted)
        .where(
            conversations.c.tenant_id == bindparam("m_tenant_id"),
            conversations.c.id == bindparam("m_conversation_id"),
            exists(select(inserted.c.id)),
        )
        .values(
            status=bindparam("c_status", type_=conversations.c.status.type),
            # Counted in the database: two messages of one conversation may arrive at once.
            message_count=conversations.c.message_count + 1,
            last_message_at=bindparam("m_created_at"),
            updated_at=bindparam("m_created_at"),
            subject=bindparam("c_subject", type_=conversations.c.subject.type),
        )
        .returning(conversations.c.message_count)
    )


_MESSAGE_COLUMNS = [
    column
    for column in Message.__table__.columns
    if column.name
    not in ("send_attempts", "sent_at", "last_error")  # outbound delivery state, set by the sender
]
# Built once: building a 30-column statement per message costs more CPU than the database
# spends running it.
_APPEND_MESSAGE = _append_statement(once=False)
_APPEND_MESSAGE_ONCE = _append_statement(once=True)
_INSERT_ATTACHMENTS = pg_insert(Attachment.__table__)


async def append_message_in(
    session: AsyncSession,
    actor: Actor,
    conversation: Conversation,
    draft: MessageDraft,
    *,
    work_note: WorkNote | None = None,
    now: dt.datetime | None = None,
    locked_order: Order | None = None,
) -> AppendResult:
    """Store `draft` in `conversation`, inside the caller's transaction.

    - A draft whose provider message id the tenant already has is a redelivery:
      nothing is written and the stored message is returned (`duplicate=True`).
    - When the conversation has an order, the message goes on the order's timeline
      (the order row is locked, as the timeline requires; `locked_order` is that order
      when the caller has locked it already in this transaction, which saves the look-up).
    - An inbound message (not a note) opens or updates the conversation's
      customer-message work item, titled by `work_note`.

    Raises ValidationFailed (an attachment over the size limit).
    """
    now = now or utcnow()
    if conversation.tenant_id not in actor.tenant_ids:
        raise NotFound("Conversation")
    for index, attachment in enumerate(draft.attachments):
        if len(attachment.data) > MAX_ATTACHMENT_BYTES:
            raise ValidationFailed(
                [FieldError(f"attachments[{index}]", f"larger than {MAX_ATTACHMENT_BYTES} bytes")]
            )
    tenant_id = conversation.tenant_id
    message_id = new_id()
    values = {
        "tenant_id": tenant_id,
        "id": message_id,
        "conversation_id": conversation.id,
        "direction": draft.direction,
        "channel": draft.channel,
        "sender_address": (draft.sender_address or None) and draft.sender_address[:254],
        "sender_name": (draft.sender_name or None) and draft.sender_name[:200],
        "recipients": draft.recipients,
        "subject": (draft.subject or None) and draft.subject[:998],
        "text_body": draft.text_body,
        "html_body": draft.html_body,
        "summary": draft.summary,
        "provider_message_id": (draft.provider_message_id or None) and draft.provider_message_id[:998],
        "in_reply_to": (draft.in_reply_to or None) and draft.in_reply_to[:998],
        "references": draft.references,
        "language": draft.language,
        "intent": draft.intent,
        "intent_confidence": draft.intent_confidence,
        "is_automated": draft.is_automated,
        "automated_reason": (draft.automated_reason or None) and draft.automated_reason[:100],
        "placement": draft.placement,
        "placement_note": (draft.placement_note or None) and draft.placement_note[:500],
        "raw_mime": draft.raw_mime,
        "raw_size": len(draft.raw_mime) if draft.raw_mime is not None else None,
        "delivery_status": draft.delivery_status,
        "next_attempt_at": now if draft.delivery_status is DeliveryStatus.QUEUED else None,
        "created_by": draft.created_by[:200],
        "created_at": now,
    }
    is_note = draft.channel is MessageChannel.NOTE
    status = conversation.status
    if not is_note:
        inbound = draft.direction is Direction.INBOUND
        status = ConversationStatus.OPEN if inbound else ConversationStatus.WAITING
    subject = conversation.subject
    if not subject and draft.subject:
        subject = draft.subject[:300]
    statement = _APPEND_MESSAGE_ONCE if draft.provider_message_id else _APPEND_MESSAGE
    inserted = await session.scalar(
        statement,
        {**{f"m_{name}": value for name, value in values.items()}, "c_status": status, "c_subject": subject},
    )
    if inserted is None:
        existing = await session.scalar(
            select(Message).where(
                Message.tenant_id == tenant_id,
                Message.provider_message_id == values["provider_message_id"],
            )
        )
        return AppendResult(existing, duplicate=True)
    if draft.attachments:
        # One statement for all of a message's attachments, the bytes passed as they are.
        await session.execute(
            _INSERT_ATTACHMENTS,
            [
                {
                    "tenant_id": tenant_id,
                    "id": new_id(),
                    "message_id": message_id,
                    "filename": (a.filename or "attachment")[:255],
                    "content_type": (a.content_type or "application/octet-stream")[:255],
                    "size": len(a.data),
                    "sha256": hashlib.sha256(a.data).hexdigest(),
                    "content_id": (a.content_id or None) and a.content_id[:255],
                    "is_inline": a.is_inline,
                    "data": a.data,
                    "created_at": now,
                }
                for a in draft.attachments
            ],
        )
    # What was just inserted, without reading it back (raw bytes and HTML can be large).
    message = Message(**values)
    # The conversation row has these values already: the session must not write them again.
    for attribute, value in (
        ("status", status),
        ("message_count", inserted),
        ("last_message_at", now),
        ("updated_at", now),
        ("subject", subject),
    ):
        set_committed_value(conversation, attribute, value)

    order = None
    if conversation.order_id is not None:
        if locked_order is not None and (locked_order.tenant_id, locked_order.id) == (
            tenant_id,
            conversation.order_id,
        ):
            order = locked_order
        else:
            order = await _lock_order(session, tenant_id, conversation.order_id)
        if order is not None:
            append_event(
                session,
                order,
                actor,
                TIMELINE_KIND[(draft.direction, is_note)],
                _timeline_summary(message),
                {
                    "conversation_id": str(conversation.id),
                    "message_id": str(message_id),
                    "intent": draft.intent.value if draft.intent else None,
                    "placement": draft.placement.value,
                },
                channel=draft.channel.value,
            )
    item = None
    if draft.direction is Direction.INBOUND and not is_note:
        note = work_note or WorkNote(title=f"Customer message: {draft.subject or '(no subject)'}")
        item, _opened = await work.open_or_update_conversation_item(
            session,
            tenant_id=tenant_id,
            conversation_id=conversation.id,
            cause="triage" if note.triage and order is None else f"conversation:{conversation.id}",
            title=note.title,
            detail=note.detail,
            order=order,
            created_by=actor.display_name,
            language=draft.language,
            channel=draft.channel.value,
            now=now,
            # The conversation's first message (counted by the database, so of two messages
            # arriving at once only one is first) cannot find a work item: no need to look.
            known_new=inserted == 1,
        )
    await session.flush()
    if draft.direction is Direction.INBOUND and not is_note:
        for hook in INBOUND_HOOKS:
            await hook(session, actor, conversation, message, order)
    return AppendResult(message, duplicate=False, work_item=item)


async def _find_conversation(session: AsyncSession, actor: Actor, conversation_id: UUID) -> Conversation:
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.tenant_id.in_(actor.tenant_ids)
        )
    )
    if conversation is None:
        raise NotFound("Conversation")
    return conversation


async def append_message(
    db: Database,
    actor: Actor,
    conversation_id: UUID,
    draft: MessageDraft,
    *,
    work_note: WorkNote | None = None,
) -> AppendResult:
    """Store a message in one of the actor's conversations (a note, a reply, a chat message).

    Raises NotFound (conversation outside reach), PermissionDenied (client users may
    not write internal notes), ValidationFailed (attachment too large).
    """
    if draft.channel is MessageChannel.NOTE and not (actor.is_staff or actor.kind.value == "system"):
        raise PermissionDenied("Only operations staff write internal notes")
    async with db.transaction(actor.scope) as session:
        conversation = await _find_conversation(session, actor, conversation_id)
        return await append_message_in(session, actor, conversation, draft, work_note=work_note)


# ---------------------------------------------------------------- reading


async def _attachments_by_message(
    session: AsyncSession, tenant_ids: Sequence[UUID], message_ids: Sequence[UUID]
) -> dict[UUID, list[AttachmentView]]:
    if not message_ids:
        return {}
    rows = (
        await session.execute(
            select(
                Attachment.id,
                Attachment.message_id,
                Attachment.filename,
                Attachment.content_type,
                Attachment.size,
                Attachment.content_id,
                Attachment.is_inline,
            ).where(Attachment.tenant_id.in_(tenant_ids), Attachment.message_id.in_(message_ids))
        )
    ).all()
    found: dict[UUID, list[AttachmentView]] = {}
    for row in rows:
        found.setdefault(row.message_id, []).append(AttachmentView.model_validate(row._asdict()))
    return found


def _sees_notes(actor: Actor) -> bool:
    # Internal notes are the operations team's: client users and API keys never see them.
    return actor.is_staff or actor.kind.value == "system"


async def _conversation_views(
    session: AsyncSession, actor: Actor, conversations: Sequence[Conversation]
) -> list[ConversationView]:
    if not conversations:
        return []
    tenants = {c.tenant_id for c in conversations}
    query = (
        select(Message)
        .where(Message.tenant_id.in_(tenants), Message.conversation_id.in_([c.id for c in conversations]))
        .order_by(Message.created_at, Message.id)
    )
    if not _sees_notes(actor):
        query = query.where(Message.channel != MessageChannel.NOTE)
    messages = (await session.scalars(query)).all()
    attachments = await _attachments_by_message(session, list(tenants), [m.id for m in messages])
    by_conversation: dict[UUID, list[MessageView]] = {}
    for m in messages:
        view = MessageView.model_validate(m).model_copy(update={"attachments": attachments.get(m.id, [])})
        by_conversation.setdefault(m.conversation_id, []).append(view)
    return [
        ConversationView.model_validate(c).model_copy(update={"messages": by_conversation.get(c.id, [])})
        for c in conversations
    ]


async def get_conversation(db: Database, actor: Actor, conversation_id: UUID) -> ConversationView:
    """One conversation with its messages. Raises NotFound (missing or another tenant's)."""
    async with db.transaction(actor.scope) as session:
        conversation = await _find_conversation(session, actor, conversation_id)
        return (await _conversation_views(session, actor, [conversation]))[0]


async def list_order_conversations(db: Database, actor: Actor, order_id: UUID) -> list[ConversationView]:
    """The conversations about one order, oldest first. Raises NotFound (order outside reach)."""
    async with db.transaction(actor.scope) as session:
        found = await session.scalar(
            select(Order.id).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
        )
        if found is None:
            raise NotFound("Order")
        conversations = (
            await session.scalars(
                select(Conversation)
                .where(Conversation.tenant_id.in_(actor.tenant_ids), Conversation.order_id == order_id)
                .order_by(Conversation.created_at)
            )
        ).all()
        return await _conversation_views(session, actor, conversations)


async def get_attachment(db: Database, actor: Actor, attachment_id: UUID) -> tuple[AttachmentView, bytes]:
    """An attachment's description and bytes. Raises NotFound (missing or another tenant's)."""
    async with db.transaction(actor.scope) as session:
        row = await session.scalar(
            select(Attachment).where(
                Attachment.id == attachment_id, Attachment.tenant_id.in_(actor.tenant_ids)
            )
        )
        if row is None:
            raise NotFound("Attachment")
        return AttachmentView.model_validate(row), row.data


async def mark_delivery(
    session: AsyncSession,
    tenant_id: UUID,
    message_id: UUID,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    next_attempt_at: dt.datetime | None = None,
) -> None:
    """Record a send attempt's result on an outbound message (used by the sending worker)."""
    values: dict = {"delivery_status": status, "send_attempts": Message.send_attempts + 1}
    if status is DeliveryStatus.SENT:
        values["sent_at"] = utcnow()
        values["next_attempt_at"] = None
    else:
        values["next_attempt_at"] = next_attempt_at
    if error is not None:
        values["last_error"] = error[:500]
    await session.execute(
        update(Message).where(Message.tenant_id == tenant_id, Message.id == message_id).values(values)
    )
