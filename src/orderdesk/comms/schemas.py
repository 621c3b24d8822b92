"""Shapes of the communication feature: what pages, the API and jobs read."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from orderdesk.core.schemas import OutputSchema


class AttachmentView(OutputSchema):
    id: UUID
    message_id: UUID
    filename: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool


class MessageView(OutputSchema):
    id: UUID
    tenant_id: UUID
    conversation_id: UUID
    direction: str
    channel: str
    sender_address: str | None
    sender_name: str | None
    recipients: list[dict]
    subject: str | None
    text_body: str | None
    # Already sanitised when stored: safe to render.
    html_body: str | None
    summary: str | None
    provider_message_id: str | None
    in_reply_to: str | None
    references: list[str]
    language: str | None
    intent: str | None
    intent_confidence: float | None
    is_automated: bool
    automated_reason: str | None
    placement: str
    placement_note: str | None
    delivery_status: str | None
    send_attempts: int
    sent_at: dt.datetime | None
    last_error: str | None
    created_by: str
    created_at: dt.datetime
    attachments: list[AttachmentView] = []


class ConversationView(OutputSchema):
    id: UUID
    tenant_id: UUID
    order_id: UUID | None
    customer_email: str | None
    customer_name: str | None
    reply_token: str
    subject: str | None
    status: str
    channel: str
    message_count: int
    last_message_at: dt.datetime | None
    created_at: dt.datetime
    messages: list[MessageView] = []


class InboundEmailReceipt(OutputSchema):
    """What the inbound-email endpoint answers: where the message went."""

    outcome: str  # stored | duplicate
    message_id: UUID
    conversation_id: UUID
    # token | headers | order_number | new | triage
    placement: str
    note: str
