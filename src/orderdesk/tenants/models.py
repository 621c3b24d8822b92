"""Tenants: the client companies whose orders the operations team handles."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column


class Tenant(Base):
    """A client company. The registry of tenants is global: it is what scopes everything else."""

    __tablename__ = "tenants"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    settings: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[dt.datetime] = created_at_column()


class TenantBranding(Base):
    """How a tenant looks to its own people and its customers: accent colour and logo.

    Tenant-owned (row-level security like any other): the tracking page and outbound
    mail read it under the scope of the order's tenant. Absent row: the defaults.
    """

    __tablename__ = "tenant_branding"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # "#rrggbb", lower case; NULL means the product's own accent.
    accent_colour: Mapped[str | None] = mapped_column(String(7))
    # The logo itself, kept in the database so every web process serves the same one.
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_content_type: Mapped[str | None] = mapped_column(String(40))
    # SHA-256 of the logo: part of its URL, so a new logo is never served from a stale cache.
    logo_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = created_at_column()
    updated_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (CheckConstraint("accent_colour ~ '^#[0-9a-f]{6}$'", name="accent_hex"),)
