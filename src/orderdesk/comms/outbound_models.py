"""Outbound communication: email templates, agent macros, chat channels, platform notices.

Every table is tenant-owned: `tenant_id` leads each primary key and each foreign key
to another tenant table, and RLS is enabled and forced (migration 0013). Replies
themselves are rows of `messages` (see comms/models.py) with a delivery status.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import (
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.comms.models import DeliveryStatus
from orderdesk.core.db import Base, created_at_column
from orderdesk.workqueue.states import WorkOutcome


def _existing_enum(kind, name: str) -> Enum:
    # The types belong to migrations 0006/0007; this module only reuses them.
    return Enum(kind, name=name, values_callable=lambda e: [m.value for m in e], create_type=False)


class EmailTemplate(Base):
    """A tenant's email template: a subject and a plain-text body in sandboxed Jinja2."""

    __tablename__ = "email_templates"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (Index("uq_email_templates_name", "tenant_id", "name", unique=True),)


class AgentMacro(Base):
    """A canned action for the reply box: text to insert, an outcome for the item, a tag for the order."""

    __tablename__ = "agent_macros"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # Sandboxed Jinja2 like the templates (same variables); empty means no text.
    insert_text: Mapped[str | None] = mapped_column(Text)
    # Finishes the conversation's work item with this outcome once the reply is queued.
    set_outcome: Mapped[WorkOutcome | None] = mapped_column(_existing_enum(WorkOutcome, "work_outcome"))
    # Added to the order's tags (lower case), with a timeline entry.
    add_tag: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (Index("uq_agent_macros_name", "tenant_id", "name", unique=True),)


class OutboundSettings(Base):
    """A tenant's outbound choices that comms_settings does not hold: auto answers and chat."""

    __tablename__ = "comms_outbound_settings"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # The template a where-is-my-order message is answered with, when auto answers are on.
    auto_answer_template_id: Mapped[UUID | None]
    # The client's chat platform signs each webhook with this (HMAC-SHA256, base64).
    chat_webhook_secret: Mapped[str | None] = mapped_column(String(100))
    # Where our chat replies are posted (JSON, signed with the same secret).
    chat_reply_url: Mapped[str | None] = mapped_column(String(2000))
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "auto_answer_template_id"],
            ["email_templates.tenant_id", "email_templates.id"],
        ),
    )


class ChatThread(Base):
    """The chat platform's conversation id, mapped to ours (one per tenant and platform id)."""

    __tablename__ = "chat_threads"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    conversation_id: Mapped[UUID]
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "conversation_id"], ["conversations.tenant_id", "conversations.id"]
        ),
        Index("ix_chat_threads_conversation", "tenant_id", "conversation_id"),
    )


class PlatformNotice(Base):
    """An email the platform sends to a tenant's people (not a customer conversation).

    Example: the tenant's client admins are told a webhook endpoint was disabled. The
    text is the platform's; the worker sends it over the same SMTP path as replies.
    """

    __tablename__ = "platform_notices"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    provider_message_id: Mapped[str] = mapped_column(String(998))
    delivery_status: Mapped[DeliveryStatus] = mapped_column(
        _existing_enum(DeliveryStatus, "message_delivery_status")
    )
    send_attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        Index(
            "ix_platform_notices_due",
            "next_attempt_at",
            postgresql_where=text("delivery_status = 'queued'"),
        ),
    )
