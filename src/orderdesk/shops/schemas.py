"""API shapes for shop connections and the answers the Shopify webhook gives."""

from __future__ import annotations

import datetime as dt
from typing import Literal
from uuid import UUID

from pydantic import Field

from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.shops.models import ShopPlatform


class ShopConnectionCreate(InputSchema):
    """Connect a shop to a tenant; connecting a shop that is already connected replaces its secret."""

    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")
    platform: ShopPlatform = ShopPlatform.SHOPIFY
    shop_domain: str = Field(
        min_length=1,
        max_length=255,
        description="The shop's permanent myshopify.com domain (Shopify sends it in X-Shopify-Shop-Domain)",
        examples=["acme-outdoor.myshopify.com"],
    )
    webhook_secret: str = Field(
        min_length=16,
        max_length=255,
        description="The secret Shopify signs the shop's webhooks with (the app's client secret, or the "
        "key shown under Settings → Notifications → Webhooks). Never returned by the API.",
    )

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "shop_domain": "acme-outdoor.myshopify.com",
                    "webhook_secret": "6f1d0c3e9b2a47c58e0f3a9d1b7c2e4f",
                }
            ]
        },
    }


class ShopConnectionView(OutputSchema):
    id: UUID
    tenant_id: UUID
    platform: ShopPlatform
    shop_domain: str
    active: bool
    created_at: dt.datetime
    webhook_path: str = Field(
        description="Where the shop's orders/create webhook must be sent, relative to this server",
        examples=["/hooks/shopify/acme"],
    )


class ShopifyWebhookReceipt(OutputSchema):
    """What the webhook answers. Shopify only reads the status code; people debugging read this."""

    outcome: Literal["created", "existing", "ignored"] = Field(
        description="created: a new order; existing: a redelivery, the order already exists; "
        "ignored: a topic other than orders/create"
    )
    order_id: UUID | None = None
    order_number: int | None = None
    topic: str | None = None
