"""People and credentials: users, their tenant memberships, sessions and API keys.

Identity (`users`) is global so that sign-in can find an account by email before
any tenant is known. What a user may reach is tenant-owned: a client user's
membership, an agent's assignments. Those rows sit under row-level security like
every other tenant-owned table.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column


class UserKind(enum.StrEnum):
    STAFF = "staff"  # works for the operations company, in the console
    CLIENT = "client"  # works for one client company, in the portal


class StaffRole(enum.StrEnum):
    AGENT = "agent"  # handles work items of the tenants assigned to them
    LEAD = "lead"  # an agent who also watches and reassigns their tenants' queues
    ADMIN = "admin"  # runs the platform: every tenant, users, settings


class ClientRole(enum.StrEnum):
    VIEWER = "viewer"  # reads the tenant's orders and reports
    ADMIN = "admin"  # also manages the tenant's users, keys and webhooks


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(kind, name=name, values_callable=lambda e: [m.value for m in e])


class User(Base):
    __tablename__ = "users"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    kind: Mapped[UserKind] = mapped_column(_enum(UserKind, "user_kind"))
    # Only staff have a staff role; the CHECK in the migration keeps the two consistent.
    staff_role: Mapped[StaffRole | None] = mapped_column(_enum(StaffRole, "staff_role"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[dt.datetime] = created_at_column()
    last_sign_in_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("uq_users_email_lower", func.lower(email), unique=True),)


class ClientMembership(Base):
    """Binds a client user to their one tenant."""

    __tablename__ = "client_memberships"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), primary_key=True, unique=True)
    role: Mapped[ClientRole] = mapped_column(_enum(ClientRole, "client_role"))
    created_at: Mapped[dt.datetime] = created_at_column()


class AgentAssignment(Base):
    """A staff user assigned to a tenant, with the skills they bring to its work."""

    __tablename__ = "agent_assignments"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    languages: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(16)), server_default="{}")
    task_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (Index("ix_agent_assignments_user_id", "user_id"),)


class ApiKey(Base):
    """A tenant's key for the REST API. Only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # First characters of the key, shown in lists so a person can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = created_at_column()
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = created_at_column()
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # Absolute limit: the session ends then, however active it is.
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(300))


class SignInFailure(Base):
    """One failed sign-in, counted per account and per address to throttle guessing."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))  # "account:<email>" or "address:<ip>"
    failed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_sign_in_failures_subject_failed_at", "subject", "failed_at"),)
