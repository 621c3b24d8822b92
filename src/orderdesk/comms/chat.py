"""The per-tenant chat webhook: the client's chat platform posts customers' messages here.

Authenticated like the Shopify adapter: `X-OrderDesk-Signature` is base64(HMAC-SHA256)
of the raw body under the tenant's chat secret, checked before the body is read.
The platform's conversation id maps to one of our conversations (chat_threads);
each message goes through the same append service as email, so it lands on the
order's timeline, opens or updates the work item and may get an automatic answer.
Redelivery of the same platform message id is one message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from uuid import UUID

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.comms import intents
from orderdesk.comms import services as comms
from orderdesk.comms.models import (
    MAX_ATTACHMENT_BYTES,
    CommsSettings,
    Conversation,
    Direction,
    MessageChannel,
    Placement,
)
from orderdesk.comms.outbound_models import ChatThread, OutboundSettings
from orderdesk.core.db import Database
from orderdesk.core.errors import AuthenticationFailed, FieldError, ValidationFailed
from orderdesk.core.tenancy import Scope
from orderdesk.orders.models import Order

log = structlog.get_logger("orderdesk.comms.chat")

SIGNATURE_HEADER = "X-OrderDesk-Signature"
REJECTED = "Chat webhook rejected: unknown tenant, no chat channel, or the signature does not match"
MAX_TEXT = 20_000
MAX_ATTACHMENTS = 10
MAX_BODY_BYTES = 16 * 1024 * 1024
_NO_SECRET = "no-secret-configured-" + "x" * 20  # compared anyway, so timing tells nothing


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def signature_matches(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    try:
        provided = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).digest(), provided)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChatSender(_Strict):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ChatAttachmentIn(_Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")
    # The file's bytes, base64.
    data: str = Field(min_length=0)


class ChatMessageIn(_Strict):
    """What the chat platform posts for one customer message."""

    conversation_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    sender: ChatSender
    text: str = Field(default="", max_length=MAX_TEXT)
    attachments: list[ChatAttachmentIn] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    # Optional: the order the customer is asking about, as the chat widget knows it.
    order_number: int | None = Field(default=None, ge=1)

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "conversation_id": "chat-7781",
                    "message_id": "msg-1",
                    "sender": {"name": "Kim Example", "email": "kim@example.com"},
                    "text": "Where is my order 1042?",
                    "attachments": [],
                    "order_number": 1042,
                }
            ]
        },
    )


@dataclass(frozen=True, slots=True)
class ChatReceipt:
    conversation_id: UUID
    message_id: UUID
    duplicate: bool
    placement: str


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]


def parse_body(body: bytes) -> tuple[ChatMessageIn, list[tuple[ChatAttachmentIn, bytes]]]:
    """The posted JSON, checked. Raises ValidationFailed naming each bad field."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            [FieldError("body", f"not valid JSON: {exc}")], "The chat message is not valid"
        ) from None
    try:
        parsed = ChatMessageIn.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(_field_errors(exc), "The chat message is not valid") from None
    errors: list[FieldError] = []
    files: list[tuple[ChatAttachmentIn, bytes]] = []
    for index, attachment in enumerate(parsed.attachments):
        try:
            data = base64.b64decode(attachment.data, validate=True)
        except (binascii.Error, ValueError):
            errors.append(FieldError(f"attachments.{index}.data", "not valid base64"))
            continue
        if len(data) > MAX_ATTACHMENT_BYTES:
            errors.append(
                FieldError(f"attachments.{index}.data", f"larger than {MAX_ATTACHMENT_BYTES} bytes")
            )
        files.append((attachment, data))
    if not parsed.text and not parsed.attachments:
        errors.append(FieldError("text", "a message needs text or an attachment"))
    if errors:
        raise ValidationFailed(errors, "The chat message is not valid")
    return parsed, files


async def _authenticate(db: Database, tenant_id: UUID, body: bytes, signature: str | None) -> None:
    async with db.transaction(Scope.for_tenants(tenant_id)) as session:
        secret = await session.scalar(
            select(OutboundSettings.chat_webhook_secret).where(OutboundSettings.tenant_id == tenant_id)
        )
    if not signature_matches(secret or _NO_SECRET, body, signature) or not secret:
        log.warning(
            "chat_webhook_rejected",
            tenant=str(tenant_id),
            reason="no_channel" if not secret else "bad_signature",
        )
        raise AuthenticationFailed(REJECTED)


def _sender_may_write_about(order: Order, settings: CommsSettings | None, email: str | None) -> bool:
    if not email:
        return False
    email = email.lower()
    if order.customer_email and order.customer_email.lower() == email:
        return True
    contacts = settings.known_contacts if settings else []
    return any(email == c or (c.startswith("@") and email.endswith(c)) for c in contacts)


async def receive_chat_message(
    db: Database, tenant_id: UUID, body: bytes, signature: str | None
) -> ChatReceipt:
    """Authenticate, parse and store one chat message in its conversation.

    Raises AuthenticationFailed (unknown tenant, no chat channel, bad signature: one
    answer for all), ValidationFailed (malformed JSON or fields, bad attachment).
    """
    await _authenticate(db, tenant_id, body, signature)
    message, files = parse_body(body)
    actor = Actor(
        kind=ActorKind.SYSTEM, id=UUID(int=0), display_name="chat webhook", tenant_ids=frozenset({tenant_id})
    )
    async with db.transaction(actor.scope) as session:
        # Serialise messages of one platform conversation, so two first messages make one thread.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"chat:{tenant_id}:{message.conversation_id}"},
        )
        conversation_id = await session.scalar(
            select(ChatThread.conversation_id).where(
                ChatThread.tenant_id == tenant_id, ChatThread.external_id == message.conversation_id
            )
        )
        placement, note = Placement.TOKEN, "the chat platform's conversation id"
        if conversation_id is not None:
            conversation = await session.get(Conversation, (tenant_id, conversation_id), with_for_update=True)
        else:
            order = None
            placement, note = Placement.NEW, "a new chat conversation without an order"
            if message.order_number is not None:
                settings = await session.get(CommsSettings, tenant_id)
                candidate = await session.scalar(
                    select(Order).where(Order.tenant_id == tenant_id, Order.number == message.order_number)
                )
                if candidate is not None and _sender_may_write_about(
                    candidate, settings, message.sender.email
                ):
                    order, placement = candidate, Placement.ORDER_NUMBER
                    note = f"order #{candidate.number} named by the chat, sender is its customer"
                else:
                    placement = Placement.TRIAGE
                    note = f"order {message.order_number} named, but the sender could not be matched to it"
            conversation = await comms.start_conversation_in(
                session,
                tenant_id,
                channel=MessageChannel.CHAT,
                order=order,
                customer_email=message.sender.email,
                customer_name=message.sender.name,
                subject=(message.text or "Chat")[:80],
            )
            await session.execute(
                pg_insert(ChatThread).values(
                    tenant_id=tenant_id,
                    external_id=message.conversation_id,
                    conversation_id=conversation.id,
                    created_at=dt.datetime.now(dt.UTC),
                )
            )
        detected = intents.detect_intent("", message.text)
        order = None
        if conversation.order_id is not None:
            order = await session.get(Order, (tenant_id, conversation.order_id))
        suggestion = intents.suggest_action(
            detected.intent,
            order_label=f"#{order.number}" if order else None,
            status=order.status if order else None,
        )
        about = (message.text or "attachment")[:80]
        title = (
            f"Chat · order #{order.number} · {detected.intent.value.replace('_', ' ')}: {about}"
            if order
            else f"Chat: {about}"
        )
        result = await comms.append_message_in(
            session,
            actor,
            conversation,
            comms.MessageDraft(
                direction=Direction.INBOUND,
                channel=MessageChannel.CHAT,
                created_by="chat webhook",
                sender_address=message.sender.email,
                sender_name=message.sender.name,
                text_body=message.text or None,
                summary=(message.text or "")[:500] or None,
                provider_message_id=f"chat:{message.conversation_id}:{message.message_id}",
                placement=placement,
                placement_note=note,
                language=detected.language,
                intent=detected.intent,
                intent_confidence=detected.confidence,
                attachments=[
                    comms.AttachmentDraft(filename=a.filename, content_type=a.content_type, data=data)
                    for a, data in files
                ],
            ),
            work_note=comms.WorkNote(
                title=title,
                detail=f"Suggested: {suggestion.text}. Threaded by {note}.",
                triage=placement is Placement.TRIAGE,
            ),
        )
        log.info(
            "chat_message_received",
            tenant=str(tenant_id),
            conversation=str(conversation.id),
            duplicate=result.duplicate,
            placement=placement.value,
        )
        return ChatReceipt(conversation.id, result.message.id, result.duplicate, placement.value)
