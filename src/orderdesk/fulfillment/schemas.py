"""API shapes for shipments, tracking events, returns and the tenant's fulfillment policy."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, field_validator

from orderdesk.core.money import MAX_AMOUNT_MINOR
from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.fulfillment.models import ReturnReason, TrackingStatus
from orderdesk.fulfillment.policy import DEFAULT_TRANSIT_DAYS, MAX_TRANSIT_DAYS

LineNo = Annotated[int, Field(ge=1, le=10_000)]
# A carrier estimate further out than this after shipping is a typo or a wrong year.
MAX_ESTIMATE_DAYS = 90
ESTIMATE_SHAPE = "must be a date like 2026-05-05 or a date and time like 2026-05-05T18:00:00Z"
Units = Annotated[int, Field(gt=0, le=1_000_000)]


class ShipLineIn(InputSchema):
    line_no: LineNo
    quantity: Units


class ShipmentIn(InputSchema):
    external_ref: str | None = Field(
        default=None, max_length=100, description="Your shipment id: a repeated create returns the first"
    )
    warehouse_id: UUID = Field(description="The warehouse it leaves from (one per shipment)")
    carrier: str = Field(min_length=1, max_length=60, examples=["DHL"])
    service: str | None = Field(default=None, max_length=60, examples=["Paket"])
    tracking_number: str | None = Field(default=None, max_length=100, examples=["00340434161234567890"])
    tracking_url: str | None = Field(default=None, max_length=2000)
    shipped_at: dt.datetime | None = Field(default=None, description="Default: now")
    lines: list[ShipLineIn] = Field(min_length=1, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "external_ref": "WMS-SHP-5512",
                    "warehouse_id": "01920c4e-8d3a-7c55-9b1e-3f6a2d4c5e7f",
                    "carrier": "DHL",
                    "service": "Paket",
                    "tracking_number": "00340434161234567890",
                    "tracking_url": "https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode=00340434161234567890",
                    "lines": [{"line_no": 1, "quantity": 2}],
                }
            ]
        },
    }


class ShipmentPatch(InputSchema):
    carrier: str | None = Field(default=None, min_length=1, max_length=60)
    service: str | None = Field(default=None, max_length=60)
    tracking_number: str | None = Field(default=None, max_length=100)
    tracking_url: str | None = Field(default=None, max_length=2000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "tracking_number": "1Z999AA10123456784",
                    "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
                }
            ]
        },
    }


class TrackingEventIn(InputSchema):
    event_id: str = Field(
        min_length=1, max_length=200, description="Your (or the carrier's) id: a retry is recorded once"
    )
    status: TrackingStatus
    occurred_at: dt.datetime
    raw_status: str | None = Field(default=None, max_length=200, examples=["Zustellung erfolgreich"])
    location: str | None = Field(default=None, max_length=200, examples=["Berlin, DE"])
    description: str | None = Field(default=None, max_length=500)
    # A date alone is the carrier's usual promise ("delivery on Tuesday"): by the end of that day.
    estimated_delivery: dt.datetime | dt.date | None = Field(
        default=None,
        description=(
            "The carrier's estimated delivery, when this update gives one: a date (by the end of that"
            " day in the client's time zone) or a date and time. Not before the shipment left, at most"
            f" {MAX_ESTIMATE_DAYS} days after. The estimate of the newest update (by occurred_at) is kept"
        ),
        examples=["2026-05-05"],
    )

    @field_validator("estimated_delivery", mode="before")
    @classmethod
    def _date_or_date_and_time(cls, value: object) -> object:
        # Read by hand: left to the union, "2026-05-05" would become midnight, the start
        # of the day the carrier means, and a bare number a time in 1970.
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(ESTIMATE_SHAPE)
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(ESTIMATE_SHAPE) from None

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "event_id": "dhl-7781-03",
                    "status": "out_for_delivery",
                    "occurred_at": "2026-05-04T07:12:00Z",
                    "raw_status": "In Zustellung",
                    "location": "Berlin, DE",
                    "estimated_delivery": "2026-05-04",
                }
            ]
        },
    }


class ShipmentLineView(OutputSchema):
    line_no: int
    sku: str
    quantity: int


class TrackingEventView(OutputSchema):
    id: UUID
    external_event_id: str
    status: str
    raw_status: str | None
    location: str | None
    description: str | None
    occurred_at: dt.datetime
    estimated_delivery_at: dt.datetime | None = None
    received_at: dt.datetime


class ShipmentView(OutputSchema):
    id: UUID
    order_id: UUID
    number: int
    warehouse_id: UUID
    warehouse_code: str
    external_ref: str | None
    carrier: str
    service: str | None
    tracking_number: str | None
    tracking_url: str | None
    status: str
    attention: str | None
    attention_since: dt.datetime | None
    attention_detail: str | None
    shipped_at: dt.datetime
    last_event_at: dt.datetime | None
    delivered_at: dt.datetime | None
    estimated_delivery_at: dt.datetime | None = Field(
        default=None, description="The carrier's latest estimated delivery, if a tracking update gave one"
    )
    lines: list[ShipmentLineView]
    events: list[TrackingEventView] = Field(default_factory=list)


class TrackingResult(OutputSchema):
    duplicate: bool = Field(description="True when this event id was already recorded (nothing changed)")
    shipment: ShipmentView


class ReturnLineIn(InputSchema):
    line_no: LineNo
    quantity: Units


class ReturnIn(InputSchema):
    reason: ReturnReason
    note: str | None = Field(default=None, max_length=1000)
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "reason": "damaged",
                    "note": "Pole snapped in transit",
                    "lines": [{"line_no": 1, "quantity": 1}],
                }
            ]
        },
    }


class DecisionIn(InputSchema):
    note: str | None = Field(default=None, max_length=1000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"note": "Photo of the damage received"}]},
    }


class RejectionIn(InputSchema):
    reason: str = Field(min_length=3, max_length=1000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"reason": "Used and outside the return window"}]},
    }


class ReceivedLineIn(InputSchema):
    line_no: LineNo
    restock_quantity: int = Field(default=0, ge=0, le=1_000_000, description="Units fit to sell again")
    condition: str | None = Field(default=None, max_length=300, examples=["as new", "box damaged"])


class ReceiveIn(InputSchema):
    warehouse_id: UUID | None = Field(
        default=None, description="Where restocked units go (required to restock)"
    )
    lines: list[ReceivedLineIn] = Field(default_factory=list, max_length=500)
    note: str | None = Field(default=None, max_length=1000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "warehouse_id": "01920c4e-8d3a-7c55-9b1e-3f6a2d4c5e7f",
                    "lines": [{"line_no": 1, "restock_quantity": 1, "condition": "as new"}],
                }
            ]
        },
    }


class RefundIn(InputSchema):
    amount_minor: int = Field(
        gt=0, le=MAX_AMOUNT_MINOR, description="Integer minor units of the order currency"
    )
    note: str | None = Field(default=None, max_length=1000)

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"amount_minor": 19900, "note": "Refunded to the original card"}]},
    }


class ReturnLineView(OutputSchema):
    line_no: int
    sku: str
    quantity: int
    restocked_qty: int
    condition: str | None


class ReturnView(OutputSchema):
    id: UUID
    order_id: UUID
    rma: str
    status: str
    reason: str
    note: str | None
    channel: str
    requested_by: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    received_at: dt.datetime | None
    received_warehouse_id: UUID | None
    refund_minor: int | None
    refunded_at: dt.datetime | None
    created_at: dt.datetime
    lines: list[ReturnLineView]


class FulfillmentPolicyIn(InputSchema):
    stuck_after_hours: int = Field(
        default=72, ge=1, le=24 * 60, description="A shipment without tracking news this long needs a look"
    )
    return_window_days: int = Field(
        default=30, ge=0, le=365, description="Days after delivery a return may be requested (0: none)"
    )
    invoice_on: Literal["verification", "shipment", "manual"] = Field(
        default="manual", description="When the order's invoice is issued (manual: by request)"
    )
    transit_days: int = Field(
        default=DEFAULT_TRANSIT_DAYS,
        ge=1,
        le=MAX_TRANSIT_DAYS,
        description=(
            "Days a parcel usually takes from the warehouse to the customer: the expected delivery"
            " when the carrier gives no estimate (shipped time plus this; not shipped yet: now plus this)"
        ),
    )

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "stuck_after_hours": 48,
                    "return_window_days": 30,
                    "invoice_on": "shipment",
                    "transit_days": 2,
                }
            ]
        },
    }


class FulfillmentPolicyView(FulfillmentPolicyIn):
    pass
