"""API shapes for warehouses, stock levels, stock updates, the ledger and allocations."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from uuid import UUID

from pydantic import Field, model_validator

from orderdesk.core.schemas import InputSchema, OutputSchema

Quantity = Annotated[int, Field(ge=0, le=100_000_000)]
CountryCode = Annotated[str, Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")]


class WarehouseAddressIn(InputSchema):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)


class WarehouseIn(InputSchema):
    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")
    code: str = Field(min_length=1, max_length=32, examples=["BER-1"])
    name: str = Field(min_length=1, max_length=200, examples=["Berlin fulfillment center"])
    country: CountryCode = Field(examples=["DE"])
    region: str | None = Field(default=None, max_length=100, examples=["Berlin"])
    address: WarehouseAddressIn = Field(default_factory=WarehouseAddressIn)
    priority: int = Field(default=100, ge=0, le=10_000, description="Lower ranks first among equally near")
    ships_to: list[CountryCode] = Field(default_factory=list, max_length=250, description="Empty: anywhere")
    time_zone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    cutoff_time: dt.time | None = Field(
        default=None, description="Daily cut-off in the warehouse's time zone"
    )
    active: bool = True

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "code": "BER-1",
                    "name": "Berlin fulfillment center",
                    "country": "DE",
                    "region": "Berlin",
                    "address": {"line1": "Lager Strasse 5", "city": "Berlin", "postal_code": "12057"},
                    "priority": 10,
                    "ships_to": ["DE", "AT", "CH"],
                    "time_zone": "Europe/Berlin",
                    "cutoff_time": "15:00:00",
                }
            ]
        },
    }


class WarehousePatch(InputSchema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    country: CountryCode | None = None
    region: str | None = Field(default=None, max_length=100)
    address: WarehouseAddressIn | None = None
    priority: int | None = Field(default=None, ge=0, le=10_000)
    ships_to: list[CountryCode] | None = Field(default=None, max_length=250)
    time_zone: str | None = Field(default=None, max_length=64)
    cutoff_time: dt.time | None = None
    active: bool | None = None

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"priority": 20, "active": False}]},
    }


class WarehouseView(OutputSchema):
    id: UUID
    tenant_id: UUID
    code: str
    name: str
    country: str
    region: str | None
    address: dict
    priority: int
    ships_to: list[str]
    time_zone: str
    cutoff_time: dt.time | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class StockUpdateItem(InputSchema):
    """One SKU: an absolute level (`on_hand`), a change (`delta`), and/or a low-stock threshold."""

    sku: str = Field(min_length=1, max_length=64)
    on_hand: Quantity | None = Field(default=None, description="The counted level (replaces the figure)")
    delta: int | None = Field(
        default=None, ge=-100_000_000, le=100_000_000, description="Units in (+) or out (-)"
    )
    low_stock_threshold: Quantity | None = None
    clear_threshold: bool = Field(default=False, description="Remove the low-stock threshold")

    @model_validator(mode="after")
    def _one_change(self) -> StockUpdateItem:
        if self.on_hand is not None and self.delta is not None:
            raise ValueError("give either on_hand or delta, not both")
        if (
            self.on_hand is None
            and self.delta is None
            and self.low_stock_threshold is None
            and not self.clear_threshold
        ):
            raise ValueError("give on_hand, delta or low_stock_threshold")
        return self


class StockUpdateIn(InputSchema):
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id for this update: a retry with the same id is applied once and answered the same",
    )
    reason: str | None = Field(default=None, max_length=500, examples=["Goods receipt ASN-4711"])
    updates: list[StockUpdateItem] = Field(min_length=1, max_length=1000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "event_id": "asn-4711",
                    "reason": "Goods receipt ASN-4711",
                    "updates": [
                        {"sku": "TENT-2P-GRN", "delta": 24},
                        {"sku": "MAT-1", "on_hand": 120, "low_stock_threshold": 10},
                    ],
                }
            ]
        },
    }


class AdjustmentIn(InputSchema):
    delta: int = Field(ge=-100_000_000, le=100_000_000, description="Units added (+) or removed (-)")
    reason: str = Field(min_length=3, max_length=500, examples=["Damaged in storage, counted 2024-05-03"])

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [{"delta": -2, "reason": "Damaged in storage, counted 2024-05-03"}]
        },
    }


class StockLevelView(OutputSchema):
    warehouse_id: UUID
    warehouse_code: str
    sku: str
    on_hand: int
    reserved: int
    available: int
    low_stock_threshold: int | None
    low_stock: bool
    updated_at: dt.datetime


class StockUpdateResult(OutputSchema):
    event_id: str | None
    replayed: bool = False
    levels: list[StockLevelView]
    # CSV uploads: rows reported instead of applied ({line, field, message}).
    rejected: list[dict] = Field(default_factory=list)


class MovementView(OutputSchema):
    id: int
    warehouse_id: UUID
    sku: str
    kind: str
    on_hand_before: int
    on_hand_after: int
    reserved_before: int
    reserved_after: int
    order_id: UUID | None
    reason: str | None
    source_event_id: str | None
    actor_kind: str
    actor_name: str
    created_at: dt.datetime


class AllocationLineView(OutputSchema):
    line_no: int
    sku: str
    warehouse_id: UUID
    warehouse_code: str
    reserved_qty: int
    shipped_qty: int


class BackorderView(OutputSchema):
    line_no: int
    sku: str
    quantity: int


class OrderAllocationView(OutputSchema):
    order_id: UUID
    status: str
    allocations: list[AllocationLineView]
    backorders: list[BackorderView]


class OverrideIn(InputSchema):
    warehouse_id: UUID = Field(description="The warehouse that should ship instead")
    reason: str = Field(min_length=3, max_length=500, examples=["Customer collects in Munich"])
    line_nos: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="Only these lines (default: every line not yet shipped)"
    )

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "warehouse_id": "01a216b2-5c8b-7e8b-9a59-aa08496e4e6c",
                    "reason": "Customer collects in Munich",
                    "line_nos": [1],
                }
            ]
        },
    }
