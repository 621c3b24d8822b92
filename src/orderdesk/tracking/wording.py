"""What a customer is told: internal states, holds and carrier scans in customer words.

Pure tables, no I/O. Everything here is an allow-list: a timeline event kind or a
status that is not listed is not shown, so a new internal event never leaks onto
the public page by default. Hold reasons are folded into wording that is safe to
show (a fraud review reads like any other review); notes, check details, agent
names and decision notes are never inputs to these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from orderdesk.fulfillment.models import ReturnReason, ReturnStatus, TrackingStatus
from orderdesk.orders.states import HoldReason, OrderStatus

S = OrderStatus

# The progress bar: five steps every customer understands.
STEPS = ("Ordered", "Confirmed", "Preparing", "Shipped", "Delivered")
_STEP_OF_STATUS = {
    S.CAPTURED: 0,
    S.AWAITING_VERIFICATION: 0,
    S.VERIFIED: 1,
    S.ALLOCATED: 2,
    S.BACKORDERED: 2,
    S.PICKING: 2,
    S.PACKED: 2,
    S.PARTIALLY_SHIPPED: 3,
    S.SHIPPED: 3,
    S.DELIVERED: 4,
    S.RETURN_REQUESTED: 4,
    S.RETURN_RECEIVED: 4,
    S.REFUNDED: 4,
    S.RETURN_REJECTED: 4,
    S.CLOSED: 4,
}

# (headline, one sentence of explanation) per status.
_HEADLINES: dict[OrderStatus, tuple[str, str]] = {
    S.CAPTURED: ("Order received", "We have your order and will confirm it shortly."),
    S.AWAITING_VERIFICATION: (
        "Order received",
        "We are checking a few details before we confirm your order.",
    ),
    S.VERIFIED: ("Order confirmed", "Your order is confirmed and will be prepared soon."),
    S.ALLOCATED: ("Being prepared", "Our warehouse is getting your order ready."),
    S.PICKING: ("Being prepared", "Our warehouse is getting your order ready."),
    S.PACKED: ("Packed", "Your order is packed and waiting for the carrier."),
    S.BACKORDERED: (
        "Waiting for stock",
        "Some items are on their way to our warehouse; we will send your order as soon as they arrive.",
    ),
    S.PARTIALLY_SHIPPED: ("Partly shipped", "Part of your order is on its way; the rest follows."),
    S.SHIPPED: ("On its way", "Your order is with the carrier."),
    S.DELIVERED: ("Delivered", "Your order has been delivered."),
    S.RETURN_REQUESTED: ("Return requested", "We have your return request and will answer it soon."),
    S.RETURN_RECEIVED: ("Return received", "Your return has arrived and is being checked."),
    S.REFUNDED: ("Refunded", "Your refund has been issued."),
    S.RETURN_REJECTED: (
        "Return not accepted",
        "We could not accept your return. Send us a message if you have questions.",
    ),
    S.CLOSED: ("Completed", "This order is complete."),
    S.CANCELLED: ("Cancelled", "This order has been cancelled."),
}

# What a hold means for the customer. A fraud review or an internal reason must read
# like an ordinary check: naming it would tip off a fraudster and alarm everyone else.
_HOLD_WORDING: dict[HoldReason, str] = {
    HoldReason.AWAITING_PAYMENT: "We are waiting for your payment to be confirmed.",
    HoldReason.ADDRESS_PROBLEM: (
        "We need to check your delivery address. If it has changed, please send us a message."
    ),
    HoldReason.OUT_OF_STOCK: "Some items are temporarily out of stock; we will send them as soon as we can.",
    HoldReason.CUSTOMER_REQUEST: "Your order is paused, as you asked.",
    HoldReason.FRAUD_REVIEW: "Your order is being reviewed. We will update you shortly.",
    HoldReason.OTHER: "Your order is being reviewed. We will update you shortly.",
}
_PAUSED = "Paused"

# Timeline event kinds a customer may see, with their wording. Anything else is left out.
_EVENT_WORDING: dict[str, str] = {
    "created": "Order placed",
    "verify": "Order confirmed",
    "verified": "Order confirmed",
    "allocate": "Being prepared",
    "start_picking": "Being prepared",
    "backorder": "Waiting for stock",
    "pack": "Packed",
    "ship_partially": "Part of your order shipped",
    "ship": "Shipped",
    "deliver": "Delivered",
    "request_return": "Return requested",
    "return_approved": "Return approved: you can send the items back",
    "receive_return": "Return received",
    "reject_return": "Return not accepted",
    "refund": "Refund issued",
    "cancel": "Order cancelled",
}

_TRACKING_WORDING: dict[TrackingStatus, str] = {
    TrackingStatus.SHIPPED: "Handed to the carrier",
    TrackingStatus.INFO_RECEIVED: "The carrier has the parcel's details",
    TrackingStatus.IN_TRANSIT: "In transit",
    TrackingStatus.OUT_FOR_DELIVERY: "Out for delivery",
    TrackingStatus.FAILED_ATTEMPT: "Delivery attempted: the carrier will try again or leave a notice",
    TrackingStatus.AVAILABLE_FOR_PICKUP: "Ready for pickup",
    TrackingStatus.DELIVERED: "Delivered",
    TrackingStatus.EXCEPTION: "Delayed: the carrier reported a problem and we are looking into it",
    TrackingStatus.RETURNED_TO_SENDER: "On its way back to us: we will contact you",
}

_RETURN_WORDING: dict[ReturnStatus, str] = {
    ReturnStatus.REQUESTED: "Waiting for our answer",
    ReturnStatus.APPROVED: "Approved: please send the items back",
    ReturnStatus.REJECTED: "Not accepted",
    ReturnStatus.RECEIVED: "Received, being checked",
    ReturnStatus.REFUNDED: "Refunded",
}

RETURN_REASONS: dict[ReturnReason, str] = {
    ReturnReason.DAMAGED: "It arrived damaged",
    ReturnReason.DEFECTIVE: "It does not work",
    ReturnReason.WRONG_ITEM: "I received the wrong item",
    ReturnReason.NOT_AS_DESCRIBED: "It is not as described",
    ReturnReason.NO_LONGER_NEEDED: "I no longer need it",
    ReturnReason.ARRIVED_LATE: "It arrived too late",
    ReturnReason.OTHER: "Another reason",
}

# Public tracking pages of common carriers, for shipments that came without a URL.
# Keys are lower-case carrier names with spaces and punctuation removed.
_CARRIER_PAGES: dict[str, str] = {
    "dhl": "https://www.dhl.com/global-en/home/tracking.html?tracking-id={}",
    "dhlexpress": "https://www.dhl.com/global-en/home/tracking.html?tracking-id={}",
    "ups": "https://www.ups.com/track?tracknum={}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "dpd": "https://tracking.dpd.de/status/en_US/parcel/{}",
    "gls": "https://gls-group.com/track/{}",
    "hermes": "https://www.myhermes.de/empfangen/sendungsverfolgung/sendungsinformation/#{}",
    "evri": "https://www.evri.com/track/parcel/{}",
    "royalmail": "https://www.royalmail.com/track-your-item#/tracking-results/{}",
    "postnl": "https://jouw.postnl.nl/track-and-trace/{}",
    "laposte": "https://www.laposte.fr/outils/suivre-vos-envois?code={}",
    "colissimo": "https://www.laposte.fr/outils/suivre-vos-envois?code={}",
    "canadapost": "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor={}",
    "auspost": "https://auspost.com.au/mypost/track/#/details/{}",
    "australiapost": "https://auspost.com.au/mypost/track/#/details/{}",
}


def progress_step(status: OrderStatus) -> int | None:
    """Index into STEPS reached by `status`; None for a cancelled order (no progress to show)."""
    return _STEP_OF_STATUS.get(status)


def headline(status: OrderStatus, active_holds: Iterable[HoldReason] = ()) -> tuple[str, str]:
    """The status line and its explanation. An active hold speaks for itself, in safe words."""
    holds = sorted(set(active_holds))
    if holds and status is not S.CANCELLED:
        return _PAUSED, " ".join(dict.fromkeys(_HOLD_WORDING[h] for h in holds))
    return _HEADLINES[status]


def event_text(kind: str, changes: dict) -> str | None:
    """Customer wording of one timeline event, or None when it is not for the customer."""
    if kind == "hold_placed":
        reason = (changes.get("hold") or [None, None])[1]
        try:
            return "Paused: " + _HOLD_WORDING[HoldReason(reason)]
        except ValueError:
            return None
    if kind == "hold_released":
        # Only the last release means the order moves again; earlier ones change nothing visible.
        return None if changes.get("still_on_hold") else "Back on track"
    return _EVENT_WORDING.get(kind)


def tracking_text(status: TrackingStatus) -> str:
    return _TRACKING_WORDING[status]


def return_text(status: ReturnStatus) -> str:
    return _RETURN_WORDING[status]


def carrier_link(carrier: str, tracking_number: str | None, tracking_url: str | None) -> str | None:
    """Where the customer follows the parcel: the sender's URL when it is http(s), else the
    carrier's public page for the number, else None. Other schemes (javascript:, data:) are dropped."""
    if tracking_url and tracking_url.lower().startswith(("https://", "http://")):
        return tracking_url
    if not tracking_number:
        return None
    key = "".join(ch for ch in carrier.lower() if ch.isalnum())
    page = _CARRIER_PAGES.get(key)
    return page.format(quote(tracking_number, safe="")) if page else None
