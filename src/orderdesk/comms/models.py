"""Customer communication: conversations, their messages and attachments, per-tenant settings.

Every table is tenant-owned: `tenant_id` leads each primary key and each foreign key
to another tenant table. A conversation belongs to one customer and, when we know
it, one order; its messages cross channels (email, chat, portal, tracking page,
internal notes) and directions (in from the customer, out from us).
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column

# One attachment, and one whole message, may be at most this large (bytes). The SMTP
# listener and the HTTP endpoint refuse larger messages before anything is stored.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_MESSAGE_BYTES = 15 * 1024 * 1024


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(kind, name=name, values_callable=lambda e: [m.value for m in e])


class ConversationStatus(enum.StrEnum):
    OPEN = "open"  # the customer wrote last: an answer is owed
    WAITING = "waiting"  # we answered last: the customer has the next move
    CLOSED = "closed"  # nothing more expected; a new inbound message reopens it


class Direction(enum.StrEnum):
    INBOUND = "in"  # from the customer (or whoever wrote to the tenant's address)
    OUTBOUND = "out"  # from us to the customer


class MessageChannel(enum.StrEnum):
    EMAIL = "email"
    CHAT = "chat"  # the client's chat platform, through the chat webhook
    PORTAL = "portal"  # written by client staff in the portal
    TRACKING = "tracking"  # the chat box of the public tracking page
    NOTE = "note"  # an internal note: never sent to the customer


class Placement(enum.StrEnum):
    """How an inbound message found its conversation (the threading step that decided)."""

    TOKEN = "token"  # the reply address carried the conversation's token
    HEADERS = "headers"  # In-Reply-To / References named one of our own Message-IDs
    ORDER_NUMBER = "order_number"  # an order number in subject or body, sender matches the customer
    NEW = "new"  # nothing matched: a new conversation without an order
    TRIAGE = "triage"  # something matched but could not be trusted: an agent decides
    OUTBOUND = "outbound"  # written by us


class Intent(enum.StrEnum):
    WHERE_IS_MY_ORDER = "where_is_my_order"
    CANCEL = "cancel"
    CHANGE_ADDRESS = "change_address"
    RETURN_REQUEST = "return_request"
    OTHER = "other"


class DeliveryStatus(enum.StrEnum):
    """Outbound messages only: where sending stands (the worker moves it along)."""

    QUEUED = "queued"  # written, waiting for the worker
    SENT = "sent"  # accepted by the mail server / chat endpoint
    FAILED = "failed"  # retries exhausted; an agent sees why in `last_error`


class CommsSettings(Base):
    """A tenant's communication settings; absent means no inbound address and no automation."""

    __tablename__ = "comms_settings"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # The local part of the tenant's inbound address (`acme` in acme@inbound.example);
    # replies go to `acme+c_<token>@…`. Unique across tenants: it is how mail finds its tenant.
    inbound_local_part: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the secret an inbound-parse service presents to the HTTP endpoint.
    inbound_secret_hash: Mapped[str | None] = mapped_column(String(64))
    from_name: Mapped[str | None] = mapped_column(String(200))
    from_address: Mapped[str | None] = mapped_column(String(254))
    # The tenant allows safe automatic answers (where is my order, with tracking status).
    auto_answer_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # A regular expression with one group capturing the order number (digits), e.g.
    # `ACME-(\d{3,10})`; NULL means the default patterns ("#1042", "order 1042").
    order_number_pattern: Mapped[str | None] = mapped_column(String(200))
    # Addresses (`ops@client.example`) or domains (`@client.example`) that may write
    # about any order of the tenant, besides the order's own customer.
    known_contacts: Mapped[list[str]] = mapped_column(ARRAY(String(254)), server_default="{}")
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        Index("uq_comms_settings_inbound_local_part", "inbound_local_part", unique=True),
        CheckConstraint("inbound_local_part = lower(inbound_local_part)", name="local_part_lower"),
    )


class Conversation(Base):
    """One customer's exchange with the tenant, usually about one order."""

    __tablename__ = "conversations"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID | None]
    customer_email: Mapped[str | None] = mapped_column(String(254))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    # Carried in reply addresses (`acme+c_<token>@…`); random, so it cannot be guessed.
    reply_token: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[ConversationStatus] = mapped_column(_enum(ConversationStatus, "conversation_status"))
    channel: Mapped[MessageChannel] = mapped_column(_enum(MessageChannel, "message_channel"))
    message_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_message_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        Index("uq_conversations_reply_token", "tenant_id", "reply_token", unique=True),
        Index("ix_conversations_order", "tenant_id", "order_id"),
        Index("ix_conversations_customer", "tenant_id", "customer_email"),
    )


class Message(Base):
    """One message of a conversation, in either direction, on any channel."""

    __tablename__ = "messages"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[UUID]
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "message_direction"))
    channel: Mapped[MessageChannel] = mapped_column(
        Enum(
            MessageChannel,
            name="message_channel",
            values_callable=lambda e: [m.value for m in e],
            create_type=False,
        )
    )
    sender_address: Mapped[str | None] = mapped_column(String(254))
    sender_name: Mapped[str | None] = mapped_column(String(200))
    # [{"kind": "to"|"cc"|"bcc", "address": "...", "name": "..."}]
    recipients: Mapped[list] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    subject: Mapped[str | None] = mapped_column(String(998))
    text_body: Mapped[str | None] = mapped_column(Text)
    # Sanitised: no scripts, no remote images, no event handlers. Safe to render as is.
    html_body: Mapped[str | None] = mapped_column(Text)
    # The new part only: quoted replies and the signature stripped.
    summary: Mapped[str | None] = mapped_column(Text)
    # The Message-ID (email) or the platform's id (chat); dedupes redeliveries.
    provider_message_id: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    language: Mapped[str | None] = mapped_column(String(16))
    intent: Mapped[Intent | None] = mapped_column(_enum(Intent, "message_intent"))
    intent_confidence: Mapped[float | None] = mapped_column(Float)
    # An auto-reply, bounce or bulk mail: stored and shown, but never answered automatically.
    is_automated: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    automated_reason: Mapped[str | None] = mapped_column(String(100))
    placement: Mapped[Placement] = mapped_column(_enum(Placement, "message_placement"))
    # Why it went where it went, in words an agent understands (also logged).
    placement_note: Mapped[str | None] = mapped_column(String(500))
    # The message exactly as received (inbound email), so nothing is lost to a parsing bug.
    raw_mime: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_size: Mapped[int | None] = mapped_column(Integer)
    # Outbound only: sending state, advanced by the worker.
    delivery_status: Mapped[DeliveryStatus | None] = mapped_column(
        _enum(DeliveryStatus, "message_delivery_status")
    )
    send_attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "conversation_id"], ["conversations.tenant_id", "conversations.id"]
        ),
        # Redelivery of the same message is one message.
        Index(
            "uq_messages_provider_message_id",
            "tenant_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        Index("ix_messages_conversation", "tenant_id", "conversation_id", "created_at"),
        Index(
            "ix_messages_outbound_due",
            "next_attempt_at",
            postgresql_where=text("delivery_status = 'queued'"),
        ),
        CheckConstraint(
            "intent_confidence IS NULL OR (intent_confidence >= 0 AND intent_confidence <= 1)",
            name="confidence_range",
        ),
    )


class Attachment(Base):
    """A file that came with (or goes with) a message, kept in PostgreSQL."""

    __tablename__ = "message_attachments"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    message_id: Mapped[UUID]
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # For inline images referenced from the HTML as cid:…
    content_id: Mapped[str | None] = mapped_column(String(255))
    is_inline: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"], ondelete="CASCADE"
        ),
        Index("ix_message_attachments_message", "tenant_id", "message_id"),
        CheckConstraint(f"size >= 0 AND size <= {MAX_ATTACHMENT_BYTES}", name="size_limit"),
    )
