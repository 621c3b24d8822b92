"""What the tracking page shows: plain values, already in customer words and the tenant's time zone.

Nothing here carries an internal note, a hold reason, a check, an agent's name or
another order: the service builds these from an allow-list (see `wording.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orderdesk.tenants.branding import Branding


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    when: str
    text: str


@dataclass(frozen=True, slots=True)
class ItemLine:
    line_no: int
    description: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ParcelScan:
    when: str
    text: str
    location: str | None


@dataclass(frozen=True, slots=True)
class ParcelView:
    number: int
    carrier: str
    service: str | None
    tracking_number: str | None
    link: str | None
    status_text: str
    delivered: bool
    problem: bool  # failed attempt, exception, returned: drawn as a warning
    shipped_on: str
    delivered_on: str | None
    items: list[ItemLine]
    scans: list[ParcelScan]


@dataclass(frozen=True, slots=True)
class ReturnSummary:
    rma: str
    status_text: str
    requested_on: str
    items: list[ItemLine]


@dataclass(frozen=True, slots=True)
class ReturnableLine:
    line_no: int
    description: str
    most: int  # units that may still be returned


@dataclass(frozen=True, slots=True)
class ReturnOption:
    """Whether the customer may ask for a return now, and if not, why (in their words)."""

    eligible: bool
    explanation: str
    lines: list[ReturnableLine] = field(default_factory=list)
    until: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    when: str
    from_customer: bool
    author: str  # "You" or the shop's name: never an agent's
    text: str


@dataclass(frozen=True, slots=True)
class TrackingView:
    tenant_slug: str
    branding: Branding
    order_number: int
    placed_on: str
    headline: str
    explanation: str
    paused: bool
    cancelled: bool
    step: int | None  # index into wording.STEPS reached; None when cancelled
    steps: tuple[str, ...]
    promised: str | None  # "Expected by …" line, or None
    late: bool
    ship_to: str
    items: list[ItemLine]
    timeline: list[TimelineEntry]  # newest first
    parcels: list[ParcelView]
    returns: list[ReturnSummary]
    return_option: ReturnOption
    can_message: bool
    messages: list[ThreadMessage] = field(default_factory=list)
