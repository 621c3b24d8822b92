"""The portal's own tables: invitations of client users and decisions asked of the client."""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import DateTime, Enum, ForeignKey, ForeignKeyConstraint, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.accounts.models import ClientRole
from orderdesk.core.db import Base, created_at_column


def _values(kind: type[enum.Enum]) -> list[str]:
    return [member.value for member in kind]


class DecisionVerdict(enum.StrEnum):
    APPROVED = "approved"  # the client agrees with what the agent proposed
    DENIED = "denied"  # the client does not; the comment says what to do instead


class ClientInvitation(Base):
    """A single-use, expiring link with which a client admin brings a colleague in.

    Only the SHA-256 of the token is stored; the link is shown once to the inviter.
    """

    __tablename__ = "client_invitations"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[ClientRole] = mapped_column(
        Enum(
            ClientRole, name="client_role", values_callable=lambda e: [m.value for m in e], create_type=False
        )
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = created_at_column()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[dt.datetime | None]
    accepted_user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[dt.datetime | None]


class ClientDecision(Base):
    """A question an agent put to the client about a work item, and the client's answer.

    While it is open the work item waits on the client (its SLA clock paused); the
    answer puts the item back in the queue with the verdict on it and on the order's
    timeline.
    """

    __tablename__ = "client_decisions"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    work_item_id: Mapped[UUID]
    order_id: Mapped[UUID | None]
    question: Mapped[str] = mapped_column(Text)
    asked_by: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    asked_at: Mapped[dt.datetime] = created_at_column()
    verdict: Mapped[DecisionVerdict | None] = mapped_column(
        Enum(DecisionVerdict, name="decision_verdict", values_callable=_values)
    )
    comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "work_item_id"], ["work_items.tenant_id", "work_items.id"], ondelete="CASCADE"
        ),
        # One open question per work item: asking again while one waits is refused.
        Index(
            "uq_client_decisions_open",
            "tenant_id",
            "work_item_id",
            unique=True,
            postgresql_where=text("decided_at IS NULL"),
        ),
        Index("ix_client_decisions_order", "tenant_id", "order_id"),
    )
