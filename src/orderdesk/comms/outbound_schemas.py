"""API shapes of the outbound side: templates, macros, replies, outbound settings, chat receipts."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from pydantic import Field

from orderdesk.core.schemas import InputSchema, OutputSchema


def _examples(*examples: dict) -> dict:
    return {**InputSchema.model_config, "json_schema_extra": {"examples": list(examples)}}


class TemplateCreate(InputSchema):
    name: str = Field(min_length=1, max_length=100)
    subject: str = Field(
        max_length=300, description="Jinja2 (sandboxed); see docs/comms.md for the variables"
    )
    body: str = Field(max_length=20_000, description="Plain text, Jinja2 (sandboxed)")
    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")

    model_config = _examples(
        {
            "name": "Where is my order",
            "subject": "Your order {{ order.reference }}",
            "body": "Hello {{ customer.first_name }},\n\nyour order {{ order.reference }} is "
            "{{ tracking.status_label }}.{% if tracking_link %} Track it here: {{ tracking_link }}"
            "{% endif %}\n\n{{ tenant.from_name }}",
        }
    )


class TemplateUpdate(InputSchema):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    subject: str | None = Field(default=None, max_length=300)
    body: str | None = Field(default=None, max_length=20_000)

    model_config = _examples({"subject": "About your order {{ order.reference }}"})


class TemplateView(OutputSchema):
    id: UUID
    tenant_id: UUID
    name: str
    subject: str
    body: str
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class TemplatePreview(OutputSchema):
    subject: str
    body: str
    order_id: UUID | None = Field(
        description="The order rendered; null when the tenant has none (sample data)"
    )
    order_number: int | None


class MacroCreate(InputSchema):
    name: str = Field(min_length=1, max_length=100)
    insert_text: str | None = Field(default=None, max_length=20_000, description="Jinja2 like templates")
    set_outcome: str | None = Field(
        default=None, description="resolved, no_action_needed, escalated, duplicate"
    )
    add_tag: str | None = Field(default=None, max_length=40)
    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")

    model_config = _examples(
        {
            "name": "Shipped: close",
            "insert_text": "Your order {{ order.reference }} is {{ tracking.status_label }}.",
            "set_outcome": "resolved",
            "add_tag": "wismo",
        }
    )


class MacroUpdate(InputSchema):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    insert_text: str | None = Field(default=None, max_length=20_000, description="Empty string clears it")
    set_outcome: str | None = Field(default=None, description="Empty string clears it")
    add_tag: str | None = Field(default=None, max_length=40, description="Empty string clears it")

    model_config = _examples({"add_tag": "late-delivery"})


class MacroView(OutputSchema):
    id: UUID
    tenant_id: UUID
    name: str
    insert_text: str | None
    set_outcome: str | None
    add_tag: str | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ReplyCreate(InputSchema):
    text: str | None = Field(
        default=None, max_length=50_000, description="Free text; wins over the template's body"
    )
    template_id: UUID | None = None
    macro_id: UUID | None = Field(
        default=None, description="Fills an empty text, tags the order, sets the work item's outcome"
    )

    model_config = _examples({"text": "Hello Kim, your parcel left our warehouse today."})


class ReplyView(OutputSchema):
    message_id: UUID
    conversation_id: UUID
    channel: str
    subject: str | None
    text_body: str | None
    provider_message_id: str | None
    in_reply_to: str | None
    delivery_status: str | None
    work_item_id: UUID | None
    outcome_set: str | None
    tag_added: str | None


class OutboundSettingsUpdate(InputSchema):
    auto_answer_template_id: UUID | None = Field(
        default=None, description="The template where-is-my-order messages are answered with"
    )
    clear_auto_answer_template: bool = False
    chat_reply_url: str | None = Field(
        default=None, max_length=2000, description="Where chat replies are posted"
    )
    rotate_chat_secret: bool = False

    model_config = _examples(
        {"chat_reply_url": "https://chat.example.com/hooks/orderdesk", "rotate_chat_secret": True}
    )


class OutboundSettingsView(OutputSchema):
    tenant_id: UUID
    auto_answer_template_id: UUID | None
    chat_reply_url: str | None
    chat_webhook_path: str
    chat_secret: str | None = Field(default=None, description="Only when it was just created or rotated")


class ChatReceiptView(OutputSchema):
    conversation_id: UUID
    message_id: UUID
    duplicate: bool
    placement: str
