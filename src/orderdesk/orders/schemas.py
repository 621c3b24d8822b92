"""API shapes for orders: what comes in (`OrderCreate`), what goes out (`OrderView`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

from pydantic import Field

from orderdesk.core.money import MAX_AMOUNT_MINOR
from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.orders.models import CheckResolution, PaymentStatus, Priority
from orderdesk.orders.states import HoldReason

MAX_LINES = 500
Amount = Annotated[
    int, Field(ge=0, le=MAX_AMOUNT_MINOR, description="Integer minor units (cents, yen, fils…)")
]


class AddressIn(InputSchema):
    name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    line1: str = Field(max_length=200, examples=["Unter den Linden 1"])
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(max_length=100, examples=["Berlin"])
    region: str | None = Field(default=None, max_length=100, description="State, province or prefecture")
    postal_code: str | None = Field(default=None, max_length=20, examples=["10117"])
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2", examples=["DE"])


class CustomerIn(InputSchema):
    name: str = Field(max_length=200, examples=["Erika Mustermann"])
    email: str | None = Field(default=None, max_length=254, examples=["erika@example.com"])
    phone: str | None = Field(default=None, max_length=40, description="Any format; stored as E.164")


class LineIn(InputSchema):
    sku: str = Field(max_length=64, examples=["TENT-2P-GRN"])
    description: str | None = Field(default=None, max_length=300)
    quantity: int = Field(gt=0, le=1_000_000)
    unit_price_minor: Amount
    tax_minor: Amount = Field(default=0, description="Tax for the whole line, in minor units")


class OrderCreate(InputSchema):
    """A new order. Totals are computed by the server; `total_minor`, if sent, must match."""

    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")
    external_ref: str | None = Field(
        default=None,
        max_length=100,
        description="Your own order id; unique per tenant, the idempotency anchor",
    )
    customer: CustomerIn
    shipping_address: AddressIn
    billing_address: AddressIn | None = None
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217", examples=["EUR"])
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    shipping_minor: Amount = 0
    discount_minor: Amount = 0
    total_minor: int | None = Field(default=None, description="Checked against the computed total when given")
    payment_status: PaymentStatus = PaymentStatus.PENDING
    priority: Priority = Priority.NORMAL
    ship_by: dt.datetime | None = None
    deliver_by: dt.datetime | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    notes: str | None = Field(default=None, max_length=5000, description="Internal; never shown to customers")

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "external_ref": "SHOP-10045",
                    "customer": {
                        "name": "Erika Mustermann",
                        "email": "erika@example.com",
                        "phone": "+49 30 1234567",
                    },
                    "shipping_address": {
                        "line1": "Unter den Linden 1",
                        "city": "Berlin",
                        "postal_code": "10117",
                        "country": "DE",
                    },
                    "currency": "EUR",
                    "lines": [
                        {"sku": "TENT-2P-GRN", "quantity": 1, "unit_price_minor": 19900, "tax_minor": 3781}
                    ],
                    "shipping_minor": 495,
                    "payment_status": "paid",
                    "priority": "normal",
                    "tags": ["summer-sale"],
                }
            ]
        },
    }


class HoldIn(InputSchema):
    reason: HoldReason
    note: str | None = Field(default=None, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [{"reason": "address_problem", "note": "No house number; emailed the customer"}]
        },
    }


class HoldReleaseIn(InputSchema):
    reason: HoldReason
    note: str | None = Field(default=None, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [{"reason": "address_problem", "note": "Customer confirmed: house number 12"}]
        },
    }


class ActionIn(InputSchema):
    note: str | None = Field(default=None, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"note": "Customer asked by phone"}]},
    }


class CheckDecisionIn(InputSchema):
    resolution: CheckResolution
    note: str | None = Field(default=None, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {"resolution": "overridden", "note": "Regular customer; bank transfer arrived today"}
            ]
        },
    }


class PaymentUpdateIn(InputSchema):
    payment_status: PaymentStatus

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"payment_status": "paid"}]},
    }


class AddressView(OutputSchema):
    name: str | None = None
    company: str | None = None
    line1: str
    line2: str | None = None
    city: str
    region: str | None = None
    postal_code: str | None = None
    country: str


class LineView(OutputSchema):
    line_no: int
    sku: str
    description: str
    quantity: int
    unit_price_minor: int
    tax_minor: int
    total_minor: int


class HoldView(OutputSchema):
    id: UUID
    reason: HoldReason
    note: str | None
    placed_at: dt.datetime
    placed_by: str
    released_at: dt.datetime | None
    released_by: str | None


class CheckView(OutputSchema):
    check: str
    result: str
    detail: str
    resolution: str | None
    resolved_by: str | None
    resolved_at: dt.datetime | None


class EventView(OutputSchema):
    seq: int
    kind: str
    actor_kind: str
    actor_name: str
    channel: str
    summary: str
    changes: dict
    created_at: dt.datetime


class OrderSummary(OutputSchema):
    id: UUID
    tenant_id: UUID
    number: int
    external_ref: str | None
    channel: str
    status: str
    payment_status: str
    priority: str
    customer_name: str
    customer_email: str | None
    currency: str
    total_minor: int
    tags: list[str]
    on_hold: bool = False
    created_at: dt.datetime


class OrderView(OrderSummary):
    customer_phone: str | None
    shipping_address: AddressView
    billing_address: AddressView | None
    subtotal_minor: int
    tax_minor: int
    shipping_minor: int
    discount_minor: int
    ship_by: dt.datetime | None
    deliver_by: dt.datetime | None
    notes: str | None
    lines: list[LineView]
    holds: list[HoldView]
    checks: list[CheckView]
    allowed_actions: list[str]
    updated_at: dt.datetime
    version: int


class OrderPage(OutputSchema):
    items: list[OrderSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class CatalogItemIn(InputSchema):
    name: str = Field(min_length=1, max_length=200, examples=["Two-person tent, green"])
    active: bool = True

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"name": "Two-person tent, green", "active": True}]},
    }


class CatalogItemView(OutputSchema):
    sku: str
    name: str
    active: bool


class VerificationPolicyIn(InputSchema):
    auto_verify: bool = Field(
        default=False, description="Orders that pass every check verify themselves; others wait for an agent"
    )
    high_value_minor: dict[str, Annotated[int, Field(gt=0, le=MAX_AMOUNT_MINOR)]] = Field(
        default_factory=dict,
        examples=[{"EUR": 100000, "JPY": 150000}],
        description="Per currency, the total from which an order needs a person's look",
    )
    duplicate_window_minutes: int = Field(default=60, ge=1, le=10080)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "auto_verify": True,
                    "high_value_minor": {"EUR": 100000, "JPY": 150000},
                    "duplicate_window_minutes": 60,
                }
            ]
        },
    }


class VerificationPolicyView(VerificationPolicyIn):
    pass
