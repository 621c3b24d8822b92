"""Connections to the shop platforms a tenant sells on (Shopify first)."""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.models import pg_enum


class ShopPlatform(enum.StrEnum):
    SHOPIFY = "shopify"


class ShopConnection(Base):
    """A shop whose order webhooks become orders of this tenant, signed with a shared secret."""

    __tablename__ = "shop_connections"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    platform: Mapped[ShopPlatform] = mapped_column(pg_enum(ShopPlatform, "shop_platform"))
    shop_domain: Mapped[str] = mapped_column(String(255))
    webhook_secret: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        Index(
            "uq_shop_connections_tenant_platform_domain", "tenant_id", "platform", "shop_domain", unique=True
        ),
    )
